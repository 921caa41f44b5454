/* scheduler.c - see scheduler.h */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "openai.h"

struct pg_job {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int refs;
    /* input, read-only after pg_job_new */
    int32_t *prompt;
    int n_prompt;
    pg_gen_params p;
    char **stop;
    /* output, under mu */
    pg_buf text;          /* published text: never part of a stop string */
    pg_finish finish;
    int n_gen;
    bool cancelled;
    bool reader_wants_text; /* a reader waits for text (not only for the end) */
    char error[256];
    /* generated ids: written by the scheduler thread alone, read once finished */
    int32_t *tokens;
    int n_tokens, cap_tokens;
    struct pg_job *next;  /* queue link, under the scheduler's mu */
};

const char *pg_finish_name(pg_finish f) {
    switch (f) {
    case PG_FINISH_STOP: return "stop";
    case PG_FINISH_LENGTH: return "length";
    case PG_FINISH_CANCELLED: return "cancelled";
    case PG_FINISH_ERROR: return "error";
    default: return NULL;
    }
}

/* Conditions wait on the monotonic clock, so that a change of the wall
 * clock neither cuts a wait short nor stretches it. */
static void cond_init_(pthread_cond_t *c) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

pg_job *pg_job_new(const int32_t *ids, int n, const pg_gen_params *p) {
    PG_ASSERT(n >= 1 && p->max_tokens >= 1 && p->n_stop >= 0);
    pg_job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    cond_init_(&j->cond);
    j->refs = 1;
    j->prompt = xmalloc((size_t)n * sizeof(int32_t));
    memcpy(j->prompt, ids, (size_t)n * sizeof(int32_t));
    j->n_prompt = n;
    j->p = *p;
    j->stop = xcalloc((size_t)(p->n_stop ? p->n_stop : 1), sizeof(char *));
    for (int i = 0; i < p->n_stop; i++) j->stop[i] = xstrdup(p->stop[i]);
    j->p.stop = j->stop;
    return j;
}

void pg_job_unref(pg_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cond);
    for (int i = 0; i < j->p.n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->prompt);
    free(j->tokens);
    pg_buf_free(&j->text);
    free(j);
}

static void job_ref_(pg_job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void pg_job_cancel(pg_job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancelled = true;
    pthread_mutex_unlock(&j->mu);
}

static bool job_cancelled_(pg_job *j) {
    pthread_mutex_lock(&j->mu);
    bool c = j->cancelled;
    pthread_mutex_unlock(&j->mu);
    return c;
}

bool pg_job_read(pg_job *j, int timeout_ms, size_t *from, pg_buf *out, pg_job_status *st) {
    pthread_mutex_lock(&j->mu);
    j->reader_wants_text = out != NULL;
    if ((!out || j->text.n <= *from) && j->finish == PG_FINISH_NONE && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cond, &j->mu, &ts);
    }
    if (out && j->text.n > *from) {
        pg_buf_add(out, j->text.s + *from, j->text.n - *from);
        *from = j->text.n;
    }
    st->finish = j->finish;
    st->n_prompt = j->n_prompt;
    st->n_gen = j->n_gen;
    snprintf(st->error, sizeof st->error, "%s", j->error);
    bool done = j->finish != PG_FINISH_NONE && (!out || *from == j->text.n);
    pthread_mutex_unlock(&j->mu);
    return done;
}

const int32_t *pg_job_tokens(const pg_job *j, int *n) {
    pg_job *jj = (pg_job *)j; /* the lock is not part of the value */
    pthread_mutex_lock(&jj->mu);
    bool done = j->finish != PG_FINISH_NONE;
    pthread_mutex_unlock(&jj->mu);
    *n = done ? j->n_tokens : 0;
    return done ? j->tokens : NULL;
}

/* ------------------------------------------------------------------ the scheduler */

typedef struct {
    pg_job *job;      /* NULL: free */
    int n_past;       /* positions in this slot's KV cache */
    int n_fed;        /* prompt tokens evaluated */
    int32_t next;     /* decoding: the token to evaluate next */
    uint64_t order;   /* admission order: prompts are fed oldest first */
    pg_sampler smp;
    pg_detok dt;
    pg_buf text;      /* all generated text */
    size_t sent;      /* bytes of text published to the job */
} slot;

