"""Measures the web console in headless Chromium, driven over WebDriver
(chromedriver's HTTP API, so nothing beyond the standard library here).

1. The runs page with RUNS runs stored: its first render — from navigation
   start to the first page of runs in the document (the page's
   `bmad2pf:runs-rendered` User Timing mark) — in BROWSERS fresh browsers
   (a new profile each), LOADS loads each: the first load of a browser is
   cold (empty HTTP and code caches), the later ones warm. With it, what the
   cold load fetched before its first render (Resource Timing), and
   GET /runs?limit=50 alone.
2. A run view following two agents (pm and architect, in parallel) whose
   model streams TOKENS tokens at RATE tokens/s each (a local
   OpenAI-compatible mock, below): how far the text on screen falls behind
   the tokens sent, and how long after the last token the page has all of it.
3. The size of the embedded console files.

Called by bench/console.sh with: BIN SRC CHROMIUM CHROMEDRIVER CONSOLE_DIR.
PARTS ("runs", "stream" or "runs,stream", the default) picks what to measure.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNS = int(os.environ.get("RUNS", "1000"))
TOKENS = int(os.environ.get("TOKENS", "3000"))
RATE = float(os.environ.get("RATE", "500"))
LOADS = int(os.environ.get("LOADS", "4"))
BROWSERS = int(os.environ.get("BROWSERS", "5"))
# Which measurements to take: "runs", "stream" or both.
PARTS = os.environ.get("PARTS", "runs,stream").split(",")

# Read back after a load: the first render, and every request the page made
# before it (Resource Timing; a 304 transfers its headers only).
FIRST_RENDER = """
const mark = performance.getEntriesByName('bmad2pf:runs-rendered')[0];
if (!mark) return null;
const before = performance.getEntriesByType('resource').filter((r) => r.startTime < mark.startTime);
return {
  at: mark.startTime,
  html: performance.getEntriesByType('navigation')[0].responseEnd,
  rows: document.querySelectorAll('table.runs tbody tr').length,
  requests: before.map((r) => ({path: new URL(r.name).pathname, bytes: r.transferSize})),
};
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return json.loads(raw) if raw else None


