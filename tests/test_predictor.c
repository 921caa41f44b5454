/* test_predictor.c - routing traces and learned pre-gates on the demo model:
 * trace files round-trip and damaged ones are refused; a head that has not
 * been trained predicts exactly what the borrowed router does; fitting
 * lowers the held-out loss; predictor files of another model are refused;
 * and `learned` prefetching leaves the logits bit-identical. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "forward.h"
#include "test.h"

static pg_model *m_;
static pg_trace tr_;
static int32_t *ids_;
static size_t n_ids_;

static int setup_(void) {
    if (m_) return 0;
    if (access("models/demo-moe.gguf", R_OK)) return -1;
    pg_error e = {{0}};
    m_ = pg_model_open("models/demo-moe.gguf", &e);
    char *text = NULL;
    size_t len;
    if (!m_ || pg_read_file("tests/fixtures/demo-moe/heldout-slice.txt", &text, &len, &e) ||
        pg_tokenize(m_->tok, text, len, false, false, &ids_, &n_ids_, &e)) {
        fprintf(stderr, "setup: %s\n", e.msg);
        free(text);
        return -1;
    }
    free(text);
    if (n_ids_ > 256) n_ids_ = 256;
    pg_trace_init(&tr_, m_->hp.n_layer, m_->hp.n_expert, m_->hp.n_expert_used, m_->hp.dim, true);
    pg_session *s = pg_session_new(m_, 256, 2, &e);
    s->trace = &tr_;
    int rc = pg_session_eval(s, ids_, (int)n_ids_, NULL, &e);
    pg_session_free(s);
    return rc;
}

static void test_trace_file(void) {
    if (setup_()) TEST_SKIP("demo model missing");
    char path[128];
    snprintf(path, sizeof path, "/tmp/pregate-trace-%d.bin", (int)getpid());
    pg_error e = {{0}};
    CHECK(tr_.n_pos == (int)n_ids_, "trace holds %d positions", tr_.n_pos);
    CHECK(pg_trace_write(&tr_, path, &e) == 0, "%s", e.msg);
    pg_trace back;
    CHECK(pg_trace_read(&back, path, &e) == 0, "%s", e.msg);
    size_t per = (size_t)tr_.n_pos * tr_.n_layer * tr_.k;
    CHECK(back.n_pos == tr_.n_pos && memcmp(back.experts, tr_.experts, per * 2) == 0 &&
              memcmp(back.weights, tr_.weights, per * 4) == 0 &&
              memcmp(back.hidden, tr_.hidden, (size_t)tr_.n_pos * tr_.n_layer * tr_.dim * 2) == 0,
          "round trip differs");
    pg_trace_free(&back);
    /* damaged: truncated, bad magic */
    char *buf;
    size_t len;
    pg_read_file(path, &buf, &len, &e);
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, len - 3, f);
    fclose(f);
    CHECK(pg_trace_read(&back, path, &e) != 0 && strstr(e.msg, "does not match"), "truncated: %s", e.msg);
    buf[0] = 'X';
    f = fopen(path, "wb");
    fwrite(buf, 1, len, f);
    fclose(f);
    CHECK(pg_trace_read(&back, path, &e) != 0 && strstr(e.msg, "magic"), "bad magic: %s", e.msg);
    free(buf);
    unlink(path);
}