#define RATE_WINDOW 10 /* seconds over which tokens_per_s is measured */

struct pg_sched {
    pg_session *s;
    const pg_tokenizer *tok;
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;   /* guards everything below up to `slots` */
    pthread_cond_t cond;  /* work arrived, or stop */
    pg_job *q_head, *q_tail;
    int n_queued;
    bool stopping;
    pg_sched_metrics m;
    long long rate_sec[RATE_WINDOW];
    uint64_t rate_tok[RATE_WINDOW];
    /* the scheduler thread's own */
    slot *slots;        /* [n_seq]; slot i is KV sequence i */
    uint64_t admitted;
    int32_t *b_tok;       /* [cap] the step's rows */
    int *b_seq, *b_pos, *b_slot;
    bool *b_want;
    float *b_logits;      /* [n_seq][vocab] */
    int cap;
};

static long long now_sec_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

/* Publishes text[sent..upto) of the slot to its job. */
static void publish_(slot *sl, size_t upto, int n_gen) {
    pg_job *j = sl->job;
    pthread_mutex_lock(&j->mu);
    bool grew = upto > sl->sent;
    if (grew) pg_buf_add(&j->text, sl->text.s + sl->sent, upto - sl->sent);
    sl->sent = upto > sl->sent ? upto : sl->sent;
    j->n_gen = n_gen;
    if (grew && j->reader_wants_text) pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
}

/* Ends the slot's job and frees the slot. The counters change first, so
 * that whoever sees the job finished sees them counting it. */
static void finish_(pg_sched *sc, slot *sl, pg_finish f, const char *error) {
    pg_job *j = sl->job;
    pthread_mutex_lock(&sc->mu);
    sc->m.jobs_done++;
    sc->m.cancelled += f == PG_FINISH_CANCELLED;
    sc->m.active--;
    pthread_mutex_unlock(&sc->mu);
    pthread_mutex_lock(&j->mu);
    j->finish = f;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    pg_job_unref(j);
    pg_sampler_free(&sl->smp);
    pg_buf_free(&sl->text);
    memset(sl, 0, sizeof *sl);
}

/* A job that never got a slot. Called with sc->mu held (so the counters
 * are seen together with the job's end). */
static void finish_queued_(pg_sched *sc, pg_job *j, pg_finish f, const char *error) {
    sc->m.jobs_done++;
    sc->m.cancelled += f == PG_FINISH_CANCELLED;
    pthread_mutex_lock(&j->mu);
    j->finish = f;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->mu);
    pg_job_unref(j);
}

static void admit_(pg_sched *sc, slot *sl, pg_job *j) {
    memset(sl, 0, sizeof *sl);
    sl->job = j;
    sl->order = sc->admitted++;
    pg_sampler_init(&sl->smp, &j->p.sp, sc->s->m->hp.vocab);
    for (int i = 0; i < j->n_prompt; i++) pg_sampler_accept(&sl->smp, j->prompt[i]);
    pg_detok_init(&sl->dt);
}

/* Under sc->mu: drops cancelled jobs from the queue, moves queued jobs into
 * free slots, updates the queue gauges. Returns the number of busy slots. */
static int admit_all_(pg_sched *sc) {
    for (pg_job **pp = &sc->q_head, *prev = NULL; *pp;) {
        pg_job *j = *pp;
        if (job_cancelled_(j)) {
            *pp = j->next;
            if (sc->q_tail == j) sc->q_tail = prev;
            sc->n_queued--;
            finish_queued_(sc, j, PG_FINISH_CANCELLED, NULL);
        } else {
            prev = j;
            pp = &j->next;
        }
    }
    int busy = 0;
    for (int i = 0; i < sc->s->n_seq; i++) {
        slot *sl = &sc->slots[i];
        if (!sl->job && sc->q_head) {
            pg_job *j = sc->q_head;
            sc->q_head = j->next;
            if (!sc->q_head) sc->q_tail = NULL;
            sc->n_queued--;
            j->next = NULL;
            admit_(sc, sl, j);
        }
        busy += sl->job != NULL;
    }
    sc->m.active = busy;
    sc->m.queued = sc->n_queued;
    return busy;
}

