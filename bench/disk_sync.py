#!/usr/bin/env python3
"""What durable writes cost on this machine's disk, without bmad2pf.

The file stores acknowledge a write only once it is fsync'd, so their
throughput on a given disk is bounded by what the disk does per flush. This
probe measures that floor in the directory given (default: a temp dir):

  replace      a 2 KB file written to a temp file, fsync'd, renamed over the
               target, directory fsync'd: how a document is written
  replace x32  the same from 32 threads at once, distinct files
  append       one line appended + fdatasync: a memory or status write alone
  append x32   32 lines appended per fdatasync: group commit

Usage: bench/disk_sync.py [DIR] [SECONDS_PER_CASE]   (default: temp dir, 2 s)
Point DIR at the data directory's filesystem to know its floor; /dev/shm
shows a filesystem where a flush costs nothing.
"""

import os
import sys
import tempfile
import threading
import time

BODY = b"A line of Markdown text for the benchmark.\n" * 46


def replace(directory, name):
    temp = os.path.join(directory, "." + name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, BODY)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, os.path.join(directory, name))
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def timed(seconds, work):
    """Runs work(i) for i = 0, 1, ... for `seconds`; returns ops per second."""
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work(count)
        count += 1
    return count / (time.perf_counter() - start)


def threaded(seconds, threads, work):
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(t):
        i = 0
        while time.perf_counter() < stop:
            work(t, i)
            i += 1
        counts[t] = i

    start = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else None
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    with tempfile.TemporaryDirectory(dir=directory) as work:
        results = [
            ("replace", timed(seconds, lambda i: replace(work, f"doc{i % 64}.md"))),
            (
                "replace x32",
                threaded(seconds, 32, lambda t, i: replace(work, f"t{t}-{i % 8}.md")),
            ),
        ]
        line = b'{"k":"key","v":{"n":1},"t":1700000000000}\n'
        with open(os.path.join(work, "log.jsonl"), "ab") as log:

            def append(lines):
                log.write(line * lines)
                log.flush()
                os.fdatasync(log.fileno())

            results.append(("append", timed(seconds, lambda i: append(1))))
            results.append(("append x32", 32 * timed(seconds, lambda i: append(32))))
    print(f"directory: {directory or tempfile.gettempdir()}")
    for name, rate in results:
        print(f"{name:<12} {rate:>10.0f} durable writes/s  ({1e6 / rate:.0f} us each)")


if __name__ == "__main__":
    main()
