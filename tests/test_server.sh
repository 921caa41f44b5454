#!/bin/sh
# `pregate serve` on the demo model, end to end: starts the server on a free
# port (--port 0; the port is read from its "listening on" line), runs
# tests/server/test_openai.py against it (the openai-client cases with
# $PREGATE_PYTHON, skipped with a message when that Python cannot import
# openai; the bad-input cases with any python3), then stops it with SIGTERM
# and checks that it exits 0 (under SANITIZE=1: no leak, no sanitizer report).
BUILD=${BUILD:-build}
P=$BUILD/pregate
name=test_server
MODEL=models/demo-moe.gguf
CTX=256
KEY=test-key-$$
TIMEOUT=2
MAX_BODY=65536
[ -f "$MODEL" ] || { echo "SKIP $name: $MODEL missing" >&2; exit 0; }
if ! "$P" serve --help >/dev/null 2>&1; then
    echo "SKIP $name: $("$P" serve 2>&1 | head -n 1)" >&2
    exit 0
fi
PY=${PREGATE_PYTHON:-python3}
if ! "$PY" -c 'import openai' >/dev/null 2>&1; then
    # the bad-input cases need only the standard library
    command -v python3 >/dev/null 2>&1 || { echo "SKIP $name: no python3 to run tests/server/test_openai.py" >&2; exit 0; }
    PY=python3
fi
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL $name: $*" >&2; tail -n 30 "$dir/log" >&2; exit 1; }

"$P" serve -m "$MODEL" --port 0 -c $CTX --parallel 4 --alias demo --api-key "$KEY" --timeout $TIMEOUT \
    --max-body $MAX_BODY -t 2 >"$dir/log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 600); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the server exited at start"
    sleep 0.1
done
[ -n "$port" ] || fail "the server did not start listening in 60 s"

"$PY" tests/server/test_openai.py --base "http://127.0.0.1:$port" --key "$KEY" --pregate "$P" --model "$MODEL" \
    --ctx $CTX --timeout $TIMEOUT --max-body $MAX_BODY
py_rc=$?

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || fail "the server exited with status $rc after SIGTERM"
grep -q "Sanitizer" "$dir/log" && fail "sanitizer report in the server's log"
grep -q "shutting down" "$dir/log" || fail "no shutdown message"
echo "ok   server_clean_shutdown" >&2
[ "$py_rc" -eq 0 ] || exit 1
exit 0
