/* test_offload.c - the offloading invariant: for every prefetch mode,
 * eviction policy, store and budget, the logits are bit-identical to the
 * all-resident run; and faults in the slow tier fail the step cleanly,
 * leave no reference behind, and the next step works. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"
#include "forward.h"
#include "sampler.h"
#include "test.h"

#define PREGATED_DEMO "models/demo-moe-pregated-q8_0.gguf"
#define N_PROMPT 7
#define N_GEN 9

typedef struct {
    int32_t tokens[N_PROMPT + N_GEN];
    float *logits; /* [N_PROMPT + N_GEN][V] */
    pg_trace trace;
} reference;

/* Runs prompt (as one chunk) + greedy decode, all logits kept. Returns 0 ok. */
static int run_(pg_session *s, reference *ref, bool choose_tokens, float *out, pg_error *e) {
    int V = s->m->hp.vocab;
    pg_session_reset(s);
    if (pg_session_eval(s, ref->tokens, N_PROMPT, out, e)) return -1;
    for (int i = N_PROMPT; i < N_PROMPT + N_GEN; i++) {
        if (choose_tokens) ref->tokens[i] = pg_argmax(s->logits, V);
        if (pg_session_eval(s, &ref->tokens[i], 1, out + (size_t)i * V, e)) return -1;
    }
    return 0;
}

