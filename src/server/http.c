/* http.c - see http.h. libmicrohttpd does the HTTP (parsing, chunked
 * encoding, timeouts, connection limits); this file routes requests,
 * checks them, and turns jobs into OpenAI replies. */
#include "http.h"

#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "openai.h"

typedef enum { EP_MODELS, EP_COMPLETIONS, EP_CHAT, EP_HEALTH, EP_METRICS, EP_OTHER, EP_COUNT } endpoint;
static const char *const EP_NAMES[EP_COUNT] = {"/v1/models", "/v1/completions", "/v1/chat/completions",
                                               "/health", "/metrics", "other"};

/* The status codes this server answers with, for the request counters;
 * 499 (nginx's "client closed request") counts generations whose client
 * hung up before the reply. */
static const unsigned STATUSES[] = {200, 400, 401, 404, 405, 413, 499, 500, 503};
#define N_STATUS (sizeof STATUSES / sizeof *STATUSES)

/* How often a waiting request looks at its socket when no token comes. */
#define POLL_MS 100

/* An open connection, for the request deadline: libmicrohttpd closes a
 * connection idle for timeout_s, but a slow-loris client that sends a byte
 * now and then is never idle; so a request must also arrive complete
 * (headers and body) within timeout_s of the connection opening or of the
 * previous reply, or the watchdog thread shuts the socket down. */
typedef struct conn_rec {
    int fd;
    double deadline;          /* monotonic seconds; 0 while a request is being answered */
    bool cut;
    struct conn_rec *prev, *next;
} conn_rec;

struct pg_server {
    struct MHD_Daemon *d;
    pg_model *m;
    pg_sched *sc;
    pg_http_params p;
    pg_chat_template tpl;
    int port;
    long long started;       /* unix seconds: "created" of the model */
    uint64_t id_seed;
    _Atomic uint64_t id_counter;
    pthread_mutex_t mu;      /* guards the counters and the connections */
    uint64_t requests[EP_COUNT][N_STATUS];
    uint64_t timed_out;      /* connections cut by the request deadline */
    conn_rec *conns;
    pthread_t watchdog;
    pthread_cond_t wake;     /* the watchdog's sleep, cut short by pg_server_stop */
    bool stopping;
};

/* Per request (libmicrohttpd's *con_cls). */
typedef struct {
    endpoint ep;
    pg_buf body;
    size_t received;         /* body bytes received */
    bool too_big;            /* the body went over max_body: 413 once it has been read */
    double t0;
} request;

