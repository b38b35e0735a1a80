#!/usr/bin/env python3
"""Human-in-the-loop load on a running bmad2pf server (SPEC 8.3), stdlib only.

Two measurements, each a subcommand:

  interrupts BASE PID [--runs N] [--connections C] [--flow kickoff]
      Starts N background runs of a flow whose agent asks a person once
      (examples/planning's `kickoff` with the mock LLM), each on its own
      story, and waits until every one is `interrupted`; then answers every
      open interrupt (GET /runs/{id} for its id, POST /runs/{id}/resume)
      and waits until every run has ended. Fails (exit 1) unless every run
      was interrupted and then ended `success`. While it runs it samples
      the server's VmRSS and VmHWM from /proc/PID/status every 20 ms.

  replay BASE RUN_ID [--seconds S] [--connections C]
      Replays the stored events of a finished run (GET /runs/{id}/events,
      which answers every stored event and then `done`, and closes) as fast
      as C connections can, for S seconds; checks each replay ends with
      `done`, and prints replays/s. (bench/interrupts.sh uses wrk for the
      rate; this is the check that a replay is complete, and a fallback.)

Each HTTP request goes over keep-alive connections from one asyncio loop,
so the client's own cost per request is small next to the server's.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from urllib.parse import urlsplit


class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length or chunked replies)."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, method, path, body=None):
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                return await self._exchange(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method, path, body):
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(data)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + data)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        headers = {}
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            payload = b"".join(parts)
        else:
            payload = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, payload

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Pool:
    """C connections; a request takes a free one."""

    def __init__(self, base, size):
        url = urlsplit(base)
        self.free = asyncio.Queue()
        for _ in range(size):
            self.free.put_nowait(Connection(url.hostname, url.port or 80))

    async def request(self, method, path, body=None):
        conn = await self.free.get()
        try:
            return await conn.request(method, path, body)
        finally:
            self.free.put_nowait(conn)

    async def json(self, method, path, body=None, expect=(200,)):
        status, headers, payload = await self.request(method, path, body)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: {status} {payload[:300].decode(errors='replace')}")
        return status, headers, json.loads(payload)


class RssSampler:
    """Samples VmRSS / VmHWM (kB) of a process while the benchmark runs."""

    def __init__(self, pid):
        self.path = f"/proc/{pid}/status"
        self.peak_rss = 0
        self.hwm = 0
        self.peak_threads = 0

    def read(self):
        rss = hwm = 0
        with open(self.path) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
                elif line.startswith("Threads:"):
                    self.peak_threads = max(self.peak_threads, int(line.split()[1]))
        return rss, hwm

    async def run(self):
        while True:
            rss, hwm = self.read()
            self.peak_rss = max(self.peak_rss, rss)
            self.hwm = max(self.hwm, hwm)
            await asyncio.sleep(0.02)


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


async def start_run(pool, flow, story, counters):
    body = {"flow": flow, "story_id": story, "input": "a todo app for a small team"}
    while True:
        status, headers, payload = await pool.request("POST", "/runs", body)
        if status == 202:
            return json.loads(payload)["run_id"]
        if status == 503:
            # queue_full: the server asks to come back later
            counters["queue_full"] += 1
            await asyncio.sleep(float(headers.get("retry-after", "1")))
            continue
        raise RuntimeError(f"POST /runs {story}: {status} {payload[:300].decode(errors='replace')}")


async def wait_run(pool, run_id, until):
    """GET /runs/{id}/wait until the run's status is in `until`; the run."""
    deadline = time.monotonic() + 300
    while True:
        _, _, run = await pool.json("GET", f"/runs/{run_id}/wait?timeout_s=60")
        if run["status"] in until:
            return run
        if run["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return run


async def resume_run(pool, run_id):
    _, _, run = await pool.json("GET", f"/runs/{run_id}")
    open_ids = [i["id"] for i in run["interrupts"] if i["status"] == "open"]
    if len(open_ids) != 1:
        raise RuntimeError(f"{run_id}: {len(open_ids)} open interrupts, expected 1")
    body = {"interrupt_id": open_ids[0], "answer": "speed of delivery matters most"}
    await pool.json("POST", f"/runs/{run_id}/resume", body, expect=(202,))


def report_failures(label, runs, want):
    bad = [r for r in runs if r["status"] != want]
    if bad:
        print(f"FAIL: {len(bad)} of {len(runs)} runs not {want} after {label}:", file=sys.stderr)
        for r in bad[:10]:
            summary = {k: r.get(k) for k in ("run_id", "status", "error_code", "errors", "details")}
            print("  " + json.dumps(summary)[:400], file=sys.stderr)
    return not bad


async def interrupts(args):
    pool = Pool(args.base, args.connections)
    sampler = RssSampler(args.pid)
    rss_before, _ = sampler.read()
    sampling = asyncio.create_task(sampler.run())
    counters = {"queue_full": 0}
    prefix = f"hitl-{int(time.time() * 1000) % 10**9}"

    # All the POSTs first, so up to N runs are queued at once; then a wait per run.
    t0 = time.monotonic()
    ids = await asyncio.gather(*(start_run(pool, args.flow, f"{prefix}-{n}", counters) for n in range(args.runs)))
    t_posted = time.monotonic() - t0
    runs = await asyncio.gather(*(wait_run(pool, run_id, ("interrupted",)) for run_id in ids))
    t_interrupted = time.monotonic() - t0
    ok = report_failures("starting", runs, "interrupted")
    rss_interrupted, _ = sampler.read()

    t1 = time.monotonic()
    ended = []
    t_answered = 0.0
    if ok:
        await asyncio.gather(*(resume_run(pool, run_id) for run_id in ids))
        t_answered = time.monotonic() - t1
        ended = await asyncio.gather(*(wait_run(pool, run_id, ("success", "error", "cancelled", "pending")) for run_id in ids))
        ok = report_failures("resuming", ended, "success")
    t_resumed = time.monotonic() - t1
    await asyncio.sleep(0.5)
    sampling.cancel()
    rss_after, hwm = sampler.read()
    peak = max(sampler.peak_rss, hwm)
    n = args.runs
    print(f"runs: {n} of flow {args.flow}, {args.connections} connections"
          f" (queue_full answers retried: {counters['queue_full']})")
    print(f"all {n} interrupted: {t_interrupted:.2f} s ({n / t_interrupted:.0f} runs/s; POSTs answered in {t_posted:.2f} s)")
    if ended:
        print(f"all {n} resumed and ended success: {t_resumed:.2f} s ({n / t_resumed:.0f} runs/s; resumes answered in {t_answered:.2f} s)")
    print(f"RSS: before {mib(rss_before)}, with {n} interrupted {mib(rss_interrupted)},"
          f" peak {mib(peak)} (VmHWM), after {mib(rss_after)}; threads at most {sampler.peak_threads}")
    print(f"peak RSS < 100 MB: {'yes' if peak * 1024 < 100_000_000 else 'NO'}")
    return 0 if ok else 1


async def replay(args):
    pool = Pool(args.base, args.connections)
    path = f"/runs/{args.run_id}/events"
    status, _, payload = await pool.request("GET", path)
    events = [line for line in payload.decode().splitlines() if line.startswith("event:")]
    if status != 200 or not events or events[-1] != "event: done":
        print(f"FAIL: replay of {args.run_id}: {status}, last event {events[-1:]}", file=sys.stderr)
        return 1
    print(f"one replay: {len(payload)} bytes, {len(events)} events, last `done`")
    if args.seconds <= 0:
        return 0
    deadline = time.monotonic() + args.seconds
    counts, latencies = [0], []

    async def worker():
        while time.monotonic() < deadline:
            t = time.monotonic()
            status, _, payload = await pool.request("GET", path)
            latencies.append(time.monotonic() - t)
            if status != 200 or not payload.rstrip().endswith(b"}") or b"event: done" not in payload:
                raise RuntimeError(f"replay {status}: incomplete")
            counts[0] += 1

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.connections)))
    elapsed = time.monotonic() - t0
    print(f"replays: {counts[0] / elapsed:.0f}/s at {args.connections} connections,"
          f" median {statistics.median(latencies) * 1000:.1f} ms")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("interrupts")
    p.add_argument("base")
    p.add_argument("pid", type=int)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--flow", default="kickoff")
    p = sub.add_parser("replay")
    p.add_argument("base")
    p.add_argument("run_id")
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    command = interrupts if args.command == "interrupts" else replay
    sys.exit(asyncio.run(command(args)))


if __name__ == "__main__":
    main()
