/* scheduler.h - continuous batching: many generations share one session.
 *
 * The scheduler owns a session of n_seq KV cache slots (the server's
 * --parallel) and one thread that runs it. A job (one request's generation)
 * waits in a FIFO queue until a slot is free; then, step after step, every
 * job in a slot contributes rows to ONE batch (pg_session_eval_batch): its
 * next token once it is decoding, or a piece of its prompt before that, so
 * that tokens of different requests routed to the same expert share one
 * expert load and one expert computation. Jobs join and leave between
 * steps. Since each row's logits do not depend on the rest of its batch
 * (forward.h), a job generates exactly what it would alone.
 *
 * Each step, per job: sample (its own sampler and seed), detokenize, look
 * for stop strings, and publish the text that can no longer become part of
 * a stop string; a job ends at an end-of-generation token or a stop string
 * ("stop"), at max_tokens or the end of its context ("length"), when
 * cancelled (its client went away) or on an error.
 *
 * Threads: the scheduler thread alone touches the session and the slots.
 * A job has its own lock and condition variable, through which the HTTP
 * thread that submitted it reads its text; jobs are reference counted, so
 * either side may let go first.
 */
#ifndef PG_SERVER_SCHEDULER_H
#define PG_SERVER_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "experts/cache.h"
#include "forward.h"
#include "sampler.h"
#include "buf.h"

typedef enum {
    PG_FINISH_NONE = 0,   /* still running (or queued) */
    PG_FINISH_STOP,       /* end-of-generation token or a stop string */
    PG_FINISH_LENGTH,     /* max_tokens, or the context is full */
    PG_FINISH_CANCELLED,  /* pg_job_cancel */
    PG_FINISH_ERROR,      /* the forward pass failed, or the server is shutting down */
} pg_finish;

/* "stop", "length", "cancelled", "error" (NULL for PG_FINISH_NONE). */
const char *pg_finish_name(pg_finish f);

typedef struct {
    pg_sampler_params sp;
    int max_tokens;           /* >= 1; n_prompt + max_tokens <= the session's n_ctx */
    char *const *stop;        /* copied by pg_job_new */
    int n_stop;
    bool ignore_eos;
} pg_gen_params;

typedef struct pg_job pg_job;

/* A job for the prompt ids[0..n) (n >= 1, copied), with one reference held
 * by the caller. */
pg_job *pg_job_new(const int32_t *ids, int n, const pg_gen_params *p);
void pg_job_unref(pg_job *j); /* NULL-safe; the last reference frees */
/* Asks the scheduler to drop the job at its next step (no-op once finished). */
void pg_job_cancel(pg_job *j);

typedef struct {
    pg_finish finish;
    int n_prompt, n_gen;       /* tokens: prompt, generated so far */
    char error[256];           /* PG_FINISH_ERROR: why */
} pg_job_status;

/* Waits at most timeout_ms for text beyond the first *from bytes, or for
 * the end; appends the new text to out, advances *from, and fills st.
 * Returns true once the job has finished and all its text was read.
 * out NULL: waits for the end only (text is not read): a reply that is not
 * streamed is not woken for every token. */
bool pg_job_read(pg_job *j, int timeout_ms, size_t *from, pg_buf *out, pg_job_status *st);
/* The generated token ids (valid once finished; NULL before). */
const int32_t *pg_job_tokens(const pg_job *j, int *n);

typedef struct pg_sched pg_sched;

/* Starts the scheduler thread on s (s->n_seq slots; the caller keeps s and
 * frees it after pg_sched_free). s->m must have a tokenizer. */
pg_sched *pg_sched_new(pg_session *s, pg_error *e);
/* Ends every queued and running job (PG_FINISH_ERROR, "the server is
 * shutting down"), joins the thread; submits fail from then on. Idempotent. */
void pg_sched_shutdown(pg_sched *sc);
void pg_sched_free(pg_sched *sc); /* shuts down first; NULL-safe */

/* Positions per sequence: a job's prompt + max_tokens must fit. */
int pg_sched_n_ctx(const pg_sched *sc);

/* Queues the job (takes a reference). -1 with e set when shutting down. */
int pg_sched_submit(pg_sched *sc, pg_job *j, pg_error *e);

typedef struct {
    int n_slots, active, queued;
    uint64_t jobs_done, cancelled;
    uint64_t prompt_tokens, generated_tokens; /* evaluated / sampled */
    uint64_t steps, batch_rows;              /* forward passes and their rows */
    double busy_s;                           /* seconds in forward passes */
    double tokens_per_s;                     /* generated over the last 10 s */
    bool offload;
    pg_cache_layer_stats experts;            /* summed over layers (offload only) */
    size_t fast_bytes, fast_peak_bytes;      /* fast tier: budget in slots, peak filled */
} pg_sched_metrics;

void pg_sched_get_metrics(pg_sched *sc, pg_sched_metrics *out);

#endif