static uint64_t splitmix64_(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A fresh number per call: reply ids, and seeds of requests without one. */
static uint64_t next_random_(pg_server *srv) {
    return splitmix64_(srv->id_seed ^ splitmix64_(atomic_fetch_add(&srv->id_counter, 1)));
}

/* The connection's record (libmicrohttpd's socket context). */
static conn_rec *conn_of_(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* deadline 0: none (a request is being answered); else now + timeout. */
static void set_deadline_(pg_server *srv, struct MHD_Connection *c, bool on) {
    conn_rec *cr = conn_of_(c);
    if (!cr) return;
    pthread_mutex_lock(&srv->mu);
    cr->deadline = on ? pg_time_s() + srv->p.timeout_s : 0;
    pthread_mutex_unlock(&srv->mu);
}

static endpoint route_(const char *url) {
    for (int i = 0; i < EP_OTHER; i++)
        if (!strcmp(url, EP_NAMES[i])) return (endpoint)i;
    return EP_OTHER;
}

static void count_(pg_server *srv, endpoint ep, unsigned status) {
    size_t k = 0;
    while (k + 1 < N_STATUS && STATUSES[k] != status) k++;
    PG_ASSERT(STATUSES[k] == status);
    pthread_mutex_lock(&srv->mu);
    srv->requests[ep][k]++;
    pthread_mutex_unlock(&srv->mu);
}

/* Queues `body` (heap, taken) with `status`; extra_name/value: one more
 * header, or NULL. */
static enum MHD_Result reply_(pg_server *srv, struct MHD_Connection *c, request *r, unsigned status,
                              const char *ctype, char *body, const char *extra_name, const char *extra_value) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (extra_name) MHD_add_response_header(resp, extra_name, extra_value);
    enum MHD_Result rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    count_(srv, r->ep, status);
    if (srv->p.verbose && status != 200)
        fprintf(stderr, "pregate serve: %s %u\n", EP_NAMES[r->ep], status);
    return rc;
}

static enum MHD_Result reply_json_(pg_server *srv, struct MHD_Connection *c, request *r, unsigned status,
                                   char *json) {
    return reply_(srv, c, r, status, "application/json", json, NULL, NULL);
}

static enum MHD_Result reply_error_(pg_server *srv, struct MHD_Connection *c, request *r, unsigned status,
                                    const char *type, const char *extra_name, const char *extra_value,
                                    const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static enum MHD_Result reply_error_(pg_server *srv, struct MHD_Connection *c, request *r, unsigned status,
                                    const char *type, const char *extra_name, const char *extra_value,
                                    const char *fmt, ...) {
    char msg[PG_ERR_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return reply_(srv, c, r, status, "application/json", pg_openai_error_json(msg, type), extra_name,
                  extra_value);
}

#define BAD_REQUEST(...) reply_error_(srv, c, r, 400, "invalid_request_error", NULL, NULL, __VA_ARGS__)

/* Whether the client has hung up: its end of the socket is closed (or
 * broken). A client that pipelines its next request is not mistaken for
 * one that left (that is readable data, not a hang-up); one that only
 * half-closes its sending side after the request would be. */
static bool client_gone_(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd pf = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

/* Compares in time independent of where the strings differ, so that the
 * key cannot be guessed a byte at a time from response times. */
static bool same_secret_(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    unsigned char diff = na != nb;
    for (size_t i = 0; i < na; i++) diff |= (unsigned char)(a[i] ^ b[i % (nb ? nb : 1)]);
    return diff == 0;
}

static bool authorized_(pg_server *srv, struct MHD_Connection *c) {
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    return same_secret_(h, srv->p.api_key);
}

/* ------------------------------------------------------------------ GET endpoints */

static enum MHD_Result models_(pg_server *srv, struct MHD_Connection *c, request *r) {
    const char *ids[2] = {srv->p.model_id, srv->p.alias};
    int n = srv->p.alias && strcmp(srv->p.alias, srv->p.model_id) ? 2 : 1;
    return reply_json_(srv, c, r, 200, pg_openai_models_json(ids, n, srv->started));
}

static enum MHD_Result health_(pg_server *srv, struct MHD_Connection *c, request *r) {
    pg_sched_metrics mt;
    pg_sched_get_metrics(srv->sc, &mt);
    pg_buf b = {0};
    pg_buf_addf(&b, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_processing\":%d,\"queued\":%d}",
                mt.n_slots - mt.active, mt.active, mt.queued);
    return reply_json_(srv, c, r, 200, b.s);
}

static void metric_(pg_buf *b, const char *name, const char *type, const char *help, double v) {
    pg_buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static double ratio_(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

static enum MHD_Result metrics_(pg_server *srv, struct MHD_Connection *c, request *r) {
    /* this request is counted before the snapshot, so it sees itself */
    count_(srv, r->ep, 200);
    pg_sched_metrics mt;
    pg_sched_get_metrics(srv->sc, &mt);
    pg_buf b = {0};
    pg_buf_adds(&b, "# HELP pregate_requests_total HTTP requests by endpoint and status code.\n"
                    "# TYPE pregate_requests_total counter\n");
    pthread_mutex_lock(&srv->mu);
    for (int ep = 0; ep < EP_COUNT; ep++)
        for (size_t k = 0; k < N_STATUS; k++)
            if (srv->requests[ep][k])
                pg_buf_addf(&b, "pregate_requests_total{endpoint=\"%s\",status=\"%u\"} %llu\n", EP_NAMES[ep],
                            STATUSES[k], (unsigned long long)srv->requests[ep][k]);
    pthread_mutex_unlock(&srv->mu);
    metric_(&b, "pregate_prompt_tokens_total", "counter", "Prompt tokens evaluated.", (double)mt.prompt_tokens);
    metric_(&b, "pregate_generated_tokens_total", "counter", "Tokens generated.", (double)mt.generated_tokens);
    metric_(&b, "pregate_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s.",
            mt.tokens_per_s);
    metric_(&b, "pregate_forward_seconds_total", "counter", "Seconds spent in forward passes.", mt.busy_s);
    metric_(&b, "pregate_batch_steps_total", "counter", "Forward passes (batches) run.", (double)mt.steps);
    metric_(&b, "pregate_batch_rows_total", "counter",
            "Token rows in those batches (rows / steps: the mean batch size).", (double)mt.batch_rows);
    metric_(&b, "pregate_queue_length", "gauge", "Requests waiting for a sequence slot.", mt.queued);
    metric_(&b, "pregate_active_sequences", "gauge", "Sequences being generated.", mt.active);
    metric_(&b, "pregate_sequence_slots", "gauge", "Sequence slots (--parallel).", mt.n_slots);
    metric_(&b, "pregate_requests_cancelled_total", "counter", "Generations dropped because the client left.",
            (double)mt.cancelled);
    pthread_mutex_lock(&srv->mu);
    uint64_t timed_out = srv->timed_out;
    pthread_mutex_unlock(&srv->mu);
    metric_(&b, "pregate_connections_timed_out_total", "counter",
            "Connections closed because a request did not arrive complete within --timeout.", (double)timed_out);
    metric_(&b, "pregate_expert_offload", "gauge", "1 when experts are offloaded (--expert-mem), else 0.",
            mt.offload);
    const pg_cache_layer_stats *x = &mt.experts;
    metric_(&b, "pregate_expert_acquires_total", "counter", "Experts the forward pass needed.", (double)x->acquires);
    metric_(&b, "pregate_expert_hits_total", "counter", "... of which were already in the fast tier.",
            (double)x->hits);
    metric_(&b, "pregate_expert_cache_hit_rate", "gauge", "Expert cache hits / acquires since start.",
            ratio_(x->hits, x->acquires));
    metric_(&b, "pregate_expert_loads_total", "counter", "Expert copies into the fast tier (demand + prefetch).",
            (double)(x->misses + x->prefetch_issued));
    metric_(&b, "pregate_expert_bytes_read_total", "counter", "Bytes of experts read from the slow tier.",
            (double)x->bytes_read);
    metric_(&b, "pregate_expert_prediction_precision", "gauge",
            "Predicted experts that were used / predicted, since start.", ratio_(x->pred_true, x->pred_total));
    metric_(&b, "pregate_expert_prediction_recall", "gauge",
            "Used experts that were predicted / used, since start.", ratio_(x->pred_true, x->actual_total));
    metric_(&b, "pregate_expert_stall_seconds_total", "counter", "Seconds compute waited for experts to load.",
            x->stall_s);
    metric_(&b, "pregate_expert_fast_tier_bytes", "gauge", "Fast-tier capacity for experts.",
            (double)mt.fast_bytes);
    metric_(&b, "pregate_expert_fast_tier_peak_bytes", "gauge", "Most fast-tier bytes ever filled.",
            (double)mt.fast_peak_bytes);
    metric_(&b, "pregate_resident_bytes", "gauge", "Resident set of the process (VmRSS).", (double)pg_rss_bytes());
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.n, b.s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        pg_buf_free(&b);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* ------------------------------------------------------------------ generation */

/* A streamed reply: the reader callback turns the job's text into SSE
 * events as it comes. */
typedef struct {
    pg_server *srv;
    struct MHD_Connection *c;
    pg_job *job;
    pg_oai_meta meta;
    char id[48];
    bool include_usage;
    bool sent_first, ended;
    size_t from;             /* job text already read */
    pg_buf text;             /* newly read text */
    pg_buf out;              /* events not yet handed to libmicrohttpd */
    size_t out_off;
} stream;

static void event_(pg_buf *out, char *json) {
    pg_buf_adds(out, "data: ");
    pg_buf_adds(out, json);
    pg_buf_adds(out, "\n\n");
    free(json);
}

/* Fills st->out with the next events; false when the client has gone. */
static bool stream_produce_(stream *st) {
    if (!st->sent_first) { /* the first chunk comes at once: the client sees the request was taken */
        st->sent_first = true;
        if (st->meta.kind == PG_OAI_CHAT) {
            event_(&st->out, pg_openai_chunk_json(&st->meta, "", 0, true, NULL));
            return true;
        }
    }
    pg_buf_clear(&st->text);
    pg_job_status js;
    bool done = pg_job_read(st->job, POLL_MS, &st->from, &st->text, &js);
    if (st->text.n) event_(&st->out, pg_openai_chunk_json(&st->meta, st->text.s, st->text.n, false, NULL));
    if (done) {
        if (js.finish == PG_FINISH_STOP || js.finish == PG_FINISH_LENGTH) {
            event_(&st->out, pg_openai_chunk_json(&st->meta, "", 0, false, pg_finish_name(js.finish)));
            if (st->include_usage) {
                pg_oai_usage u = {js.n_prompt, js.n_gen};
                event_(&st->out, pg_openai_usage_chunk_json(&st->meta, &u));
            }
        } else {
            event_(&st->out, pg_openai_error_json(js.error[0] ? js.error : "generation stopped", "server_error"));
        }
        pg_buf_adds(&st->out, "data: [DONE]\n\n");
        st->ended = true;
        return true;
    }
    return !client_gone_(st->c);
}

static ssize_t stream_read_(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->out_off == st->out.n) {
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        pg_buf_clear(&st->out);
        st->out_off = 0;
        if (!stream_produce_(st)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t k = st->out.n - st->out_off < max ? st->out.n - st->out_off : max;
    memcpy(buf, st->out.s + st->out_off, k);
    st->out_off += k;
    return (ssize_t)k;
}

/* libmicrohttpd is done with the reply (sent, or the connection closed).
 * A stream is counted here, by how it ended: its 200 went out at the start. */
static void stream_free_(void *cls) {
    stream *st = cls;
    count_(st->srv, st->meta.kind == PG_OAI_CHAT ? EP_CHAT : EP_COMPLETIONS, st->ended ? 200 : 499);
    pg_job_cancel(st->job); /* no-op when it has finished */
    pg_job_unref(st->job);
    pg_buf_free(&st->text);
    pg_buf_free(&st->out);
    free(st);
}

/* The prompt's token ids for a parsed request; NULL after replying 400. */
static int32_t *prompt_ids_(pg_server *srv, const pg_oai_request *q, size_t *n, pg_error *e) {
    const pg_tokenizer *t = srv->m->tok;
    int32_t *ids = NULL;
    if (q->kind == PG_OAI_CHAT) {
        pg_chat_opts o = {.add_generation_prompt = true};
        char *text = pg_chat_render(&srv->tpl, q->messages, q->n_messages, &o, e);
        if (!text) return NULL;
        /* as `run --chat`: the template writes BOS itself where its family has one */
        bool bos = pg_tokenizer_add_bos(t) && !pg_chat_writes_bos(&srv->tpl);
        int rc = pg_tokenize(t, text, strlen(text), bos, true, &ids, n, e);
        free(text);
        return rc ? NULL : ids;
    }
    if (q->prompt_ids) {
        for (size_t i = 0; i < q->n_prompt_ids; i++)
            if (q->prompt_ids[i] >= srv->m->hp.vocab) {
                pg_fail(e, "'prompt'[%zu]: token id %d is outside the vocabulary (0..%d)", i, q->prompt_ids[i],
                        srv->m->hp.vocab - 1);
                return NULL;
            }
        ids = xmalloc((q->n_prompt_ids ? q->n_prompt_ids : 1) * sizeof(int32_t));
        memcpy(ids, q->prompt_ids, q->n_prompt_ids * sizeof(int32_t));
        *n = q->n_prompt_ids;
        return ids;
    }
    /* as `pregate run -p`: BOS as the model says, special tokens as text */
    if (pg_tokenize(t, q->prompt, q->prompt_len, pg_tokenizer_add_bos(t), false, &ids, n, e)) return NULL;
    return ids;
}

static enum MHD_Result generate_(pg_server *srv, struct MHD_Connection *c, request *r, pg_oai_kind kind) {
    pg_oai_request q;
    pg_error e = {{0}};
    if (pg_openai_parse_request(r->body.s ? r->body.s : "", r->body.n, kind, &q, &e)) return BAD_REQUEST("%s", e.msg);
    size_t n_ids = 0;
    int32_t *ids = prompt_ids_(srv, &q, &n_ids, &e);
    enum MHD_Result rc;
    int n_ctx = pg_sched_n_ctx(srv->sc);
    long max = q.max_tokens;
    if (!ids) {
        rc = BAD_REQUEST("%s", e.msg);
        goto done;
    }
    if (n_ids == 0) {
        rc = BAD_REQUEST("the prompt is empty (and the model has no BOS token to start from)");
        goto done;
    }
    if (max < 0) max = kind == PG_OAI_COMPLETION ? 16 : (long)n_ctx - (long)n_ids; /* OpenAI's defaults */
    if ((long)n_ids >= n_ctx) {
        rc = BAD_REQUEST("the prompt (%zu tokens) does not fit the context of %d tokens", n_ids, n_ctx);
        goto done;
    }
    if ((long)n_ids + max > n_ctx) {
        rc = BAD_REQUEST("the prompt (%zu tokens) plus max_tokens (%ld) exceed the context of %d tokens", n_ids, max,
                         n_ctx);
        goto done;
    }
    pg_gen_params gp = {.max_tokens = (int)max, .stop = q.stop, .n_stop = q.n_stop, .ignore_eos = q.ignore_eos};
    pg_sampler_params_default(&gp.sp);
    gp.sp.temperature = (float)q.temperature;
    gp.sp.top_p = (float)q.top_p;
    gp.sp.top_k = q.top_k;
    gp.sp.min_p = (float)q.min_p;
    gp.sp.repeat_penalty = (float)q.repeat_penalty;
    gp.sp.seed = q.has_seed ? q.seed : next_random_(srv);
    pg_job *job = pg_job_new(ids, (int)n_ids, &gp);
    if (pg_sched_submit(srv->sc, job, &e)) {
        pg_job_unref(job);
        rc = reply_error_(srv, c, r, 503, "server_error", NULL, NULL, "%s", e.msg);
        goto done;
    }
    char id[48];
    snprintf(id, sizeof id, "%s-%016llx", kind == PG_OAI_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)next_random_(srv));
    const char *model = srv->p.alias ? srv->p.alias : srv->p.model_id;
    if (q.stream) {
        stream *st = xcalloc(1, sizeof *st);
        st->srv = srv;
        st->c = c;
        st->job = job;
        memcpy(st->id, id, sizeof id);
        st->meta = (pg_oai_meta){kind, st->id, (long long)time(NULL), model};
        st->include_usage = q.include_usage;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read_, st,
                                                                      stream_free_);
        if (!resp) {
            stream_free_(st);
            rc = MHD_NO;
            goto done;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        goto done;
    }
    /* not streamed: wait for the end, looking at the socket every POLL_MS */
    pg_buf text = {0};
    size_t from = 0;
    pg_job_status js;
    while (!pg_job_read(job, POLL_MS, &from, NULL, &js))
        if (client_gone_(c)) {
            pg_job_cancel(job);
            pg_job_unref(job);
            pg_buf_free(&text);
            count_(srv, r->ep, 499);
            rc = MHD_NO; /* closes the connection: nobody to answer */
            goto done;
        }
    pg_job_read(job, 0, &from, &text, &js);
    if (js.finish == PG_FINISH_STOP || js.finish == PG_FINISH_LENGTH) {
        int n_tok;
        const int32_t *tok = pg_job_tokens(job, &n_tok);
        pg_oai_meta meta = {kind, id, (long long)time(NULL), model};
        pg_oai_usage u = {js.n_prompt, js.n_gen};
        rc = reply_json_(srv, c, r, 200,
                         pg_openai_response_json(&meta, text.s ? text.s : "", text.n, pg_finish_name(js.finish), &u,
                                                 q.return_token_ids ? ids : NULL, (int)n_ids,
                                                 q.return_token_ids ? tok : NULL, n_tok));
        if (srv->p.verbose)
            fprintf(stderr, "pregate serve: %s: %d prompt + %d generated tokens, %s, %.3f s\n", EP_NAMES[r->ep],
                    js.n_prompt, js.n_gen, pg_finish_name(js.finish), pg_time_s() - r->t0);
    } else {
        rc = reply_error_(srv, c, r, 500, "server_error", NULL, NULL, "%s",
                          js.error[0] ? js.error : "generation stopped");
    }
    pg_job_unref(job);
    pg_buf_free(&text);
done:
    free(ids);
    pg_oai_request_free(&q);
    return rc;
}

/* ------------------------------------------------------------------ libmicrohttpd callbacks */

static enum MHD_Result handle_(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    pg_server *srv = cls;
    request *r = *con_cls;
    (void)version;
    if (!r) { /* the headers are in: everything that needs no body is decided now */
        r = xcalloc(1, sizeof *r);
        *con_cls = r;
        r->ep = route_(url);
        r->t0 = pg_time_s();
        bool post = r->ep == EP_COMPLETIONS || r->ep == EP_CHAT;
        /* answered now, or once the body is in: the body keeps the deadline */
        if (!post) set_deadline_(srv, c, false);
        if (r->ep == EP_OTHER)
            return reply_error_(srv, c, r, 404, "not_found_error", NULL, NULL, "no such endpoint: %.200s", url);
        if (post ? strcmp(method, "POST") : strcmp(method, "GET") && strcmp(method, "HEAD"))
            return reply_error_(srv, c, r, 405, "invalid_request_error", "Allow", post ? "POST" : "GET, HEAD",
                                "%s takes %s, not %.20s", EP_NAMES[r->ep], post ? "POST" : "GET", method);
        if (srv->p.api_key && r->ep != EP_HEALTH && !authorized_(srv, c))
            return reply_error_(srv, c, r, 401, "authentication_error", "WWW-Authenticate", "Bearer",
                                "a valid API key is required (Authorization: Bearer KEY)");
        if (!post) {
            if (r->ep == EP_MODELS) return models_(srv, c, r);
            if (r->ep == EP_HEALTH) return health_(srv, c, r);
            return metrics_(srv, c, r);
        }
        /* a body announced too large is refused before it is read
         * (libmicrohttpd then closes the connection) */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->p.max_body)
            return reply_error_(srv, c, r, 413, "invalid_request_error", NULL, NULL,
                                "the request body is larger than %zu bytes (--max-body)", srv->p.max_body);
        return MHD_YES;
    }
    if (*upload_size) {
        /* a reply cannot be queued while the body is coming in: a body
         * without a length that grows too large is read to its end, and
         * dropped, then answered with 413; one far beyond the limit is cut */
        r->received += *upload_size;
        if (r->received > srv->p.max_body) {
            r->too_big = true;
            pg_buf_free(&r->body);
            if (r->received > 4 * srv->p.max_body + (1u << 20)) return MHD_NO;
        } else {
            pg_buf_add(&r->body, upload, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* the whole request is in: no deadline while it is answered */
    set_deadline_(srv, c, false);
    if (r->too_big)
        return reply_error_(srv, c, r, 413, "invalid_request_error", NULL, NULL,
                            "the request body is larger than %zu bytes (--max-body)", srv->p.max_body);
    return generate_(srv, c, r, r->ep == EP_CHAT ? PG_OAI_CHAT : PG_OAI_COMPLETION);
}

/* The reply has gone (or the request was abandoned): the next request on
 * this connection has timeout_s to arrive. */
static void completed_(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)toe;
    set_deadline_(cls, c, true);
    request *r = *con_cls;
    if (!r) return;
    pg_buf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

/* A connection opened or closed (libmicrohttpd calls CLOSED before it
 * closes the socket, so the watchdog never touches a reused descriptor). */
static void connection_(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code) {
    pg_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_rec *cr = xcalloc(1, sizeof *cr);
        cr->fd = ci ? ci->connect_fd : -1;
        cr->deadline = pg_time_s() + srv->p.timeout_s;
        pthread_mutex_lock(&srv->mu);
        cr->next = srv->conns;
        if (srv->conns) srv->conns->prev = cr;
        srv->conns = cr;
        pthread_mutex_unlock(&srv->mu);
        *socket_context = cr;
    } else if (*socket_context) {
        conn_rec *cr = *socket_context;
        pthread_mutex_lock(&srv->mu);
        if (cr->prev) cr->prev->next = cr->next;
        else srv->conns = cr->next;
        if (cr->next) cr->next->prev = cr->prev;
        pthread_mutex_unlock(&srv->mu);
        free(cr);
        *socket_context = NULL;
    }
}

/* Shuts down connections past their request deadline; libmicrohttpd's
 * thread of that connection then sees the socket fail and closes it. */
static void *watchdog_(void *arg) {
    pg_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    while (!srv->stopping) {
        double now = pg_time_s();
        for (conn_rec *cr = srv->conns; cr; cr = cr->next)
            if (cr->deadline > 0 && now > cr->deadline && !cr->cut && cr->fd >= 0) {
                shutdown(cr->fd, SHUT_RDWR);
                cr->cut = true;
                srv->timed_out++;
            }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->wake, &srv->mu, &ts);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

static void log_(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    fprintf(stderr, "pregate serve: libmicrohttpd: %s\n", msg);
}

pg_server *pg_server_start(pg_model *m, pg_sched *sc, const pg_http_params *p, pg_error *e) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    char port[16];
    snprintf(port, sizeof port, "%d", p->port);
    int gai = getaddrinfo(p->host, port, &hints, &ai);
    if (gai) {
        pg_fail(e, "cannot use host '%s': %s", p->host, gai_strerror(gai));
        return NULL;
    }
    pg_server *srv = xcalloc(1, sizeof *srv);
    srv->m = m;
    srv->sc = sc;
    srv->p = *p;
    srv->tpl = pg_chat_for_tokenizer(m->tok, m->path);
    srv->started = (long long)time(NULL);
    srv->id_seed = splitmix64_((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)srv);
    atomic_init(&srv->id_counter, 0);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->wake, &ca);
    pthread_condattr_destroy(&ca);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL |
                     MHD_USE_ERROR_LOG | (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    srv->d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, handle_, srv,
                              MHD_OPTION_EXTERNAL_LOGGER, log_, srv, /* first, or early messages miss it */
                              MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)p->timeout_s,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)p->max_connections,
                              MHD_OPTION_NOTIFY_COMPLETED, completed_, srv,
                              MHD_OPTION_NOTIFY_CONNECTION, connection_, srv,
                              MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!srv->d) {
        pg_fail(e, "cannot listen on %s:%d (in use, or not an address of this machine?)", p->host, p->port);
        pthread_mutex_destroy(&srv->mu);
        pthread_cond_destroy(&srv->wake);
        free(srv);
        return NULL;
    }
    int rc = pthread_create(&srv->watchdog, NULL, watchdog_, srv);
    PG_ASSERT(rc == 0); /* only fails without resources; the daemon's threads started */
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : p->port;
    return srv;
}

int pg_server_port(const pg_server *srv) { return srv->port; }

void pg_server_stop(pg_server *srv) {
    if (!srv) return;
    /* jobs first: every connection thread waiting on one wakes and ends its reply */
    pg_sched_shutdown(srv->sc);
    MHD_stop_daemon(srv->d); /* joins the connection threads: no record is left */
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_signal(&srv->wake);
    pthread_mutex_unlock(&srv->mu);
    pthread_join(srv->watchdog, NULL);
    PG_ASSERT(srv->conns == NULL);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->wake);
    free(srv);
}
