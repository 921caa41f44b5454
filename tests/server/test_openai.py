#!/usr/bin/env python3
"""End-to-end tests of `pregate serve` (tests/test_server.sh starts the server).

Two groups:
  * with the official `openai` client: completions and chat, streamed and
    not, stop sequences, max_tokens, seeds, greedy output identical to
    `pregate run --temp 0` (text and token ids), concurrent requests each
    identical to the same request alone;
  * with plain http.client / sockets: every bad input (malformed JSON, wrong
    types, missing fields, context overflow, over-size bodies, API key,
    unknown paths, wrong methods, slow-loris, garbage bytes, clients that
    hang up), after which the server still serves.

Each case prints "ok   NAME", "FAIL NAME: why" or "SKIP NAME: why" on stderr
(the format of tests/run.sh). Without the openai package the first group is
skipped (one SKIP line) and the second still runs.

usage: test_openai.py --base URL --key KEY --pregate BIN --model GGUF --ctx N
                      --timeout S --max-body BYTES
"""
import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

ARGS = None
FAILED = 0


def report(name, ok, why=""):
    global FAILED
    if ok:
        print(f"ok   {name}", file=sys.stderr)
    else:
        FAILED += 1
        print(f"FAIL {name}: {why}", file=sys.stderr)


def case(fn):
    """Runs fn; an AssertionError or any exception is that case's failure."""
    name = "server_" + fn.__name__.removeprefix("test_")
    try:
        fn()
        report(name, True)
    except AssertionError as e:
        report(name, False, str(e))
    except Exception as e:  # a crash of the test is a failure too, with its trace
        report(name, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")


# ---------------------------------------------------------------- plain HTTP

def host_port():
    u = urllib.parse.urlparse(ARGS.base)
    return u.hostname, u.port


def request(method, path, body=None, headers=None, key=True, timeout=60):
    """One request on a fresh connection: (status, headers, body bytes)."""
    h, p = host_port()
    conn = http.client.HTTPConnection(h, p, timeout=timeout)
    hdrs = dict(headers or {})
    if key:
        hdrs.setdefault("Authorization", f"Bearer {ARGS.key}")
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def expect_error(status, path, body, want_status, want_type, key=True, method="POST", headers=None):
    s, _, data = request(method, path, body, key=key, headers=headers)
    assert s == want_status, f"{method} {path} {body!r:.80}: status {s}, expected {want_status}: {data[:200]!r}"
    err = json.loads(data)["error"]
    assert err["type"] == want_type and err["message"], f"error body {err}"
    return err["message"]


def metrics():
    s, _, data = request("GET", "/metrics")
    assert s == 200, f"/metrics: {s}"
    out = {}
    for line in data.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def wait_for(pred, seconds=20.0, what=""):
    t0 = time.time()
    while time.time() - t0 < seconds:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def test_health_and_models():
    s, _, data = request("GET", "/health", key=False)
    assert s == 200 and json.loads(data)["status"] == "ok", f"/health {s} {data!r}"
    s, _, data = request("GET", "/v1/models")
    ids = [m["id"] for m in json.loads(data)["data"]]
    assert s == 200 and ARGS.model.split("/")[-1] in ids and "demo" in ids, f"/v1/models: {ids}"


def test_bad_json():
    for path in ("/v1/completions", "/v1/chat/completions"):
        for body in (b"", b"{", b"{\"prompt\": \"a\",}", b"[1, 2]", b"\xff\xfe{}", b"null",
                     b"{\"prompt\": \"\xff\"}", b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xc3\"}]}"):
            expect_error(400, path, body, 400, "invalid_request_error")


def test_wrong_types_and_missing_fields():
    P, C = "/v1/completions", "/v1/chat/completions"
    msgs = [{"role": "user", "content": "Hi"}]
    cases = [
        (P, {}), (P, {"prompt": 5}), (P, {"prompt": "a", "max_tokens": "5"}), (P, {"prompt": "a", "max_tokens": 0}),
        (P, {"prompt": "a", "temperature": "hot"}), (P, {"prompt": "a", "stream": "yes"}),
        (P, {"prompt": "a", "stop": 7}), (P, {"prompt": "a", "n": 2}), (P, {"prompt": [1, "x"]}),
        (P, {"prompt": [10 ** 6]}), (P, {"prompt": "a", "seed": "1"}), (P, {"prompt": "a", "top_p": 2}),
        (C, {}), (C, {"messages": "Hi"}), (C, {"messages": []}), (C, {"messages": [{"role": "user"}, 5]}),
        (C, {"messages": [{"role": "pirate", "content": "arr"}]}), (C, {"messages": msgs, "n": 3}),
        (C, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
    ]
    for path, body in cases:
        expect_error(400, path, body, 400, "invalid_request_error")


def test_context_limits():
    msg = expect_error(400, "/v1/completions", {"prompt": "It was", "max_tokens": ARGS.ctx + 1}, 400,
                       "invalid_request_error")
    assert "context" in msg, msg
    long_text = "the sister of the man " * 200  # far more tokens than the context
    expect_error(400, "/v1/completions", {"prompt": long_text, "max_tokens": 1}, 400, "invalid_request_error")
    expect_error(400, "/v1/chat/completions", {"messages": [{"role": "user", "content": long_text}]}, 400,
                 "invalid_request_error")
    # exactly filling the context is fine
    s, _, data = request("POST", "/v1/completions", {"prompt": [5], "max_tokens": ARGS.ctx - 1, "temperature": 0})
    assert s == 200, f"prompt 1 + max_tokens {ARGS.ctx - 1}: {s} {data[:200]!r}"


def test_body_size():
    big = json.dumps({"prompt": "x" * (ARGS.max_body + 10)}).encode()
    expect_error(413, "/v1/completions", big, 413, "invalid_request_error")
    # without a Content-Length (chunked): read to the end, then 413
    h, p = host_port()
    sock = socket.create_connection((h, p), timeout=30)
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ARGS.key}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    sock.sendall(head)
    piece = b"x" * 8192
    for _ in range(ARGS.max_body // 8192 + 2):
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
    sock.sendall(b"0\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    sock.close()
    assert reply.startswith(b"HTTP/1.1 413"), f"chunked over-size body: {reply[:100]!r}"


def test_api_key():
    body = {"prompt": "Hi", "max_tokens": 1}
    expect_error(401, "/v1/completions", body, 401, "authentication_error", key=False)
    expect_error(401, "/v1/completions", body, 401, "authentication_error", key=False,
                 headers={"Authorization": "Bearer wrong"})
    expect_error(401, "/v1/models", None, 401, "authentication_error", key=False, method="GET",
                 headers={"Authorization": f"Bearer {ARGS.key}x"})
    expect_error(401, "/metrics", None, 401, "authentication_error", key=False, method="GET")


def test_paths_and_methods():
    expect_error(404, "/v1/nothing", None, 404, "not_found_error", method="GET")
    expect_error(404, "/", {"prompt": "a"}, 404, "not_found_error")
    expect_error(405, "/v1/completions", None, 405, "invalid_request_error", method="GET")
    expect_error(405, "/v1/chat/completions", None, 405, "invalid_request_error", method="DELETE")
    expect_error(405, "/v1/models", {"a": 1}, 405, "invalid_request_error")
    s, h, _ = request("GET", "/v1/completions")
    assert s == 405 and "POST" in h.get("Allow", ""), f"Allow header: {h}"


def test_garbage_and_slow_loris():
    h, p = host_port()
    # bytes that are not HTTP: the connection is refused, the server lives on
    g = socket.create_connection((h, p), timeout=10)
    g.sendall(b"\x00\x01\x02 not http at all\r\n\r\n")
    try:
        g.recv(4096)
    except OSError:
        pass
    g.close()
    # a request that never finishes its headers is closed after --timeout
    # seconds of silence, while others are served
    slow = socket.create_connection((h, p), timeout=ARGS.timeout + 20)
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Len")
    t0 = time.time()
    s, _, _ = request("GET", "/health", key=False)
    assert s == 200, "health during a slow-loris request"
    try:
        got = slow.recv(4096)
    except (ConnectionResetError, TimeoutError, socket.timeout) as e:
        got = type(e).__name__.encode()
    waited = time.time() - t0
    slow.close()
    assert got in (b"", b"ConnectionResetError") or got.startswith(b"HTTP/1.1 4"), f"slow-loris got {got[:80]!r}"
    assert waited < ARGS.timeout + 15, f"slow-loris connection open for {waited:.1f} s (timeout {ARGS.timeout})"
    # one that trickles a byte now and then is never idle, yet its request
    # must arrive complete within --timeout seconds
    before = metrics()["pregate_connections_timed_out_total"]
    trickle = socket.create_connection((h, p), timeout=5)
    trickle.sendall(b"POST /v1/completions HTTP/1.1\r\n")
    t0, closed = time.time(), False
    while time.time() - t0 < ARGS.timeout + 15 and not closed:
        try:
            trickle.sendall(b"X")
            time.sleep(0.3)
        except OSError:
            closed = True
    trickle.close()
    assert closed, f"a trickling request was still open after {time.time() - t0:.1f} s"
    assert metrics()["pregate_connections_timed_out_total"] >= before + 1, "cut not counted"
    s, _, _ = request("GET", "/health", key=False)
    assert s == 200, "health after slow-loris"


def open_request(path, body):
    """Sends a request on a raw socket and returns the socket (unread)."""
    h, p = host_port()
    data = json.dumps(body).encode()
    s = socket.create_connection((h, p), timeout=30)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ARGS.key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode() + data)
    return s


def test_client_hangs_up():
    """Clients that leave: streams in the middle (their slots are freed) and
    one that is not streamed while it waits in the queue (dropped from it)."""
    before = metrics()["pregate_requests_cancelled_total"]
    long = {"prompt": "It was", "max_tokens": ARGS.ctx - 10, "stream": True, "ignore_eos": True}
    streams = [open_request("/v1/completions", long) for _ in range(4)]  # every slot (--parallel 4)
    for s in streams:
        got = b""
        while b"data: " not in got:
            chunk = s.recv(4096)
            assert chunk, "stream closed before its first event"
            got += chunk
    queued = open_request("/v1/completions", {"prompt": "She", "max_tokens": 20, "ignore_eos": True})
    wait_for(lambda: metrics()["pregate_queue_length"] == 1, what="the fifth request to be queued")
    queued.close()
    wait_for(lambda: (lambda m: m["pregate_requests_cancelled_total"] >= before + 1
                      and m["pregate_queue_length"] == 0)(metrics()),
             what="the queued request to be dropped when its client left")
    for s in streams:
        s.close()
    m = wait_for(lambda: (lambda m: m if m["pregate_requests_cancelled_total"] >= before + 5
                          and m["pregate_active_sequences"] == 0 and m["pregate_queue_length"] == 0
                          else None)(metrics()),
                 what="the 5 abandoned generations to be cancelled and their slots freed")
    s, _, _ = request("POST", "/v1/completions", {"prompt": "She", "max_tokens": 3})
    assert s == 200, "a request after the hang-ups"


def test_metrics_format():
    s, h, data = request("GET", "/metrics")
    assert s == 200 and h["Content-Type"].startswith("text/plain"), f"{s} {h}"
    text = data.decode()
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.startswith("# HELP ") or line.startswith("# TYPE "), line
            continue
        name, value = line.rsplit(" ", 1)
        float(value)
        assert name.startswith("pregate_"), line
    m = metrics()
    for k in ("pregate_prompt_tokens_total", "pregate_generated_tokens_total", "pregate_tokens_per_second",
              "pregate_queue_length", "pregate_active_sequences", "pregate_expert_cache_hit_rate",
              "pregate_expert_prediction_precision", "pregate_expert_prediction_recall",
              "pregate_expert_stall_seconds_total", "pregate_expert_fast_tier_bytes"):
        assert k in m, f"{k} missing from /metrics"
    for st in ("400", "401", "404", "405", "413"):
        assert any(f'status="{st}"' in k for k in m), f"no request counted with status {st}"
    assert m["pregate_generated_tokens_total"] > 0


# ---------------------------------------------------------------- the openai client

def client():
    import openai
    return openai.OpenAI(base_url=ARGS.base + "/v1", api_key=ARGS.key, max_retries=0, timeout=300)


PROMPTS = ["Elizabeth looked at her sister and said", "It is a truth universally acknowledged",
           "Mr. Darcy walked", "She"]


def run_greedy(prompt, n, ids=False):
    """What `pregate run --temp 0` prints (its final newline removed)."""
    cmd = [ARGS.pregate, "run", "-m", ARGS.model, "-p", prompt, "-n", str(n), "--temp", "0", "-c", str(ARGS.ctx)]
    out = subprocess.run(cmd + (["--print-ids"] if ids else []), capture_output=True, check=True).stdout
    assert out.endswith(b"\n"), out
    return out[:-1]


def test_models_openai():
    ids = [m.id for m in client().models.list().data]
    assert "demo" in ids and ARGS.model.split("/")[-1] in ids, ids


def test_completion():
    c = client()
    r = c.completions.create(model="anything", prompt=PROMPTS[0], max_tokens=12, temperature=0,
                             extra_body={"ignore_eos": True})
    ch = r.choices[0]
    assert r.object == "text_completion" and r.id.startswith("cmpl-") and ch.text, r
    assert ch.finish_reason == "length" and r.usage.completion_tokens == 12 and r.usage.prompt_tokens > 0, r
    assert r.usage.total_tokens == r.usage.prompt_tokens + 12, r.usage
    # streamed: the same text, in pieces, then the finish and the usage
    parts, finish, usage = [], None, None
    for chunk in c.completions.create(model="x", prompt=PROMPTS[0], max_tokens=12, temperature=0, stream=True,
                                      stream_options={"include_usage": True}, extra_body={"ignore_eos": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch2 in chunk.choices:
            parts.append(ch2.text)
            finish = ch2.finish_reason or finish
    assert "".join(parts) == ch.text, f"stream {''.join(parts)!r} != {ch.text!r}"
    # each event carries the text generated since the last one, so how many
    # pieces there are depends on timing (on a busy machine all 12 tokens can
    # come at once): only that the text came as events is certain
    assert len([p for p in parts if p]) >= 1, f"streamed in {len(parts)} pieces"
    assert finish == "length" and usage and usage.completion_tokens == 12, (finish, usage)


def test_chat():
    c = client()
    msgs = [{"role": "system", "content": "You are Miss Austen."}, {"role": "user", "content": "Tell me of Emma."}]
    r = c.chat.completions.create(model="demo", messages=msgs, max_tokens=16, temperature=0,
                                  extra_body={"ignore_eos": True})
    m = r.choices[0].message
    assert r.object == "chat.completion" and m.role == "assistant" and m.content, r
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 16, r
    roles, parts, finish, usage = [], [], None, None
    for chunk in c.chat.completions.create(model="demo", messages=msgs, max_tokens=16, temperature=0, stream=True,
                                           stream_options={"include_usage": True}, extra_body={"ignore_eos": True}):
        assert chunk.object == "chat.completion.chunk", chunk
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            if ch.delta.content:
                parts.append(ch.delta.content)
            finish = ch.finish_reason or finish
    assert roles == ["assistant"], roles
    assert "".join(parts) == m.content, f"{''.join(parts)!r} != {m.content!r}"
    assert finish == "length" and usage.completion_tokens == 16 and usage.prompt_tokens == r.usage.prompt_tokens


def test_greedy_equals_run():
    c = client()
    for prompt in PROMPTS:
        n = 24
        r = c.completions.create(model="demo", prompt=prompt, max_tokens=n, temperature=0,
                                 extra_body={"return_token_ids": True})
        d = r.model_dump()
        text = r.choices[0].text.encode()
        want = run_greedy(prompt, n)
        assert text == want, f"{prompt!r}: server {text!r} != run {want!r}"
        ids = [int(x) for x in run_greedy(prompt, n, ids=True).split()]
        got = d["choices"][0]["token_ids"]
        assert got == ids, f"{prompt!r}: token ids {got} != run {ids}"
        assert r.usage.completion_tokens == len(ids), r.usage


def test_max_tokens():
    c = client()
    for n in (1, 5, 17):
        r = c.completions.create(model="demo", prompt="She", max_tokens=n, temperature=0.7, seed=n,
                                 extra_body={"ignore_eos": True})
        assert r.usage.completion_tokens == n and r.choices[0].finish_reason == "length", (n, r.usage)
    # OpenAI's default for completions is 16
    r = c.completions.create(model="demo", prompt="She", temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 16, r.usage


def test_stop():
    c = client()
    full = c.completions.create(model="demo", prompt=PROMPTS[1], max_tokens=60, temperature=0,
                                extra_body={"ignore_eos": True}).choices[0].text
    words = full.split()
    stop = " " + words[len(words) // 2]
    cut = full.index(stop)
    for stops in (stop, [stop], ["never-in-the-text", stop]):
        r = c.completions.create(model="demo", prompt=PROMPTS[1], max_tokens=60, temperature=0, stop=stops,
                                 extra_body={"ignore_eos": True})
        assert r.choices[0].text == full[:cut] and r.choices[0].finish_reason == "stop", \
            f"stop {stops!r}: {r.choices[0].text!r}, expected {full[:cut]!r}"
        parts, finish = [], None
        for chunk in c.completions.create(model="demo", prompt=PROMPTS[1], max_tokens=60, temperature=0,
                                          stop=stops, stream=True, extra_body={"ignore_eos": True}):
            for ch in chunk.choices:
                parts.append(ch.text)
                finish = ch.finish_reason or finish
        sent = "".join(parts)
        assert sent == full[:cut] and finish == "stop", f"streamed with stop {stops!r}: {sent!r}"
        # no piece ever showed text that turned out to be the stop
        assert all(stop.strip() not in "".join(parts[:i + 1])[cut:] for i in range(len(parts))), parts
    # chat too
    msgs = [{"role": "user", "content": "Hello"}]
    full = c.chat.completions.create(model="demo", messages=msgs, max_tokens=40, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].message.content
    stop = full[len(full) // 2: len(full) // 2 + 3]
    if stop.strip():
        r = c.chat.completions.create(model="demo", messages=msgs, max_tokens=40, temperature=0, stop=[stop],
                                      extra_body={"ignore_eos": True})
        assert r.choices[0].message.content == full[:full.index(stop)], (stop, r.choices[0].message.content)


def test_seed():
    c = client()
    kw = dict(model="demo", prompt=PROMPTS[0], max_tokens=30, temperature=0.9, top_p=0.95,
              extra_body={"ignore_eos": True})
    a = c.completions.create(seed=1234, **kw).choices[0].text
    b = c.completions.create(seed=1234, **kw).choices[0].text
    d = c.completions.create(seed=4321, **kw).choices[0].text
    assert a == b, f"same seed, different text: {a!r} / {b!r}"
    assert a != d, f"different seeds, same text: {a!r}"
    msgs = [{"role": "user", "content": "A story, please."}]
    x = c.chat.completions.create(model="demo", messages=msgs, max_tokens=20, temperature=1.0, seed=5)
    y = c.chat.completions.create(model="demo", messages=msgs, max_tokens=20, temperature=1.0, seed=5)
    assert x.choices[0].message.content == y.choices[0].message.content


def test_errors_through_client():
    import openai
    c = client()
    for kw in (dict(n=2), dict(max_tokens=ARGS.ctx * 2)):
        try:
            c.completions.create(model="demo", prompt="She", **kw)
            raise AssertionError(f"{kw}: accepted")
        except openai.BadRequestError as e:
            assert e.status_code == 400 and e.body and e.body.get("message"), e.body
    try:
        openai.OpenAI(base_url=ARGS.base + "/v1", api_key="wrong", max_retries=0).models.list()
        raise AssertionError("wrong key accepted")
    except openai.AuthenticationError as e:
        assert e.status_code == 401


def test_concurrent_equals_alone():
    """More requests than slots at once, mixed streamed and not: each gives the
    text it gives alone (greedy), so batching changes nothing."""
    c = client()
    jobs = [(PROMPTS[i % len(PROMPTS)], 6 + 5 * i, i % 2 == 0) for i in range(10)]
    alone = [c.completions.create(model="demo", prompt=p, max_tokens=n, temperature=0,
                                  extra_body={"ignore_eos": True}).choices[0].text for p, n, _ in jobs]
    got = [None] * len(jobs)

    def one(i):
        p, n, stream = jobs[i]
        if stream:
            got[i] = "".join(ch.text for chunk in c.completions.create(
                model="demo", prompt=p, max_tokens=n, temperature=0, stream=True,
                extra_body={"ignore_eos": True}) for ch in chunk.choices)
        else:
            got[i] = c.completions.create(model="demo", prompt=p, max_tokens=n, temperature=0,
                                          extra_body={"ignore_eos": True}).choices[0].text

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(jobs)):
        assert got[i] == alone[i], f"request {i}: together {got[i]!r} != alone {alone[i]!r}"
    m = metrics()
    assert m["pregate_active_sequences"] == 0 and m["pregate_queue_length"] == 0, m


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--pregate", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--timeout", type=int, required=True)
    ap.add_argument("--max-body", type=int, required=True)
    ARGS = ap.parse_args()
    for fn in (test_health_and_models, test_bad_json, test_wrong_types_and_missing_fields, test_context_limits,
               test_body_size, test_api_key, test_paths_and_methods, test_garbage_and_slow_loris,
               test_client_hangs_up):
        case(fn)
    try:
        import openai  # noqa: F401
        have_openai = True
    except ImportError:
        have_openai = False
        print(f"SKIP server_openai_client: {sys.executable} cannot import openai; set PREGATE_PYTHON to a Python "
              "with it (python3 -m venv V && V/bin/pip install openai; PREGATE_PYTHON=V/bin/python)",
              file=sys.stderr)
    if have_openai:
        for fn in (test_models_openai, test_completion, test_chat, test_greedy_equals_run, test_max_tokens,
                   test_stop, test_seed, test_errors_through_client, test_concurrent_equals_alone):
            case(fn)
    case(test_metrics_format)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