static void check_modes_(const char *what, const char *gguf_path) {
    pg_error e = {{0}};
    pg_model *m = pg_model_open(gguf_path, &e);
    CHECK(m != NULL, "%s: %s", what, e.msg);
    if (!m) return;
    int V = m->hp.vocab;
    size_t nlog = (size_t)(N_PROMPT + N_GEN) * V;
    reference ref;
    memset(&ref, 0, sizeof ref);
    for (int i = 0; i < N_PROMPT; i++) ref.tokens[i] = (i * 7919 + 13) % V;
    ref.logits = xmalloc(nlog * sizeof(float));
    pg_trace_init(&ref.trace, m->hp.n_layer, m->hp.n_expert, m->hp.n_expert_used, m->hp.dim, true);
    pg_session *s = pg_session_new(m, 64, 2, &e);
    s->trace = &ref.trace;
    CHECK(run_(s, &ref, true, ref.logits, &e) == 0, "%s: resident: %s", what, e.msg);
    s->trace = NULL;
    float *got = xmalloc(nlog * sizeof(float));
    size_t min = pg_cache_min_budget(m);
    const pg_prefetch_mode modes[] = {PG_PREFETCH_NONE, PG_PREFETCH_NEXT_ALL, PG_PREFETCH_PREGATE, PG_PREFETCH_ORACLE,
                                      PG_PREFETCH_NONE_SERIAL, PG_PREFETCH_NATIVE};
    const pg_evict policies[] = {PG_EVICT_LRU, PG_EVICT_LFU, PG_EVICT_LOOKAHEAD};
    const pg_store_kind stores[] = {PG_STORE_PREAD, PG_STORE_DIRECT, PG_STORE_MMAP, PG_STORE_TIMED};
    int runs = 0;
    for (size_t mi = 0; mi < (m->hp.expert_pregated ? 6u : 5u); mi++)
        for (size_t pi = 0; pi < 3; pi++)
            for (int budget = 0; budget < 2; budget++) {
                pg_offload_params p;
                pg_offload_params_default(&p);
                p.mode = modes[mi];
                p.evict = policies[pi];
                p.store = stores[(mi + pi + budget) % 4];
                if (p.store == PG_STORE_TIMED) pg_link_parse("50GBps,1us", &p.link, &e); /* it needs a link */
                p.expert_mem = budget ? m->bytes_experts * 2 / 5 : min;
                p.oracle = &ref.trace;
                p.depth = 1 + (int)((mi + pi) % 2);
                p.io_threads = 1 + budget;
                pg_offload *o = pg_offload_new(m, &p, &e);
                CHECK(o != NULL, "%s: %s", what, e.msg);
                if (!o) continue;
                pg_session_set_offload(s, o);
                memset(got, 0, nlog * sizeof(float));
                int rc = run_(s, &ref, false, got, &e);
                CHECK(rc == 0, "%s: %s", what, e.msg);
                CHECK(memcmp(got, ref.logits, nlog * sizeof(float)) == 0,
                      "%s: mode %s, evict %s, store %s, budget %s: logits differ from resident", what,
                      pg_prefetch_name(p.mode), pg_evict_name(p.evict), pg_store_kind_name(p.store),
                      budget ? "40%" : "minimum");
                CHECK(pg_cache_refs_held(o->cache) == 0, "%s: references left after a run", what);
                CHECK(pg_cache_peak_bytes(o->cache) <= p.expert_mem, "%s: fast tier exceeded its budget", what);
                if (p.mode == PG_PREFETCH_ORACLE || p.mode == PG_PREFETCH_NATIVE) {
                    /* the oracle and a pre-gated model know every layer after the first of each step */
                    uint64_t t = 0, a = 0;
                    for (int l = 1; l < m->hp.n_layer; l++) {
                        t += pg_cache_stats(o->cache, l)->pred_true;
                        a += pg_cache_stats(o->cache, l)->actual_total;
                    }
                    CHECK(t == a, "%s: oracle recall %llu/%llu, expected all", what, (unsigned long long)t,
                          (unsigned long long)a);
                }
                runs++;
                pg_session_set_offload(s, NULL);
            }
    fprintf(stderr, "  %-24s %d offloaded runs bit-identical to resident\n", what, runs);
    /* a budget below one layer's top-k is refused, naming the minimum */
    pg_offload_params p;
    pg_offload_params_default(&p);
    p.expert_mem = min - 1;
    pg_offload *o = pg_offload_new(m, &p, &e);
    CHECK(o == NULL && strstr(e.msg, "minimum"), "%s: too small a budget: %s", what, o ? "accepted" : e.msg);
    pg_offload_free(o);
    /* faults: the step fails with a clear message (EIO, short read, a read
     * that never completes) or goes through (EINTR is retried, a 100 ms
     * spike only costs time); either way no reference is left behind and
     * the next step gives the resident logits; on demand with each expert
     * computed as it arrives, then with the whole layer awaited first */
    const pg_fault faults[] = {PG_FAULT_EIO, PG_FAULT_SHORT_READ, PG_FAULT_EINTR, PG_FAULT_DELAY, PG_FAULT_HANG};
    const char *expect[] = {"Input/output error", "short read", NULL, NULL, "did not complete within"};
    for (int run = 0; run < 10; run++) {
        const int fi = run % 5;
        pg_offload_params_default(&p);
        p.expert_mem = min;
        p.store = PG_STORE_PREAD;
        p.mode = run < 5 ? PG_PREFETCH_NONE : PG_PREFETCH_NONE_SERIAL;
        p.io_timeout = 0.2;
        o = pg_offload_new(m, &p, &e);
        if (!o) { CHECK(0, "%s", e.msg); break; }
        pg_session_set_offload(s, o);
        pg_store_inject(o->store, faults[fi], 2, 1);
        int rc = run_(s, &ref, false, got, &e);
        if (expect[fi]) {
            CHECK(rc != 0 && strstr(e.msg, expect[fi]), "%s: fault %d: rc %d, message: %s", what, fi, rc, e.msg);
            CHECK(pg_cache_refs_held(o->cache) == 0, "%s: fault %d left references", what, fi);
            /* the stalled device recovers; its late read completes normally */
            if (faults[fi] == PG_FAULT_HANG) pg_store_release_hangs(o->store);
            rc = run_(s, &ref, false, got, &e);
        }
        CHECK(rc == 0 && memcmp(got, ref.logits, nlog * sizeof(float)) == 0, "%s: fault %d: the run after %s",
              what, fi, rc ? e.msg : "differs from resident");
        CHECK(pg_cache_refs_held(o->cache) == 0, "%s: fault %d: references left", what, fi);
        pg_session_set_offload(s, NULL);
    }
    pg_session_free(s);
    pg_trace_free(&ref.trace);
    free(ref.logits);
    free(got);
    pg_model_free(m);
}

