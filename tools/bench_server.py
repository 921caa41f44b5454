#!/usr/bin/env python3
"""Throughput of `pregate serve` with 1, 4 and 16 concurrent streams, and
what batching across sequences saves in expert reads.

For each server configuration (all experts resident, then --expert-mem 25%)
it starts `pregate serve --parallel 16`, and for each number of streams S
runs S clients that send completion requests back to back (fixed length:
max_tokens with ignore_eos, sampled with fixed seeds) for a few seconds.
From /metrics before and after it reports: aggregate generated tokens/s,
the mean batch (token rows per forward pass), and, offloaded, the expert
bytes read from the slow tier per generated token and the cache hit rate.
With S streams a decoding step routes S tokens through every MoE layer; the
experts they share are loaded and computed once per step, so the bytes per
token fall as S grows.

  python3 tools/bench_server.py [--pregate build/pregate] [--model models/demo-moe.gguf]
                                [--streams 1,4,16] [--seconds 15] [--max-tokens 64]
                                [--expert-mem 25%] [--serve-args "--link pcie4"]

Standard library only; prints a table (and --json FILE writes the numbers).
"""
import argparse
import http.client
import json
import re
import shlex
import subprocess
import sys
import threading
import time

PROMPTS = ["Elizabeth looked at her sister and said", "It is a truth universally acknowledged",
           "Mr. Darcy", "The carriage stopped at the door of", "She could not help", "Upon my word,"]


def metrics(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def client(port, idx, deadline, max_tokens, counts, lock):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    n = 0
    while time.time() < deadline:
        body = {"prompt": PROMPTS[(idx + n) % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0.8,
                "seed": idx * 1000 + n, "ignore_eos": True}
        c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        d = json.loads(r.read())
        if r.status != 200:
            raise RuntimeError(f"status {r.status}: {d}")
        with lock:
            counts[0] += d["usage"]["completion_tokens"]
            counts[1] += 1
        n += 1
    c.close()


def start_server(a, extra):
    cmd = [a.pregate, "serve", "-m", a.model, "--port", "0", "--parallel", str(max(a.streams))] + extra
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, int(m.group(1))
    raise RuntimeError(f"{' '.join(cmd)} did not start")


def run_config(a, name, extra):
    p, port = start_server(a, extra)
    rows = []
    try:
        for s in a.streams:
            # a short warm-up, so that the fast tier is filled and timing is steady
            lock, counts = threading.Lock(), [0, 0]
            ts = [threading.Thread(target=client, args=(port, i, time.time() + 1.5, a.max_tokens, counts, lock))
                  for i in range(s)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            m0, t0 = metrics(port), time.time()
            counts = [0, 0]
            ts = [threading.Thread(target=client, args=(port, i, t0 + a.seconds, a.max_tokens, counts, lock))
                  for i in range(s)]
            [t.start() for t in ts]
            [t.join() for t in ts]
            dt, m1 = time.time() - t0, metrics(port)
            d = {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}
            gen = d["pregate_generated_tokens_total"]
            row = {"config": name, "streams": s, "seconds": dt, "requests": counts[1], "generated": gen,
                   "tok_s": gen / dt, "mean_batch": d["pregate_batch_rows_total"] / max(1, d["pregate_batch_steps_total"]),
                   "prompt_tokens": d["pregate_prompt_tokens_total"]}
            if m1.get("pregate_expert_offload"):
                acq = d["pregate_expert_acquires_total"]
                row.update({"bytes_per_token": d["pregate_expert_bytes_read_total"] / gen,
                            "loads_per_token": d["pregate_expert_loads_total"] / gen,
                            "acquires_per_token": acq / gen,
                            "hit_rate": d["pregate_expert_hits_total"] / acq if acq else 0,
                            "stall_ms_per_token": 1e3 * d["pregate_expert_stall_seconds_total"] / gen})
            rows.append(row)
            print(f"  {name:>14}  {s:2d} streams: {row['tok_s']:7.1f} tok/s, mean batch {row['mean_batch']:.2f}"
                  + (f", {row['bytes_per_token'] / 1024:.1f} KiB of experts read per token "
                     f"({row['loads_per_token']:.2f} loads), hit rate {row['hit_rate']:.3f}"
                     if "bytes_per_token" in row else ""), file=sys.stderr)
    finally:
        p.terminate()
        p.wait(timeout=60)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pregate", default="build/pregate")
    ap.add_argument("--model", default="models/demo-moe.gguf")
    ap.add_argument("--streams", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--expert-mem", default="25%")
    ap.add_argument("--serve-args", default="", help="more flags for both servers, e.g. '-t 2'")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    a.streams = [int(x) for x in a.streams.split(",")]
    extra = shlex.split(a.serve_args)
    rows = run_config(a, "resident", extra)
    rows += run_config(a, f"expert-mem {a.expert_mem}", extra + ["--expert-mem", a.expert_mem])
    print(f"\n{a.model}, max_tokens {a.max_tokens}, {a.seconds:.0f} s per point, server --parallel {max(a.streams)}")
    print(f"{'streams':>7} | {'resident tok/s':>14} {'batch':>6} | {'offloaded tok/s':>15} {'KiB read/token':>14} "
          f"{'loads/token':>11} {'hit rate':>8}")
    for s in a.streams:
        r = next(x for x in rows if x["streams"] == s and x["config"] == "resident")
        o = next(x for x in rows if x["streams"] == s and x["config"] != "resident")
        print(f"{s:7d} | {r['tok_s']:14.1f} {r['mean_batch']:6.2f} | {o['tok_s']:15.1f} "
              f"{o['bytes_per_token'] / 1024:14.1f} {o['loads_per_token']:11.2f} {o['hit_rate']:8.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
