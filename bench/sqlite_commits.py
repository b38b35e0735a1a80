#!/usr/bin/env python3
"""What SQLite commits cost on this machine's disk, without bmad2pf.

The embedded store acknowledges a write only after SQLite's commit (WAL
mode, synchronous=FULL: one fsync of the log per commit), and its writer
thread commits every write that has queued in one transaction. So its
write throughput on a disk is bounded by commits per second times writes
per commit. This probe measures both ends in the directory given (default:
a temp dir), with Python's own sqlite3 module and the store's settings:

  1 per commit     one small row inserted per commit: a lone writer
  32 per commit    32 rows per commit: writers sharing commits under load

Usage: bench/sqlite_commits.py [DIR] [SECONDS_PER_CASE]   (default: temp dir, 2 s)
Point DIR at the data directory's filesystem to know its floor; /dev/shm
shows a filesystem where a flush costs nothing.
"""

import os
import sqlite3
import sys
import tempfile
import time

VALUE = '{"note": "a memory value of a typical size for the benchmark"}'


def measure(path, per_commit, seconds):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)")
    commits = 0
    key = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(per_commit):
            key += 1
            conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (key % 10000, VALUE))
        conn.execute("COMMIT")
        commits += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return commits / elapsed


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else None
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    with tempfile.TemporaryDirectory(dir=directory) as work:
        path = os.path.join(work, "probe.db")
        print(f"SQLite {sqlite3.sqlite_version} commits in {work} (WAL, synchronous=FULL):")
        for per_commit in (1, 32):
            rate = measure(path, per_commit, seconds)
            print(f"  {per_commit:>2} per commit: {rate:9.0f} commits/s = {rate * per_commit:9.0f} writes/s")


if __name__ == "__main__":
    main()
