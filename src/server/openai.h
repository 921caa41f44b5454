/* openai.h - the OpenAI API's request and response bodies.
 *
 * pg_openai_parse_request reads the JSON body of POST /v1/completions or
 * /v1/chat/completions into a pg_oai_request, checking every field it uses
 * (types, ranges) and refusing what pregate does not do (n > 1, non-text
 * message parts) with a message for a 400 reply. Fields it does not know
 * are ignored, as OpenAI-compatible servers do. It touches no model and no
 * global state, so a libFuzzer target calls it directly
 * (tests/fuzz/fuzz_openai.c).
 *
 * Fields read (both endpoints unless said):
 *   model (string, any: the server has one model), stream (bool),
 *   stream_options.include_usage (bool), max_tokens / max_completion_tokens
 *   (integer >= 1), temperature (0..2), top_p (0..1], seed (integer), n
 *   (only 1), stop (string or array of at most 4 strings; empty strings
 *   ignored); extensions from llama.cpp / vLLM: top_k (>= 0), min_p (0..1),
 *   repeat_penalty (> 0), ignore_eos (bool), return_token_ids (bool: a
 *   reply that is not streamed carries prompt_token_ids and the choice's
 *   token_ids).
 *   completions: prompt: a string, an array of one string, or an array of
 *   token ids.
 *   chat: messages: array of {role, content}, content a string, null, or an
 *   array of {"type": "text", "text": ...} parts (joined).
 *
 * The response builders return heap strings (compact JSON) in OpenAI's
 * shapes: "text_completion" / "chat.completion" objects, their streamed
 * chunks ("chat.completion.chunk"), and {"error": {...}} bodies.
 */
#ifndef PG_SERVER_OPENAI_H
#define PG_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "util.h"

#define PG_OAI_MAX_STOP 4
#define PG_OAI_MAX_MESSAGES 4096
#define PG_OAI_MAX_PROMPT_IDS (1 << 20)

typedef enum { PG_OAI_COMPLETION = 0, PG_OAI_CHAT = 1 } pg_oai_kind;

typedef struct {
    pg_oai_kind kind;
    char *model;               /* as the request named it, or NULL */
    /* chat */
    pg_chat_msg *messages;     /* [n_messages]; role and content owned here */
    size_t n_messages;
    /* completion: text, or token ids when prompt_ids is not NULL */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;
    size_t n_prompt_ids;
    /* sampling */
    double temperature;        /* default 1 (OpenAI's) */
    double top_p;              /* default 1 */
    int top_k;                 /* default 0: off */
    double min_p;              /* default 0: off */
    double repeat_penalty;     /* default 1: off */
    bool has_seed;
    uint64_t seed;
    long max_tokens;           /* -1: not given */
    char *stop[PG_OAI_MAX_STOP];
    int n_stop;
    bool stream, include_usage, ignore_eos, return_token_ids;
} pg_oai_request;

/* Parses body[0..len) (need not be NUL-terminated). Returns 0, or -1 with a
 * one-line message in e (for a 400 reply) and *out left empty. */
int pg_openai_parse_request(const char *body, size_t len, pg_oai_kind kind, pg_oai_request *out, pg_error *e);
void pg_oai_request_free(pg_oai_request *r); /* NULL-safe; leaves r empty */

/* {"error": {"message": ..., "type": ..., "param": null, "code": null}};
 * type: "invalid_request_error", "authentication_error", "not_found_error",
 * "server_error", ... */
char *pg_openai_error_json(const char *message, const char *type);

/* What every reply of one request shares. */
typedef struct {
    pg_oai_kind kind;
    const char *id;        /* "cmpl-..." / "chatcmpl-..." */
    long long created;     /* unix seconds */
    const char *model;
} pg_oai_meta;

typedef struct {
    int prompt_tokens, completion_tokens;
} pg_oai_usage;

/* The whole non-streamed reply. finish: "stop" or "length". token_ids:
 * NULL unless return_token_ids. */
char *pg_openai_response_json(const pg_oai_meta *m, const char *text, size_t len, const char *finish,
                              const pg_oai_usage *u, const int32_t *prompt_ids, int n_prompt_ids,
                              const int32_t *token_ids, int n_token_ids);

/* One streamed chunk: text (may be empty), first (chat: the delta carries
 * role "assistant"), finish (NULL until the last one). */
char *pg_openai_chunk_json(const pg_oai_meta *m, const char *text, size_t len, bool first, const char *finish);
/* The usage chunk sent last when stream_options.include_usage (choices []). */
char *pg_openai_usage_chunk_json(const pg_oai_meta *m, const pg_oai_usage *u);

/* GET /v1/models: one entry per name (the model file's name, an alias). */
char *pg_openai_models_json(const char *const *ids, int n, long long created);

/* Stop sequences over generated text. Returns the offset of the earliest
 * complete match of any stop string in text[from..len), or -1; and in *safe
 * the length of the prefix of text that can be sent now: up to the match,
 * or else all but the longest tail that is a prefix of some stop string
 * (it may still become one). Since sent text never ends in such a prefix,
 * no match can start before `from` (what was already sent). */
long pg_stop_scan(const char *text, size_t len, size_t from, char *const *stop, int n_stop, size_t *safe);

#endif
