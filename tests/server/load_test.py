#!/usr/bin/env python3
"""Bounded load test of `pregate serve` (standard library only).

N clients (default 16) send requests back to back for S seconds (default
60): completions and chat, streamed and not, random prompts, lengths,
temperatures and stop strings, on keep-alive connections; now and then a
malformed request (which must get a 400) or a client that hangs up in the
middle of a stream (which must not disturb anyone else). Passes when no
request failed, every reply was complete (a finish_reason, usage, and for a
stream "data: [DONE]"), and the server's resident set at the end is within
10% of what it was after the warm-up.

  load_test.py --pregate build/pregate --model models/demo-moe.gguf   # starts a server
  load_test.py --base http://127.0.0.1:8080 --pid PID [--key KEY]     # an existing one
"""
import argparse
import http.client
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPTS = ["Elizabeth looked at her sister and said", "It is a truth universally acknowledged", "Mr. Darcy",
           "The carriage stopped at the door of", "She could not help", "Upon my word,", "Emma", "Dear Jane,",
           "Nothing was ever so",
           "They walked on together for some time, and the conversation turned upon the neighbourhood and"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = self.failed = self.bad_ok = self.hangups = self.tokens = 0
        self.errors = []

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def fail(self, why):
        with self.lock:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(why)


class Client:
    def __init__(self, host, port, key, rng):
        self.host, self.port, self.key, self.rng = host, port, key, rng
        self.conn = None

    def connect(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        return self.conn

    def drop(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def post(self, path, body):
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        c = self.connect()
        c.request("POST", path, body=body, headers=headers)
        return c.getresponse()

    def one(self, stats):
        rng = self.rng
        r = rng.random()
        chat = rng.random() < 0.5
        path = "/v1/chat/completions" if chat else "/v1/completions"
        if r < 0.05:  # malformed: must be a 400, and the connection must go on
            resp = self.post(path, b'{"prompt": "x", "max_tokens": "many"' if rng.random() < 0.5 else b"{]")
            data = resp.read()
            if resp.status != 400 or "error" not in json.loads(data):
                stats.fail(f"malformed request: {resp.status} {data[:100]!r}")
            else:
                stats.add(bad_ok=1)
            return
        body = {"model": "demo", "max_tokens": rng.randint(4, 64), "temperature": rng.choice([0, 0.7, 1.0]),
                "seed": rng.randint(0, 1000)}
        if chat:
            body["messages"] = [{"role": "user", "content": rng.choice(PROMPTS)}]
        else:
            body["prompt"] = rng.choice(PROMPTS)
        if rng.random() < 0.2:
            body["stop"] = [rng.choice([" the", ",", "\n", "and"])]
        stream = rng.random() < 0.5
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        hang_up = stream and r < 0.10
        resp = self.post(path, json.dumps(body).encode())
        if resp.status != 200:
            stats.fail(f"{path}: status {resp.status}: {resp.read()[:200]!r}")
            self.drop()
            return
        if not stream:
            d = json.loads(resp.read())
            ch = d["choices"][0]
            if ch["finish_reason"] not in ("stop", "length") or "usage" not in d:
                stats.fail(f"incomplete reply {d}")
                return
            stats.add(ok=1, tokens=d["usage"]["completion_tokens"])
            return
        finish, usage, done, events = None, None, False, 0
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data: "):
                continue
            payload = line[6:]
            if payload == b"[DONE]":
                done = True
                continue
            ev = json.loads(payload)
            events += 1
            if "error" in ev:
                stats.fail(f"error event {ev}")
                self.drop()
                return
            if ev.get("usage"):
                usage = ev["usage"]
            for ch in ev["choices"]:
                finish = ch.get("finish_reason") or finish
            if hang_up and events >= 2:  # leave in the middle: the server cancels the job
                self.drop()
                stats.add(hangups=1)
                return
        if done and finish in ("stop", "length") and usage:
            stats.add(ok=1, tokens=usage["completion_tokens"])
            # the end of the chunked body, so that the connection can be used again
            resp.read()
        else:
            stats.fail(f"incomplete stream: done={done} finish={finish} usage={usage}")
            self.drop()


def worker(host, port, key, seed, deadline, stats):
    c = Client(host, port, key, random.Random(seed))
    while time.time() < deadline:
        try:
            c.one(stats)
        except Exception as e:  # a broken connection or a bad reply is a failure
            stats.fail(f"{type(e).__name__}: {e}")
            c.drop()
    c.drop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pregate", help="start `PREGATE serve` for the test")
    ap.add_argument("--model", default="models/demo-moe.gguf")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--base", help="an existing server (with --pid)")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--key")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    a = ap.parse_args()
    server = None
    if a.pregate:
        server = subprocess.Popen([a.pregate, "serve", "-m", a.model, "--port", "0", "--parallel", str(a.parallel),
                                   "--timeout", "30"], stderr=subprocess.PIPE, text=True)
        port = None
        for line in server.stderr:
            sys.stderr.write("  server: " + line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            print("FAIL load_test: the server did not start", file=sys.stderr)
            return 1
        # keep draining the server's stderr so that it never blocks on a full pipe
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        host, pid = "127.0.0.1", server.pid
    else:
        u = urllib.parse.urlparse(a.base)
        host, port, pid = u.hostname, u.port, a.pid
    stats = Stats()
    t0 = time.time()
    deadline = t0 + a.warmup + a.seconds
    threads = [threading.Thread(target=worker, args=(host, port, a.key, 1000 + i, deadline, stats))
               for i in range(a.clients)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    rss_warm = rss_kib(pid)
    tok_warm, samples = stats.tokens, []
    while time.time() < deadline:
        time.sleep(min(5, max(0.1, deadline - time.time())))
        samples.append(rss_kib(pid))
    for t in threads:
        t.join()
    rss_end = rss_kib(pid)
    elapsed = time.time() - t0 - a.warmup
    growth = (rss_end - rss_warm) / rss_warm
    print(f"  {a.clients} clients, {a.seconds:.0f} s after {a.warmup:.0f} s warm-up: {stats.ok} replies complete, "
          f"{stats.bad_ok} malformed requests refused with 400, {stats.hangups} clients hung up mid-stream, "
          f"{stats.failed} failed; {stats.tokens - tok_warm} tokens in {elapsed:.1f} s "
          f"({(stats.tokens - tok_warm) / elapsed:.1f} tok/s)", file=sys.stderr)
    print(f"  VmRSS after warm-up {rss_warm / 1024:.1f} MiB, at the end {rss_end / 1024:.1f} MiB "
          f"({growth * 100:+.1f}%), samples {[round(s / 1024, 1) for s in samples]}", file=sys.stderr)
    for e in stats.errors:
        print(f"  error: {e}", file=sys.stderr)
    rc = 0
    if stats.failed or stats.ok == 0:
        print(f"FAIL load_test: {stats.failed} failed requests", file=sys.stderr)
        rc = 1
    if abs(growth) > a.rss_tolerance:
        print(f"FAIL load_test: VmRSS changed by {growth * 100:+.1f}% after warm-up (limit "
              f"{a.rss_tolerance * 100:.0f}%)", file=sys.stderr)
        rc = 1
    if server:
        server.send_signal(signal.SIGTERM)
        src = server.wait(timeout=60)
        if src != 0:
            print(f"FAIL load_test: the server exited with status {src}", file=sys.stderr)
            rc = 1
    if rc == 0:
        print("ok   load_test", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