static void test_fit(void) {
    if (setup_()) TEST_SKIP("demo model missing");
    pg_error e = {{0}};
    pg_fit_params fp;
    pg_fit_params_default(&fp);
    /* untrained: exactly the borrowed router's ranking */
    fp.epochs = 0;
    pg_predictor p0;
    pg_fit_layer_report rep[16];
    CHECK(pg_predictor_fit(m_, &tr_, &fp, &p0, rep, &e) == 0, "%s", e.msg);
    int D = m_->hp.dim, E = m_->hp.n_expert, K = m_->hp.n_expert_used, same = 0, total = 0;
    float *h = xmalloc((size_t)D * 4), *xn = xmalloc((size_t)D * 4), *z1 = xmalloc((size_t)E * 4), *z2 = xmalloc((size_t)E * 4);
    int i1[8], i2[8];
    for (int pos = 0; pos < tr_.n_pos; pos += 17)
        for (int t = 0; t < m_->hp.n_layer; t++) {
            const uint16_t *src = tr_.hidden + ((size_t)pos * tr_.n_layer + t) * D;
            for (int i = 0; i < D; i++) h[i] = pg_f16_to_f32(src[i]);
            pg_predictor_logits(&p0, t, h, z1);
            pg_rmsnorm_ref(D, h, m_->layers[t].ffn_norm, m_->hp.norm_eps, xn);
            pg_matmul_ref(&m_->layers[t].router, 1, xn, D, z2, E);
            pg_topk(z1, E, K, i1);
            pg_topk(z2, E, K, i2);
            same += memcmp(i1, i2, (size_t)K * sizeof(int)) == 0;
            total++;
        }
    CHECK(same >= total - 1, "untrained head ranks like the borrowed router in %d of %d cases", same, total);
    for (int t = 0; t < m_->hp.n_layer; t++)
        CHECK(fabs(rep[t].recall_learned - rep[t].recall_borrowed) < 1e-9, "layer %d: recall moved without training", t);
    pg_predictor_free(&p0);
    /* trained: the held-out recall never gets worse, and the loss improves somewhere */
    fp.epochs = 40;
    pg_predictor p;
    CHECK(pg_predictor_fit(m_, &tr_, &fp, &p, rep, &e) == 0, "%s", e.msg);
    int better = 0;
    for (int t = 0; t < m_->hp.n_layer; t++) {
        CHECK(rep[t].recall_learned >= rep[t].recall_borrowed, "layer %d: recall got worse", t);
        better += rep[t].loss_learned < rep[t].loss_borrowed - 1e-3;
        fprintf(stderr, "  layer %d: held-out recall borrowed %.3f learned %.3f, loss %.4f -> %.4f\n", t,
                rep[t].recall_borrowed, rep[t].recall_learned, rep[t].loss_borrowed, rep[t].loss_learned);
    }
    CHECK(better > 0, "fitting improved no layer");
    /* file round trip and refusals */
    char path[128];
    snprintf(path, sizeof path, "/tmp/pregate-pred-%d.gguf", (int)getpid());
    CHECK(pg_predictor_write(&p, path, &e) == 0, "%s", e.msg);
    pg_predictor q;
    CHECK(pg_predictor_read(&q, m_, path, &e) == 0, "%s", e.msg);
    CHECK(memcmp(q.w, p.w, (size_t)m_->hp.n_layer * E * D * 4) == 0, "weights differ after a round trip");
    /* learned prefetching: logits bit-identical to resident */
    pg_session *s = pg_session_new(m_, 256, 2, &e);
    int V = m_->hp.vocab, T = 40;
    float *a = xmalloc((size_t)T * V * 4), *b = xmalloc((size_t)T * V * 4);
    CHECK(pg_session_eval(s, ids_, T, a, &e) == 0, "%s", e.msg);
    pg_offload_params op;
    pg_offload_params_default(&op);
    op.mode = PG_PREFETCH_LEARNED;
    op.predictor = &q;
    op.expert_mem = pg_cache_min_budget(m_);
    op.store = PG_STORE_PREAD;
    pg_offload *o = pg_offload_new(m_, &op, &e);
    CHECK(o != NULL, "%s", e.msg);
    pg_session_set_offload(s, o);
    pg_session_reset(s);
    for (int t = 0; t < T; t++) CHECK(pg_session_eval(s, ids_ + t, 1, b + (size_t)t * V, &e) == 0, "%s", e.msg);
    CHECK(memcmp(a, b, (size_t)T * V * 4) == 0, "learned prefetching changed the logits");
    pg_session_free(s);
    free(a);
    free(b);
    pg_predictor_free(&q);
    /* another model's predictor: wrong shape, then wrong fingerprint */
    pg_model *other = pg_model_open("tests/fixtures/qwen3moe", &e);
    CHECK(other && pg_predictor_read(&q, other, path, &e) != 0 && strstr(e.msg, "this model has"), "other shape: %s", e.msg);
    pg_model_free(other);
    p.fingerprint ^= 1;
    pg_predictor_write(&p, path, &e);
    CHECK(pg_predictor_read(&q, m_, path, &e) != 0 && strstr(e.msg, "another model"), "fingerprint: %s", e.msg);
    CHECK(pg_predictor_read(&q, m_, "models/demo-moe.gguf", &e) != 0 && strstr(e.msg, "not a pregate predictor"),
          "a model file as predictor: %s", e.msg);
    unlink(path);
    pg_predictor_free(&p);
    free(h); free(xn); free(z1); free(z2);
}

