#!/usr/bin/env python3
"""Time from process start to the first successful GET /health, whole process.

Usage: bench/first_health.py [--runs N] [--port P] -- COMMAND...
e.g.   bench/first_health.py -- target/release/bmad2pf serve --bundle out100

Starts COMMAND with PORT=P (default 18185) and LOG_LEVEL=warn, polls
http://127.0.0.1:P/health from this process every 0.5 ms (a raw socket, so
no client start-up is counted), stops the server, repeats N times (default
9) and prints the median, min and max. Run it from a scratch directory:
relative store paths resolve against the working directory.
"""
import os
import socket
import statistics
import subprocess
import sys
import time


def first_health_ms(command, port):
    env = dict(os.environ, PORT=str(port), LOG_LEVEL="warn")
    start = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"the server exited with status {server.returncode}: {' '.join(command)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                    conn.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                    if conn.recv(64).startswith(b"HTTP/1.1 200"):
                        return (time.perf_counter() - start) * 1000
            except OSError:
                pass
            time.sleep(0.0005)
    finally:
        server.terminate()
        server.wait()


def main():
    args = sys.argv[1:]
    runs, port = 9, 18185
    while args and args[0] != "--":
        flag = args.pop(0)
        if flag == "--runs" and args:
            runs = int(args.pop(0))
        elif flag == "--port" and args:
            port = int(args.pop(0))
        else:
            sys.exit(__doc__)
    command = args[1:]
    if not command:
        sys.exit(__doc__)
    times = [first_health_ms(command, port) for _ in range(runs)]
    print(f"first successful /health: median {statistics.median(times):.1f} ms, "
          f"min {min(times):.1f}, max {max(times):.1f} ({runs} runs)")


if __name__ == "__main__":
    main()