/* The slot sampled `tok`: detokenize, look for stop strings, publish what is
 * safe, decide whether the job goes on. */
static void take_token_(pg_sched *sc, slot *sl, int32_t tok) {
    pg_job *j = sl->job;
    const pg_tokenizer *t = sc->tok;
    pg_sampler_accept(&sl->smp, tok);
    int n_gen = j->n_tokens;
    bool eog = !j->p.ignore_eos && pg_tokenizer_is_eog(t, tok);
    if (!eog) {
        if (j->n_tokens == j->cap_tokens) {
            j->cap_tokens = j->cap_tokens ? 2 * j->cap_tokens : 64;
            j->tokens = xrealloc(j->tokens, (size_t)j->cap_tokens * sizeof(int32_t));
        }
        j->tokens[j->n_tokens++] = tok;
        n_gen = j->n_tokens;
        /* at most 3 output bytes (U+FFFD) per input byte, held-back ones included */
        size_t room = 3 * (pg_token_to_bytes(t, tok, NULL, 0) + sizeof sl->dt.pending) + 16;
        pg_buf_reserve(&sl->text, room);
        sl->text.n += pg_detok_push(t, &sl->dt, tok, sl->text.s + sl->text.n, room);
        sl->text.s[sl->text.n] = 0;
    }
    bool full = sl->n_past >= sc->s->n_ctx, at_max = n_gen >= j->p.max_tokens;
    bool last = eog || full || at_max;
    if (last) { /* whatever the detokenizer held back is final now */
        size_t room = 3 * sizeof sl->dt.pending + 16;
        pg_buf_reserve(&sl->text, room);
        sl->text.n += pg_detok_flush(&sl->dt, sl->text.s + sl->text.n, room);
        sl->text.s[sl->text.n] = 0;
    }
    size_t safe;
    long match = pg_stop_scan(sl->text.s ? sl->text.s : "", sl->text.n, sl->sent, j->p.stop, j->p.n_stop, &safe);
    if (match >= 0) {
        publish_(sl, (size_t)match, n_gen);
        finish_(sc, sl, PG_FINISH_STOP, NULL);
    } else if (last) {
        publish_(sl, sl->text.n, n_gen);
        finish_(sc, sl, eog ? PG_FINISH_STOP : PG_FINISH_LENGTH, NULL);
    } else {
        publish_(sl, safe, n_gen);
        sl->next = tok;
    }
}

/* Adds the rows of one step: every decoding slot's next token, then prompt
 * pieces (oldest job first) while the step has room. Returns the row count. */
static int build_batch_(pg_sched *sc) {
    int n = 0, n_seq = sc->s->n_seq, n_decode = 0;
    for (int i = 0; i < n_seq; i++) {
        slot *sl = &sc->slots[i];
        if (!sl->job || sl->n_fed < sl->job->n_prompt) continue;
        sc->b_tok[n] = sl->next;
        sc->b_seq[n] = i;
        sc->b_pos[n] = sl->n_past;
        sc->b_want[n] = true;
        sc->b_slot[n] = i;
        n++;
        n_decode++;
    }
    /* prompts fill the step up to one chunk, but always move by a quarter
     * chunk, so that a long prompt neither stalls the others' decoding for
     * long nor waits for them to finish */
    int budget = PG_MAX_BATCH - n_decode;
    if (budget < PG_MAX_BATCH / 4) budget = PG_MAX_BATCH / 4;
    while (budget > 0) {
        slot *best = NULL;
        int bi = -1;
        for (int i = 0; i < n_seq; i++) {
            slot *sl = &sc->slots[i];
            bool pending = sl->job && sl->n_fed < sl->job->n_prompt;
            bool taken = false;
            for (int r = n_decode; r < n && !taken; r++) taken = sc->b_seq[r] == i;
            if (pending && !taken && (!best || sl->order < best->order)) {
                best = sl;
                bi = i;
            }
        }
        if (!best) break;
        int k = best->job->n_prompt - best->n_fed;
        if (k > budget) k = budget;
        for (int r = 0; r < k; r++, n++) {
            sc->b_tok[n] = best->job->prompt[best->n_fed + r];
            sc->b_seq[n] = bi;
            sc->b_pos[n] = best->n_fed + r;
            /* logits only after the prompt's last token */
            sc->b_want[n] = best->n_fed + r == best->job->n_prompt - 1;
            sc->b_slot[n] = bi;
        }
        budget -= k;
    }
    return n;
}

