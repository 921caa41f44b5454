/* http.h - the OpenAI-compatible HTTP API over libmicrohttpd.
 *
 *   GET  /v1/models            the one model, under its file name and alias
 *   POST /v1/completions       prompt -> text   (stream: Server-Sent Events)
 *   POST /v1/chat/completions  messages, rendered with the model's chat template
 *   GET  /health               {"status": "ok", ...}
 *   GET  /metrics              Prometheus text format
 *
 * Errors are OpenAI-shaped {"error": {...}} bodies: 400 for a bad request
 * (malformed JSON, wrong types, no prompt/messages, prompt + max_tokens
 * beyond the context), 401 for a wrong or missing API key, 404, 405, 413 for
 * a body over max_body, 500 when generation failed, 503 while shutting
 * down. Connections idle for timeout_s seconds (a slow-loris request
 * included) are closed by libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection; a generation
 * request's thread submits a job to the scheduler and waits on it, and
 * while it waits it watches its socket, so that a client that hangs up
 * cancels its job (the slot is freed at the scheduler's next step).
 *
 * Built only when libmicrohttpd is installed (PG_HAVE_MICROHTTPD).
 */
#ifndef PG_SERVER_HTTP_H
#define PG_SERVER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"
#include "scheduler.h"

typedef struct {
    const char *host;        /* address to bind (default 127.0.0.1) */
    int port;                /* 0: a free port, see pg_server_port */
    const char *api_key;     /* NULL: no key needed */
    size_t max_body;         /* request bodies above this get 413 */
    unsigned timeout_s;      /* idle connections are closed after this */
    int max_connections;
    const char *model_id;    /* the model's name in /v1/models and replies */
    const char *alias;       /* a second name, or NULL */
    bool verbose;            /* one line on stderr per request */
} pg_http_params;

typedef struct pg_server pg_server;

/* Listens and serves requests with sc (whose session holds n_ctx positions
 * per sequence). NULL with e set when the address cannot be bound. */
pg_server *pg_server_start(pg_model *m, pg_sched *sc, const pg_http_params *p, pg_error *e);
int pg_server_port(const pg_server *srv);
/* Shuts the scheduler down (every job in flight ends; requests from now on
 * get 503), closes every connection, joins their threads, frees srv. The
 * caller then frees the scheduler. NULL-safe. */
void pg_server_stop(pg_server *srv);

#endif
