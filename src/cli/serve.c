/* serve.c - `pregate serve`: the OpenAI-compatible HTTP server
 * (src/server/: http.c for HTTP, scheduler.c for batching, openai.c for
 * the JSON). Runs until SIGINT or SIGTERM, then ends every request in
 * flight, joins every thread and frees everything. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "forward.h"
#include "offload_opts.h"

#ifdef PG_HAVE_MICROHTTPD
#include "server/http.h"
#include "server/scheduler.h"
#endif

static void usage_(FILE *f) {
    fprintf(f,
            "usage: pregate serve -m MODEL [options]\n"
            "  -m, --model PATH       GGUF file or Hugging Face directory\n"
            "  --host ADDR            address to listen on (default 127.0.0.1)\n"
            "  --port N               port (default 8080; 0: any free port, printed at start)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' (all but /health)\n"
            "  -np, --parallel N      sequences generated together, each with its own KV cache (default 4, at most 32)\n"
            "  -c, --ctx-size N       context of each sequence (default: the model's, at most 4096)\n"
            "  -a, --alias NAME       a second name for the model in /v1/models and replies\n"
            "  -t, --threads N        compute threads (default: all cores but one, left to the HTTP threads)\n"
            "  --max-body SIZE        largest request body, e.g. 1MiB (default 1MiB; larger: 413)\n"
            "  --timeout S            close connections idle for S seconds (default 60)\n"
            "  --max-connections N    open connections at most (default 256)\n"
            "  -v, --verbose          one line per request on stderr\n"
            "  and the offloading options of `pregate run` (--expert-mem, --prefetch, --link, ...)\n"
            "endpoints: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health, GET /metrics\n");
}

#ifndef PG_HAVE_MICROHTTPD

int cmd_serve(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage_(stdout);
            break;
        }
    fprintf(stderr, "pregate serve: this pregate was built without libmicrohttpd; install it "
                    "(`make deps`, or apt-get install libmicrohttpd-dev) and run make again\n");
    return 1;
}

#else

/* The last path component: how /v1/models names the model. */
static const char *base_name_(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* a directory given as "dir/" */
    const char *p = path + n;
    while (p > path && p[-1] != '/') p--;
    return p;
}

int cmd_serve(int argc, char **argv) {
    const char *model_path = NULL;
    pg_http_params hp = {.host = "127.0.0.1", .port = 8080, .max_body = 1 << 20, .timeout_s = 60,
                         .max_connections = 256};
    long n_ctx = 0, n_threads = 0, parallel = 4, v;
    cli_offload off;
    cli_offload_init(&off);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() do { if (!val) { fprintf(stderr, "pregate: %s needs a value\n", a); return 2; } i++; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); model_path = val; }
        else if (!strcmp(a, "--host")) { NEEDV(); hp.host = val; }
        else if (!strcmp(a, "--port")) { NEEDV(); if (cli_long(a, val, 0, 65535, &v)) return 2; hp.port = (int)v; }
        else if (!strcmp(a, "--api-key")) { NEEDV(); hp.api_key = val; }
        /* at most one forward pass of rows, so that every decoding sequence
         * is in the one batch of each step */
        else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) { NEEDV(); if (cli_long(a, val, 1, PG_MAX_BATCH, &parallel)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { NEEDV(); if (cli_long(a, val, 0, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "-a") || !strcmp(a, "--alias")) { NEEDV(); hp.alias = val; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { NEEDV(); if (cli_long(a, val, 1, 1024, &n_threads)) return 2; }
        else if (!strcmp(a, "--timeout")) { NEEDV(); if (cli_long(a, val, 1, 86400, &v)) return 2; hp.timeout_s = (unsigned)v; }
        else if (!strcmp(a, "--max-connections")) { NEEDV(); if (cli_long(a, val, 1, 65536, &v)) return 2; hp.max_connections = (int)v; }
        else if (!strcmp(a, "--max-body")) {
            NEEDV();
            pg_error e = {{0}};
            if (pg_parse_mem(val, 0, &hp.max_body, &e) || hp.max_body == 0 || hp.max_body > (1ull << 32)) {
                fprintf(stderr, "pregate: --max-body expects a size from 1 byte to 4GiB (e.g. 1MiB), got '%s'\n", val);
                return 2;
            }
        }
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) hp.verbose = true;
        else if ((v = cli_offload_arg(&off, argc, argv, &i)) != 0) { if (v < 0) return 2; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_(stdout); return 0; }
        else { fprintf(stderr, "pregate serve: unknown option '%s' (see pregate serve --help)\n", a); return 2; }
#undef NEEDV
    }
    if (!model_path) { fprintf(stderr, "pregate serve: -m MODEL is required\n"); return 2; }
    if (hp.api_key && !*hp.api_key) { fprintf(stderr, "pregate serve: --api-key must not be empty\n"); return 2; }
    /* SIGINT/SIGTERM are taken by sigwait below, never by a thread: block them
     * before any thread starts (threads inherit the mask); a client that
     * hangs up must not kill the server with SIGPIPE */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    pg_error e = {{0}};
    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    int rc = 1;
    pg_session *s = NULL;
    pg_sched *sc = NULL;
    pg_server *srv = NULL;
    if (!m->tok) { fprintf(stderr, "pregate serve: %s has no tokenizer; the server needs one\n", model_path); goto done; }
    if (cli_offload_load(&off, m, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    /* the HTTP threads need a core too: compute threads that share every
     * core with them wait on each other at every step */
    if (n_threads == 0) n_threads = pg_cpu_count() > 1 ? pg_cpu_count() - 1 : 1;
    s = pg_session_new_seqs(m, (int)n_ctx, (int)parallel, (int)n_threads, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    if (cli_offload_wanted(&off)) {
        if (off.p.mode == PG_PREFETCH_ORACLE) {
            fprintf(stderr, "pregate serve: --prefetch oracle needs a recorded trace; use it with `pregate bench`\n");
            goto done;
        }
        if (cli_offload_attach(&off, cli_offload_mode(&off), NULL, s, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    }
    sc = pg_sched_new(s, &e);
    if (!sc) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    hp.model_id = base_name_(model_path);
    srv = pg_server_start(m, sc, &hp, &e);
    if (!srv) { fprintf(stderr, "pregate serve: %s\n", e.msg); goto done; }
    fprintf(stderr, "pregate serve: %s%s%s | %ld sequences x %d tokens | %d threads, %s | experts %s\n",
            hp.model_id, hp.alias ? " as " : "", hp.alias ? hp.alias : "", parallel, s->n_ctx, pg_pool_size(s->pool),
            pg_isa_name(pgk.isa), s->off ? pg_prefetch_name(s->off->p.mode) : "resident");
    fprintf(stderr, "pregate serve: listening on http://%s%s%s:%d%s\n", strchr(hp.host, ':') ? "[" : "", hp.host,
            strchr(hp.host, ':') ? "]" : "", pg_server_port(srv), hp.api_key ? " (API key required)" : "");
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "pregate serve: %s: shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
done:
    pg_server_stop(srv);
    pg_sched_free(sc);
    pg_session_free(s);
    cli_offload_free(&off);
    pg_model_free(m);
    return rc;
}

#endif
