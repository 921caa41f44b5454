/* openai.c - see openai.h */
#include "openai.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void pg_oai_request_free(pg_oai_request *r) {
    if (!r) return;
    free(r->model);
    for (size_t i = 0; i < r->n_messages; i++) {
        free((char *)r->messages[i].role);
        free((char *)r->messages[i].content);
    }
    free(r->messages);
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* A heap copy of a JSON string value (NUL inside is refused at parse time:
 * no JSON_ALLOW_NUL, so strlen is the length). */
static char *dup_str_(const json_t *v) { return xstrdup(json_string_value(v)); }

/* Reads an optional number field into *out, within [lo, hi]. */
static int get_number_(json_t *root, const char *key, double lo, double hi, double *out, pg_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return pg_fail(e, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return pg_fail(e, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

/* Reads an optional integer field into *out, within [lo, hi]; *given says
 * whether it was there. */
static int get_int_(json_t *root, const char *key, long long lo, long long hi, long long *out, bool *given,
                    pg_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return pg_fail(e, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return pg_fail(e, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = x;
    if (given) *given = true;
    return 0;
}

static int get_bool_(json_t *root, const char *key, bool *out, pg_error *e) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return pg_fail(e, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

static int add_stop_(pg_oai_request *r, json_t *s, pg_error *e) {
    if (!json_is_string(s)) return pg_fail(e, "'stop' must be a string or an array of strings");
    if (json_string_length(s) == 0) return 0; /* an empty stop would end every reply at once */
    if (r->n_stop == PG_OAI_MAX_STOP) return pg_fail(e, "'stop' takes at most %d sequences", PG_OAI_MAX_STOP);
    r->stop[r->n_stop++] = dup_str_(s);
    return 0;
}

/* A message's content: a string, null (""), or an array of text parts. */
static int message_content_(json_t *c, size_t i, char **out, pg_error *e) {
    if (!c || json_is_null(c)) {
        *out = xstrdup("");
        return 0;
    }
    if (json_is_string(c)) {
        *out = dup_str_(c);
        return 0;
    }
    if (!json_is_array(c)) return pg_fail(e, "messages[%zu].content must be a string or an array of parts", i);
    pg_buf b = {0};
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type)) {
            pg_buf_free(&b);
            return pg_fail(e, "messages[%zu].content[%zu] must be an object with a 'type'", i, k);
        }
        if (strcmp(json_string_value(type), "text") || !json_is_string(text)) {
            pg_buf_free(&b);
            return pg_fail(e, "messages[%zu].content[%zu]: only text parts are supported", i, k);
        }
        pg_buf_add(&b, json_string_value(text), json_string_length(text));
    }
    *out = b.s ? b.s : xstrdup("");
    return 0;
}

static int parse_messages_(pg_oai_request *r, json_t *msgs, pg_error *e) {
    if (!msgs) return pg_fail(e, "'messages' is required");
    if (!json_is_array(msgs)) return pg_fail(e, "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n == 0) return pg_fail(e, "'messages' must not be empty");
    if (n > PG_OAI_MAX_MESSAGES) return pg_fail(e, "'messages' has more than %d entries", PG_OAI_MAX_MESSAGES);
    r->messages = xcalloc(n, sizeof *r->messages);
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) return pg_fail(e, "messages[%zu] must be an object", i);
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role)) return pg_fail(e, "messages[%zu].role must be a string", i);
        const char *rs = json_string_value(role);
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "tool") &&
            strcmp(rs, "developer"))
            return pg_fail(e, "messages[%zu].role '%.40s' is not one of system, user, assistant, tool, developer",
                           i, rs);
        char *content = NULL;
        if (message_content_(json_object_get(m, "content"), i, &content, e)) return -1;
        r->messages[i] = (pg_chat_msg){xstrdup(rs), content};
        r->n_messages = i + 1;
    }
    return 0;
}

