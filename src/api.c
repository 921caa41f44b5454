/* api.c - include/pregate.h over the internal structures. */
#include "pregate.h"

#include <stdio.h>
#include <stdlib.h>

#include "forward.h"
#include "sampler.h"

struct pregate_model {
    pg_model *m;
};

struct pregate_context {
    pregate_model *model;
    pg_session *s;
};

static void err_(char *err, size_t n, const char *msg) {
    if (err && n) snprintf(err, n, "%s", msg);
}

pregate_model *pregate_model_open(const char *path, char *err, size_t err_size) {
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    if (!m) {
        err_(err, err_size, e.msg);
        return NULL;
    }
    pregate_model *pm = xcalloc(1, sizeof *pm);
    pm->m = m;
    return pm;
}

void pregate_model_close(pregate_model *m) {
    if (!m) return;
    pg_model_free(m->m);
    free(m);
}

int pregate_model_n_vocab(const pregate_model *m) { return m->m->hp.vocab; }
int pregate_model_n_layer(const pregate_model *m) { return m->m->hp.n_layer; }
int pregate_model_n_expert(const pregate_model *m) { return m->m->hp.n_expert; }
bool pregate_model_has_tokenizer(const pregate_model *m) { return m->m->tok != NULL; }

int pregate_tokenize(const pregate_model *m, const char *text, size_t len, bool add_bos, int32_t *ids, int max_ids,
                     char *err, size_t err_size) {
    if (!m->m->tok) {
        err_(err, err_size, "the model has no tokenizer");
        return -1;
    }
    pg_error e = {{0}};
    int32_t *out = NULL;
    size_t n = 0;
    if (pg_tokenize(m->m->tok, text, len, add_bos && pg_tokenizer_bos(m->m->tok) >= 0, false, &out, &n, &e)) {
        err_(err, err_size, e.msg);
        return -1;
    }
    if (n > (size_t)(max_ids < 0 ? 0 : max_ids)) {
        char msg[128];
        snprintf(msg, sizeof msg, "the text needs %zu token ids, more than the %d given", n, max_ids);
        err_(err, err_size, msg);
        free(out);
        return -1;
    }
    memcpy(ids, out, n * sizeof(int32_t));
    free(out);
    return (int)n;
}

size_t pregate_token_to_bytes(const pregate_model *m, int32_t id, char *out, size_t cap) {
    if (!m->m->tok || id < 0 || id >= pg_tokenizer_n_vocab(m->m->tok)) return 0;
    return pg_token_to_bytes(m->m->tok, id, out, cap);
}

bool pregate_token_is_eog(const pregate_model *m, int32_t id) {
    return m->m->tok && pg_tokenizer_is_eog(m->m->tok, id);
}

void pregate_context_params_default(pregate_context_params *p) {
    *p = (pregate_context_params){.n_ctx = 0, .n_threads = 0, .expert_mem = NULL, .prefetch = NULL, .link = NULL};
}

pregate_context *pregate_context_new(pregate_model *m, const pregate_context_params *p, char *err, size_t err_size) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new(m->m, p->n_ctx, p->n_threads, &e);
    if (!s) {
        err_(err, err_size, e.msg);
        return NULL;
    }
    if (p->expert_mem) {
        pg_offload_params op;
        pg_offload_params_default(&op);
        if (pg_parse_mem(p->expert_mem, m->m->bytes_experts, &op.expert_mem, &e) ||
            (p->prefetch && pg_prefetch_parse(p->prefetch, &op.mode, &e)) ||
            (p->link && pg_link_parse(p->link, &op.link, &e))) {
            err_(err, err_size, e.msg);
            pg_session_free(s);
            return NULL;
        }
        if (op.mode == PG_PREFETCH_ORACLE || op.mode == PG_PREFETCH_RESIDENT) {
            err_(err, err_size, "prefetch must be none, next-layer-all or pregate with expert_mem");
            pg_session_free(s);
            return NULL;
        }
        op.store = pg_store_default(&op.link);
        pg_offload *off = pg_offload_new(m->m, &op, &e);
        if (!off) {
            err_(err, err_size, e.msg);
            pg_session_free(s);
            return NULL;
        }
        pg_session_set_offload(s, off);
    }
    pregate_context *c = xcalloc(1, sizeof *c);
    c->model = m;
    c->s = s;
    return c;
}

void pregate_context_free(pregate_context *c) {
    if (!c) return;
    pg_session_free(c->s);
    free(c);
}

void pregate_context_reset(pregate_context *c) { pg_session_reset(c->s); }
int pregate_context_n_past(const pregate_context *c) { return c->s->n_past; }

int pregate_eval(pregate_context *c, const int32_t *tokens, int n, char *err, size_t err_size) {
    pg_error e = {{0}};
    if (pg_session_eval(c->s, tokens, n, NULL, &e)) {
        err_(err, err_size, e.msg);
        return -1;
    }
    return 0;
}

const float *pregate_logits(const pregate_context *c) { return c->s->logits; }
int32_t pregate_argmax(const pregate_context *c) { return pg_argmax(c->s->logits, c->s->m->hp.vocab); }
