#!/bin/sh
# Memcheck on short runs of the optimised build (CI runs it; issue 8's
# "valgrind --error-exitcode=1 clean on a short run"):
#   1. `pregate run` with experts offloaded (pre-gating, a small fast tier,
#      I/O threads): 16 tokens;
#   2. `pregate serve` with offloaded experts: a completion, a streamed chat
#      completion, a malformed body (400), a client that hangs up while its
#      tokens stream, /metrics; then SIGTERM.
# Fails on any Memcheck error, any definite or indirect leak, a server that
# does not answer, or a descriptor the program opened and left open (fds
# valgrind reports as inherited from this shell are ignored).
#   sh tests/valgrind.sh      (needs valgrind and curl; skips without them)
BUILD=${BUILD:-build}
P=$BUILD/pregate
MODEL=models/demo-moe.gguf
name=valgrind
for tool in valgrind curl; do
    command -v $tool >/dev/null 2>&1 || { echo "SKIP $name: $tool is not installed" >&2; exit 0; }
done
[ -x "$P" ] || { echo "FAIL $name: $P missing (make first)" >&2; exit 1; }
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
fail() { echo "FAIL $name: $*" >&2; tail -n 40 "$dir/$log" >&2; exit 1; }
VG="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --track-fds=yes"

# the fds a clean run leaves: stdin/out/err and whatever this shell handed down
leaked_fds() {
    awk '/Open file descriptor [0-9]+:/ { if (fd != "") n++; fd = $0; if ($0 ~ /descriptor [012]:/) fd = ""; next }
         /inherited from parent/ { fd = "" } END { if (fd != "") n++; print n + 0 }' "$1"
}

log=run.log
echo "== valgrind: pregate run (offloaded, pregate prefetch)"
$VG "$P" run -m "$MODEL" -p "Once upon a time" -n 16 --temp 0 -t 2 --expert-mem 40% --prefetch pregate \
    >"$dir/run.out" 2>"$dir/$log" || fail "pregate run under valgrind exited $?"
[ -s "$dir/run.out" ] || fail "pregate run printed nothing"
[ "$(leaked_fds "$dir/$log")" = 0 ] || fail "pregate run left descriptors open"

log=serve.log
echo "== valgrind: pregate serve (offloaded), five requests, SIGTERM"
$VG "$P" serve -m "$MODEL" --port 0 -np 2 -c 256 -t 2 --expert-mem 40% --prefetch pregate >"$dir/$log" 2>&1 &
pid=$!
port=
for _ in $(seq 1 300); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the server exited at start"
    sleep 0.2
done
[ -n "$port" ] || fail "the server did not start listening"
U=http://127.0.0.1:$port
J="Content-Type: application/json"
curl -sf "$U/v1/completions" -H "$J" -d '{"prompt":"Once upon a time","max_tokens":12,"temperature":0}' \
    | grep -q '"finish_reason":"length"' || fail "completion"
curl -sfN "$U/v1/chat/completions" -H "$J" \
    -d '{"messages":[{"role":"user","content":"Hello"}],"max_tokens":8,"stream":true}' \
    | grep -q '^data: \[DONE\]' || fail "streamed chat completion"
code=$(curl -s -o /dev/null -w '%{http_code}' "$U/v1/completions" -H "$J" -d '{"prompt":')
[ "$code" = 400 ] || fail "malformed body answered $code, not 400"
curl -s -m 2 -N "$U/v1/completions" -H "$J" -d '{"prompt":"It was","max_tokens":200,"stream":true}' >/dev/null
curl -sf "$U/metrics" | grep -q '^pregate_' || fail "/metrics"
kill -TERM "$pid"
wait "$pid"
rc=$?
pid=
[ $rc = 0 ] || fail "the server under valgrind exited $rc"
[ "$(leaked_fds "$dir/$log")" = 0 ] || fail "the server left descriptors open"
grep -h "ERROR SUMMARY" "$dir/run.log" "$dir/serve.log"
echo "ok   $name"