static void test_fixture_families(void) {
    const char *fam[] = {"mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek2", "deepseek2-lora", "deepseek3",
                         "deepseek2-yarn", "gptoss", "gptoss-mxfp4"};
    char dir[256], out[256];
    for (int i = 0; i < (int)(sizeof fam / sizeof *fam); i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fam[i]);
        snprintf(out, sizeof out, "/tmp/pregate-offload-%d-%s.gguf", (int)getpid(), fam[i]);
        pg_error e = {{0}};
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m && pg_model_write_gguf(m, out, &e) == 0, "%s: %s", fam[i], e.msg);
        pg_model_free(m);
        check_modes_(fam[i], out);
        unlink(out);
    }
}

/* A natively pre-gated model (the qwen3moe fixture with the flag set; its
 * numbers are its own, not transformers'): every mode, native included,
 * gives the resident logits, native with perfect precision and recall;
 * native on a model without the flag is refused. */
static void test_pregated(void) {
    char out[256];
    snprintf(out, sizeof out, "/tmp/pregate-offload-%d-pregated.gguf", (int)getpid());
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/qwen3moe", &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    pg_offload_params p;
    pg_offload_params_default(&p);
    p.mode = PG_PREFETCH_NATIVE;
    p.expert_mem = pg_cache_min_budget(m);
    pg_offload *o = pg_offload_new(m, &p, &e);
    CHECK(o == NULL && strstr(e.msg, "not natively pre-gated"), "native on a plain model: %s", o ? "accepted" : e.msg);
    pg_offload_free(o);
    m->hp.expert_pregated = true;
    CHECK(pg_model_write_gguf(m, out, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    m = pg_model_open(out, &e);
    CHECK(m && m->hp.expert_pregated, "the flag did not survive the GGUF: %s", m ? "unset" : e.msg);
    pg_model_free(m);
    check_modes_("qwen3moe pre-gated", out);
    unlink(out);
}

static void test_demo_model(void) {
    if (access("models/demo-moe.gguf", R_OK)) TEST_SKIP("models/demo-moe.gguf missing");
    check_modes_("demo-moe", "models/demo-moe.gguf");
}

/* The trained natively pre-gated twin (Q8_0): native included. */
static void test_demo_pregated(void) {
    if (access(PREGATED_DEMO, R_OK)) TEST_SKIP(PREGATED_DEMO " missing");
    check_modes_("demo-moe-pregated", PREGATED_DEMO);
}

static void test_parse(void) {
    size_t v;
    pg_error e;
    CHECK(pg_parse_mem("2GiB", 0, &v, &e) == 0 && v == 2ull << 30, "2GiB");
    CHECK(pg_parse_mem("512MiB", 0, &v, &e) == 0 && v == 512ull << 20, "512MiB");
    CHECK(pg_parse_mem("25%", 1000, &v, &e) == 0 && v == 250, "25%%");
    CHECK(pg_parse_mem("1.5GB", 0, &v, &e) == 0 && v == 1500000000ull, "1.5GB");
    CHECK(pg_parse_mem("12XB", 0, &v, &e) != 0 && strstr(e.msg, "unit"), "bad unit: %s", e.msg);
    CHECK(pg_parse_mem("-1", 0, &v, &e) != 0, "negative");
    CHECK(pg_parse_mem("150%", 10, &v, &e) != 0, "over 100%%");
    pg_prefetch_mode md;
    CHECK(pg_prefetch_parse("pregate", &md, &e) == 0 && md == PG_PREFETCH_PREGATE, "pregate");
    CHECK(pg_prefetch_parse("psychic", &md, &e) != 0 && strstr(e.msg, "psychic"), "unknown mode");
}

int main(void) {
    TEST_RUN(test_parse);
    TEST_RUN(test_fixture_families);
    TEST_RUN(test_pregated);
    TEST_RUN(test_demo_model);
    TEST_RUN(test_demo_pregated);
    return test_summary("test_offload");
}