static void record_step_(pg_sched *sc, int rows, int prompt_rows, int generated, double dt) {
    pg_cache_layer_stats experts;
    size_t peak = 0;
    if (sc->s->off) pg_cache_stats_total(sc->s->off->cache, &experts, &peak);
    pthread_mutex_lock(&sc->mu);
    sc->m.steps++;
    sc->m.batch_rows += (uint64_t)rows;
    sc->m.prompt_tokens += (uint64_t)prompt_rows;
    sc->m.generated_tokens += (uint64_t)generated;
    sc->m.busy_s += dt;
    long long sec = now_sec_();
    int b = (int)(sec % RATE_WINDOW);
    if (sc->rate_sec[b] != sec) {
        sc->rate_sec[b] = sec;
        sc->rate_tok[b] = 0;
    }
    sc->rate_tok[b] += (uint64_t)generated;
    if (sc->s->off) {
        sc->m.experts = experts;
        sc->m.fast_peak_bytes = peak;
    }
    pthread_mutex_unlock(&sc->mu);
}

static void step_(pg_sched *sc) {
    pg_session *s = sc->s;
    int n = build_batch_(sc);
    if (n == 0) return;
    int prompt_rows = 0;
    for (int r = 0; r < n; r++) {
        slot *sl = &sc->slots[sc->b_slot[r]];
        prompt_rows += sl->n_fed < sl->job->n_prompt;
    }
    pg_error e = {{0}};
    double t0 = pg_time_s();
    int rc = pg_session_eval_batch(s, n, sc->b_tok, sc->b_seq, sc->b_pos, sc->b_want, sc->b_logits, &e);
    double dt = pg_time_s() - t0;
    int generated = 0;
    if (rc) {
        /* an expert could not be read: the jobs of this step end; the
         * others (none: every busy slot has a row) would go on */
        fprintf(stderr, "pregate serve: forward pass failed: %s\n", e.msg);
        for (int r = 0; r < n; r++)
            if (sc->slots[sc->b_slot[r]].job) finish_(sc, &sc->slots[sc->b_slot[r]], PG_FINISH_ERROR, e.msg);
    } else {
        int k = 0; /* wanted rows, in order */
        for (int r = 0; r < n; r++) {
            slot *sl = &sc->slots[sc->b_slot[r]];
            if (!sl->job) continue; /* cannot happen: a slot's wanted row is its last */
            sl->n_past = sc->b_pos[r] + 1;
            if (sl->n_fed < sl->job->n_prompt) sl->n_fed++;
            if (!sc->b_want[r]) continue;
            const float *logits = sc->b_logits + (size_t)k++ * s->m->hp.vocab;
            take_token_(sc, sl, pg_sampler_sample(&sl->smp, logits));
            generated++;
        }
    }
    record_step_(sc, n, prompt_rows, generated, dt);
}

static void *run_(void *arg) {
    pg_sched *sc = arg;
    for (;;) {
        pthread_mutex_lock(&sc->mu);
        while (!sc->stopping && admit_all_(sc) == 0) pthread_cond_wait(&sc->cond, &sc->mu);
        bool stop = sc->stopping;
        pthread_mutex_unlock(&sc->mu);
        if (stop) break;
        /* a client that went away frees its slot before the step */
        for (int i = 0; i < sc->s->n_seq; i++)
            if (sc->slots[i].job && job_cancelled_(sc->slots[i].job))
                finish_(sc, &sc->slots[i], PG_FINISH_CANCELLED, NULL);
        step_(sc);
    }
    const char *why = "the server is shutting down";
    for (int i = 0; i < sc->s->n_seq; i++)
        if (sc->slots[i].job) finish_(sc, &sc->slots[i], PG_FINISH_ERROR, why);
    pthread_mutex_lock(&sc->mu);
    while (sc->q_head) {
        pg_job *j = sc->q_head;
        sc->q_head = j->next;
        finish_queued_(sc, j, PG_FINISH_ERROR, why);
    }
    sc->q_tail = NULL;
    sc->n_queued = 0;
    sc->m.active = sc->m.queued = 0;
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}