def wait_until(check, what, limit=60):
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            value = check()
            if value:
                return value
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def serve(bin_path, src, cwd, env):
    port = free_port()
    process = subprocess.Popen(
        [bin_path, "serve", "--src", src, "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "LOG_LEVEL": "warn", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: http("GET", f"{base}/health"), "the server")
    return process, base


class Browser:
    """One headless Chromium session through chromedriver's WebDriver API."""

    def __init__(self, chromium, chromedriver, profile):
        port = free_port()
        self.driver = subprocess.Popen(
            [chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http("GET", f"{self.url}/status")["value"]["ready"], "chromedriver")
        options = {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}", "--window-size=1280,1000",
            ],
        }
        session = http("POST", f"{self.url}/session",
                       {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})
        self.session = f"{self.url}/session/{session['value']['sessionId']}"

    def goto(self, url):
        http("POST", f"{self.session}/url", {"url": url})

    def run(self, script):
        return http("POST", f"{self.session}/execute/sync", {"script": script, "args": []})["value"]

    def close(self):
        try:
            http("DELETE", self.session)
        finally:
            self.driver.terminate()
            self.driver.wait()


class StreamingModel:
    """An OpenAI-compatible chat endpoint. Its first call (the analyst's)
    waits for `go`, then answers at once; every later call streams TOKENS
    tokens of a fixed width at RATE per second (paced on absolute times, so
    it does not drift). The engine streams an agent's reply only when
    someone follows the run as the call starts, so the page must follow the
    run before the streamed calls (pm and architect, in parallel) begin."""

    TOKEN_WIDTH = 6  # "t0001 "

    def __init__(self):
        self.go = threading.Event()
        self.calls = 0
        self.sent = {}  # call number → tokens sent
        self.finished = {}  # call number → when its last token was sent
        self.lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def write(self, chunk):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                streamed = json.loads(self.rfile.read(length) or b"{}").get("stream", False)
                with model.lock:
                    model.calls += 1
                    call = model.calls
                if not streamed:
                    # Nobody followed the run as the call started: a plain answer.
                    if call == 1:
                        model.go.wait()
                    body = json.dumps({
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "# Brief\nA list app."},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                if call == 1:
                    model.go.wait()
                    self.write({"choices": [{"index": 0, "delta": {"content": "# Brief\nA list app."}}]})
                else:
                    start = time.monotonic()
                    for n in range(TOKENS):
                        delay = start + n / RATE - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        self.write({"choices": [{"index": 0, "delta": {"content": f"t{n % 10000:04d} "}}]})
                        model.sent[call] = n + 1
                    model.finished[call] = time.monotonic()
                self.write({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.write({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": TOKENS, "total_tokens": TOKENS + 10}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def runs_page(bin_path, src, work, browser_paths):
    process, base = serve(bin_path, src, work, {"BMAD2PF_LLM_MOCK_LATENCY_MS": "0"})
    try:
        print(f"seeding {RUNS} runs…", file=sys.stderr)
        started = time.monotonic()

        def one(n):
            http("POST", f"{base}/run", {"flow": "brief", "story_id": f"seed-{n}", "input": "x"})

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, range(RUNS)))
        print(f"seeded in {time.monotonic() - started:.1f} s", file=sys.stderr)

        api = []
        for _ in range(20):
            t = time.monotonic()
            page = http("GET", f"{base}/runs?limit=50")
            api.append((time.monotonic() - t) * 1000)
        assert len(page["runs"]) == 50 and page["next_cursor"]

        cold, warm = [], []
        for n in range(BROWSERS):
            browser = Browser(*browser_paths, os.path.join(work, f"profile-runs-{n}"))
            try:
                for load in range(LOADS):
                    browser.goto("about:blank")
                    browser.goto(f"{base}/#/runs")
                    render = wait_until(lambda: browser.run(FIRST_RENDER), "the runs page")
                    assert render["rows"] == 50, render
                    (warm if load else cold).append(render)
            finally:
                browser.close()

        def summary(renders):
            at = [r["at"] for r in renders]
            after_html = [r["at"] - r["html"] for r in renders]
            requests = [len(r["requests"]) for r in renders]
            sent = [sum(q["bytes"] for q in r["requests"]) for r in renders]
            return (f"median {statistics.median(at):.0f} ms, max {max(at):.0f} ms over {len(at)} loads "
                    f"({statistics.median(after_html):.0f} ms of it after the HTML had arrived); "
                    f"before it {statistics.median(requests):.0f} requests besides the page, "
                    f"{statistics.median(sent) / 1024:.1f} KiB transferred")

        print(f"runs page, {RUNS} runs stored, first render (navigation start → 50 rows in the document), "
              f"{BROWSERS} fresh browsers:")
        print(f"  cold (a browser's first load): {summary(cold)}")
        print(f"  warm (its {LOADS - 1} later loads): {summary(warm)}")
        paths = sorted({q["path"] for r in cold for q in r["requests"]})
        print(f"  fetched before the cold first render: {', '.join(paths)}")
        print(f"GET /runs?limit=50 alone: median {statistics.median(api):.1f} ms, max {max(api):.1f} ms")
    finally:
        process.terminate()
        process.wait()


def streaming(bin_path, src, work, browser_paths):
    model = StreamingModel()
    process, base = serve(bin_path, src, work, {
        "BMAD2PF_LLM_PROVIDER": "openai_compatible",
        "BMAD2PF_LLM_BASE_URL": model.url,
        "BMAD2PF_LLM_MODEL": "bench-model",
    })
    browser = Browser(*browser_paths, os.path.join(work, "profile-stream"))
    try:
        run = http("POST", f"{base}/runs", {"flow": "planning", "story_id": "stream", "input": "x", "mode": "headless"})
        browser.goto(f"{base}/#/runs/{run['run_id']}")
        wait_until(lambda: browser.run("return !!document.querySelector('pre.stream[data-agent=pm]')"), "the run page")
        # The page has connected to the run's events once it shows the analyst started.
        wait_until(lambda: browser.run(
            "return document.querySelector('tr[data-agent=analyst] .badge')?.textContent === 'started'"), "the run's events")
        width = StreamingModel.TOKEN_WIDTH
        shown_script = ("return ['pm', 'architect'].map((a) => "
                        "document.querySelector(`pre.stream[data-agent=${a}]`).textContent.length);")
        model.go.set()
        behind = []
        deadline = time.monotonic() + TOKENS / RATE + 60
        while True:
            if time.monotonic() > deadline:
                sys.exit(f"no end to the stream: calls {model.calls}, sent {model.sent}, shown {browser.run(shown_script)}")
            sent = max(model.sent.values(), default=0)
            shown = min(browser.run(shown_script)) // width
            now = time.monotonic()
            done = len(model.finished) >= 2
            if not done:
                behind.append(max(0, sent - shown))
            elif shown >= TOKENS:
                break
            elif now - max(model.finished.values()) > 30:
                sys.exit(f"the page showed {shown} of {TOKENS} tokens 30 s after the last one")
            time.sleep(0.02)
        lag = (now - max(model.finished.values())) * 1000
        print(f"run view, two agents each streaming {TOKENS} tokens at {RATE:.0f}/s: the slower panel trailed "
              f"the model by at most {max(behind)} tokens ({max(behind) / RATE * 1000:.0f} ms of stream), median "
              f"{statistics.median(behind):.0f}; all tokens on screen {lag:.0f} ms after the last was sent "
              f"(including the poll: up to 20 ms plus a WebDriver round trip)")
    finally:
        browser.close()
        process.terminate()
        process.wait()


def main():
    bin_path, src, chromium, chromedriver, console_dir = sys.argv[1:6]
    size = sum(
        os.path.getsize(os.path.join(folder, name))
        for folder, _, names in os.walk(console_dir)
        for name in names
    )
    print(f"embedded console files: {size:,} bytes ({size / 1024:.0f} KiB)")
    with tempfile.TemporaryDirectory() as work:
        for name, measure in (("runs", runs_page), ("stream", streaming)):
            if name not in PARTS:
                continue
            folder = os.path.join(work, name)
            os.makedirs(folder)
            measure(bin_path, src, folder, (chromium, chromedriver))


if __name__ == "__main__":
    main()