static int parse_prompt_(pg_oai_request *r, json_t *p, pg_error *e) {
    if (!p) return pg_fail(e, "'prompt' is required");
    if (json_is_string(p)) {
        r->prompt_len = json_string_length(p);
        r->prompt = dup_str_(p);
        return 0;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return pg_fail(e, "'prompt' must be a string, an array of one string, or an array of token ids");
    json_t *first = json_array_get(p, 0);
    if (json_is_string(first)) {
        if (json_array_size(p) != 1) return pg_fail(e, "'prompt': only one prompt per request is supported");
        r->prompt_len = json_string_length(first);
        r->prompt = dup_str_(first);
        return 0;
    }
    size_t n = json_array_size(p);
    if (n > PG_OAI_MAX_PROMPT_IDS) return pg_fail(e, "'prompt' has more than %d token ids", PG_OAI_MAX_PROMPT_IDS);
    r->prompt_ids = xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(p, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return pg_fail(e, "'prompt'[%zu] must be a token id (a non-negative integer)", i);
        r->prompt_ids[i] = (int32_t)json_integer_value(v);
    }
    r->n_prompt_ids = n;
    return 0;
}

static int parse_(json_t *root, pg_oai_kind kind, pg_oai_request *r, pg_error *e) {
    if (!json_is_object(root)) return pg_fail(e, "the request body must be a JSON object");
    json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return pg_fail(e, "'model' must be a string");
        r->model = dup_str_(model);
    }
    if (kind == PG_OAI_CHAT ? parse_messages_(r, json_object_get(root, "messages"), e)
                            : parse_prompt_(r, json_object_get(root, "prompt"), e))
        return -1;
    long long n = 1, mt = -1, seed = 0, top_k = 0;
    bool seed_given = false;
    if (get_int_(root, "n", 1, 128, &n, NULL, e)) return -1;
    if (n != 1) return pg_fail(e, "'n' must be 1: one choice per request");
    if (get_int_(root, "max_tokens", 1, INT32_MAX, &mt, NULL, e)) return -1;
    if (get_int_(root, "max_completion_tokens", 1, INT32_MAX, &mt, NULL, e)) return -1;
    r->max_tokens = (long)mt;
    /* OpenAI takes any integer seed; the generator wants 64 bits */
    if (get_int_(root, "seed", LLONG_MIN, LLONG_MAX, &seed, &seed_given, e)) return -1;
    r->has_seed = seed_given;
    r->seed = (uint64_t)seed;
    if (get_int_(root, "top_k", 0, INT32_MAX, &top_k, NULL, e)) return -1;
    r->top_k = (int)top_k;
    if (get_number_(root, "temperature", 0, 2, &r->temperature, e) ||
        get_number_(root, "top_p", 0, 1, &r->top_p, e) || get_number_(root, "min_p", 0, 1, &r->min_p, e) ||
        get_number_(root, "repeat_penalty", 0.01, 100, &r->repeat_penalty, e))
        return -1;
    if (r->top_p <= 0) return pg_fail(e, "'top_p' must be greater than 0");
    if (get_bool_(root, "stream", &r->stream, e) || get_bool_(root, "ignore_eos", &r->ignore_eos, e) ||
        get_bool_(root, "return_token_ids", &r->return_token_ids, e))
        return -1;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return pg_fail(e, "'stream_options' must be an object");
        if (get_bool_(so, "include_usage", &r->include_usage, e)) return -1;
    }
    json_t *stop = json_object_get(root, "stop");
    if (stop && !json_is_null(stop)) {
        if (json_is_array(stop)) {
            size_t i;
            json_t *s;
            json_array_foreach(stop, i, s) if (add_stop_(r, s, e)) return -1;
        } else if (add_stop_(r, stop, e)) {
            return -1;
        }
    }
    return 0;
}

int pg_openai_parse_request(const char *body, size_t len, pg_oai_kind kind, pg_oai_request *out, pg_error *e) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->temperature = 1.0;
    out->top_p = 1.0;
    out->repeat_penalty = 1.0;
    out->max_tokens = -1;
    json_error_t je;
    /* JSON_REJECT_DUPLICATES: one meaning per field; no JSON_ALLOW_NUL: C strings */
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return pg_fail(e, "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                              je.column);
    int rc = parse_(root, kind, out, e);
    json_decref(root);
    if (rc) {
        pg_oai_request_free(out);
        out->kind = kind;
    }
    return rc;
}

/* ------------------------------------------------------------------ replies */

static char *dump_(json_t *j) {
    PG_ASSERT(j); /* json_pack fails only on a bug here (or invalid UTF-8, which callers never pass) */
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    PG_ASSERT(s);
    return s;
}

/* A JSON string from bytes that should be UTF-8; anything else is replaced
 * (generated text is complete UTF-8 already: the detokenizer holds back
 * partial characters). */
static json_t *str_(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    return j ? j : json_string("\xef\xbf\xbd");
}