pg_sched *pg_sched_new(pg_session *s, pg_error *e) {
    if (!s->m->tok) {
        pg_fail(e, "%s: the model has no tokenizer; serving text needs one", s->m->path);
        return NULL;
    }
    pg_sched *sc = xcalloc(1, sizeof *sc);
    sc->s = s;
    sc->tok = s->m->tok;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cond, NULL);
    int n_seq = s->n_seq;
    sc->slots = xcalloc((size_t)n_seq, sizeof *sc->slots);
    sc->cap = n_seq + PG_MAX_BATCH;
    sc->b_tok = xcalloc((size_t)sc->cap, sizeof(int32_t));
    sc->b_seq = xcalloc((size_t)sc->cap, sizeof(int));
    sc->b_pos = xcalloc((size_t)sc->cap, sizeof(int));
    sc->b_slot = xcalloc((size_t)sc->cap, sizeof(int));
    sc->b_want = xcalloc((size_t)sc->cap, sizeof(bool));
    sc->b_logits = xmalloc((size_t)n_seq * s->m->hp.vocab * sizeof(float));
    sc->m.n_slots = n_seq;
    if (s->off) {
        sc->m.offload = true;
        sc->m.fast_bytes = (size_t)pg_cache_n_slots(s->off->cache) * pg_cache_slot_bytes(s->off->cache);
    }
    int rc = pthread_create(&sc->thread, NULL, run_, sc);
    if (rc) {
        pg_fail(e, "cannot start the scheduler thread: %s", strerror(rc));
        sc->stopping = true;
        pg_sched_free(sc);
        return NULL;
    }
    sc->running = true;
    return sc;
}

void pg_sched_shutdown(pg_sched *sc) {
    pthread_mutex_lock(&sc->mu);
    sc->stopping = true;
    pthread_cond_broadcast(&sc->cond);
    pthread_mutex_unlock(&sc->mu);
    if (sc->running) {
        pthread_join(sc->thread, NULL);
        sc->running = false;
    }
}

void pg_sched_free(pg_sched *sc) {
    if (!sc) return;
    pg_sched_shutdown(sc);
    pthread_mutex_destroy(&sc->mu);
    pthread_cond_destroy(&sc->cond);
    free(sc->slots);
    free(sc->b_tok);
    free(sc->b_seq);
    free(sc->b_pos);
    free(sc->b_slot);
    free(sc->b_want);
    free(sc->b_logits);
    free(sc);
}

int pg_sched_n_ctx(const pg_sched *sc) { return sc->s->n_ctx; }

int pg_sched_submit(pg_sched *sc, pg_job *j, pg_error *e) {
    pthread_mutex_lock(&sc->mu);
    if (sc->stopping) {
        pthread_mutex_unlock(&sc->mu);
        return pg_fail(e, "the server is shutting down");
    }
    job_ref_(j);
    j->next = NULL;
    if (sc->q_tail) sc->q_tail->next = j;
    else sc->q_head = j;
    sc->q_tail = j;
    sc->n_queued++;
    sc->m.queued = sc->n_queued;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->mu);
    return 0;
}

void pg_sched_get_metrics(pg_sched *sc, pg_sched_metrics *out) {
    pthread_mutex_lock(&sc->mu);
    *out = sc->m;
    long long now = now_sec_();
    uint64_t tok = 0;
    /* the last RATE_WINDOW whole seconds, not the one under way */
    for (int b = 0; b < RATE_WINDOW; b++)
        if (sc->rate_sec[b] < now && sc->rate_sec[b] >= now - RATE_WINDOW) tok += sc->rate_tok[b];
    out->tokens_per_s = (double)tok / RATE_WINDOW;
    pthread_mutex_unlock(&sc->mu);
}