/* Depth-2 heads name layer t from the stream before layer t-2's FFN: they
 * fit, survive the file round trip with their depth, are scored against
 * the right layer, and learned prefetching with them changes no logit. */
static void test_depth2(void) {
    if (setup_()) TEST_SKIP("demo model missing");
    pg_error e = {{0}};
    pg_fit_params fp;
    pg_fit_params_default(&fp);
    fp.depth = 2;
    fp.epochs = 20;
    pg_predictor p, q;
    pg_fit_layer_report rep[16];
    CHECK(pg_predictor_fit(m_, &tr_, &fp, &p, rep, &e) == 0 && p.depth == 2, "%s", e.msg);
    for (int t = 0; t < m_->hp.n_layer; t++) {
        CHECK(rep[t].recall_learned >= rep[t].recall_borrowed, "depth 2, layer %d: recall got worse", t);
        fprintf(stderr, "  depth 2, layer %d: held-out recall borrowed %.3f learned %.3f\n", t, rep[t].recall_borrowed,
                rep[t].recall_learned);
    }
    char path[128];
    snprintf(path, sizeof path, "/tmp/pregate-pred2-%d.gguf", (int)getpid());
    CHECK(pg_predictor_write(&p, path, &e) == 0 && pg_predictor_read(&q, m_, path, &e) == 0 && q.depth == 2,
          "depth round trip: %s", e.msg);
    unlink(path);
    pg_session *s = pg_session_new(m_, 256, 2, &e);
    int V = m_->hp.vocab, T = 24;
    float *a = xmalloc((size_t)T * V * 4), *b = xmalloc((size_t)T * V * 4);
    CHECK(pg_session_eval(s, ids_, T, a, &e) == 0, "%s", e.msg);
    pg_offload_params op;
    pg_offload_params_default(&op);
    op.mode = PG_PREFETCH_LEARNED;
    op.predictor = &q;
    op.expert_mem = m_->bytes_experts / 2;
    op.store = PG_STORE_PREAD;
    op.min_precision = 0;
    pg_offload *o = pg_offload_new(m_, &op, &e);
    CHECK(o != NULL, "%s", e.msg);
    pg_session_set_offload(s, o);
    pg_session_reset(s);
    for (int t = 0; t < T; t++) CHECK(pg_session_eval(s, ids_ + t, 1, b + (size_t)t * V, &e) == 0, "%s", e.msg);
    CHECK(memcmp(a, b, (size_t)T * V * 4) == 0, "depth-2 learned prefetching changed the logits");
    /* every MoE layer was predicted and scored: layer 1 from the embedding, the rest two layers early */
    for (int l = 0; l < m_->hp.n_layer; l++) {
        const pg_cache_layer_stats *st = pg_cache_stats(o->cache, l);
        CHECK(st->pred_total > 0 && st->pred_true > 0, "layer %d: no depth-2 prediction scored", l);
    }
    pg_session_free(s);
    free(a);
    free(b);
    pg_predictor_free(&q);
    pg_predictor_free(&p);
}

int main(void) {
    TEST_RUN(test_trace_file);
    TEST_RUN(test_fit);
    TEST_RUN(test_depth2);
    pg_trace_free(&tr_);
    free(ids_);
    pg_model_free(m_);
    return test_summary("test_predictor");
}