char *pg_openai_error_json(const char *message, const char *type) {
    return dump_(json_pack("{s:{s:o,s:s,s:n,s:n}}", "error", "message", str_(message, strlen(message)), "type", type,
                           "param", "code"));
}

static json_t *ids_(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

static json_t *usage_(const pg_oai_usage *u) {
    return json_pack("{s:i,s:i,s:i}", "prompt_tokens", u->prompt_tokens, "completion_tokens", u->completion_tokens,
                     "total_tokens", u->prompt_tokens + u->completion_tokens);
}

static json_t *head_(const pg_oai_meta *m, const char *object) {
    return json_pack("{s:s,s:s,s:I,s:s}", "id", m->id, "object", object, "created", (json_int_t)m->created, "model",
                     m->model);
}

char *pg_openai_response_json(const pg_oai_meta *m, const char *text, size_t len, const char *finish,
                              const pg_oai_usage *u, const int32_t *prompt_ids, int n_prompt_ids,
                              const int32_t *token_ids, int n_token_ids) {
    bool chat = m->kind == PG_OAI_CHAT;
    json_t *root = head_(m, chat ? "chat.completion" : "text_completion");
    json_t *choice = chat ? json_pack("{s:i,s:{s:s,s:o},s:n,s:s}", "index", 0, "message", "role", "assistant",
                                      "content", str_(text, len), "logprobs", "finish_reason", finish)
                          : json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "text", str_(text, len), "logprobs",
                                      "finish_reason", finish);
    if (token_ids) json_object_set_new(choice, "token_ids", ids_(token_ids, n_token_ids));
    json_object_set_new(root, "choices", json_pack("[o]", choice));
    json_object_set_new(root, "usage", usage_(u));
    if (prompt_ids) json_object_set_new(root, "prompt_token_ids", ids_(prompt_ids, n_prompt_ids));
    return dump_(root);
}

char *pg_openai_chunk_json(const pg_oai_meta *m, const char *text, size_t len, bool first, const char *finish) {
    bool chat = m->kind == PG_OAI_CHAT;
    json_t *root = head_(m, chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice;
    if (chat) {
        /* the first delta names the role; the last one is empty */
        json_t *delta = json_object();
        if (first) json_object_set_new(delta, "role", json_string("assistant"));
        if (len || !finish) json_object_set_new(delta, "content", str_(text, len));
        choice = json_pack("{s:i,s:o,s:n}", "index", 0, "delta", delta, "logprobs");
    } else {
        choice = json_pack("{s:i,s:o,s:n}", "index", 0, "text", str_(text, len), "logprobs");
    }
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(root, "choices", json_pack("[o]", choice));
    return dump_(root);
}

char *pg_openai_usage_chunk_json(const pg_oai_meta *m, const pg_oai_usage *u) {
    json_t *root = head_(m, m->kind == PG_OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    json_object_set_new(root, "choices", json_array());
    json_object_set_new(root, "usage", usage_(u));
    return dump_(root);
}

char *pg_openai_models_json(const char *const *ids, int n, long long created) {
    json_t *data = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(data, json_pack("{s:o,s:s,s:I,s:s}", "id", str_(ids[i], strlen(ids[i])), "object",
                                              "model", "created", (json_int_t)created, "owned_by", "pregate"));
    return dump_(json_pack("{s:s,s:o}", "object", "list", "data", data));
}

/* ------------------------------------------------------------------ stop sequences */

long pg_stop_scan(const char *text, size_t len, size_t from, char *const *stop, int n_stop, size_t *safe) {
    long match = -1;
    for (int k = 0; k < n_stop; k++) {
        size_t sl = strlen(stop[k]);
        for (size_t p = from; p + sl <= len && (match < 0 || p < (size_t)match); p++)
            if (memcmp(text + p, stop[k], sl) == 0) {
                match = (long)p;
                break;
            }
    }
    if (match >= 0) {
        *safe = (size_t)match;
        return match;
    }
    /* hold back the longest tail text[p..len) that begins some stop string */
    size_t hold = len;
    for (size_t p = from; p < len && hold == len; p++)
        for (int k = 0; k < n_stop; k++) {
            size_t sl = strlen(stop[k]), tail = len - p;
            if (tail < sl && memcmp(text + p, stop[k], tail) == 0) {
                hold = p;
                break;
            }
        }
    *safe = hold;
    return -1;
}
