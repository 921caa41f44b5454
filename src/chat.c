/* chat.c - see chat.h. Each renderer follows its family's Jinja template
 * statement by statement (the comments quote the conditions). */
#include "chat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ string builder */

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2 + 64;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

static bool streq(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

static bool starts_with(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static bool ends_with(const char *s, const char *p) {
    size_t n = strlen(s), k = strlen(p);
    return n >= k && memcmp(s + n - k, p, k) == 0;
}

/* Last occurrence of needle in s[0..n), or NULL. */
static const char *memrstr(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    if (k > n) return NULL;
    for (size_t i = n - k + 1; i-- > 0;)
        if (memcmp(s + i, needle, k) == 0) return s + i;
    return NULL;
}

/* ------------------------------------------------------------------ families */

static const char *const NAMES[] = {"chatml", "qwen3", "mistral", "deepseek-v3", "gpt-oss", "llama2", "llama3"};

const char *pg_chat_family_name(pg_chat_family f) {
    return (unsigned)f < sizeof NAMES / sizeof *NAMES ? NAMES[f] : "?";
}

int pg_chat_family_from_name(const char *name) {
    for (size_t i = 0; i < sizeof NAMES / sizeof *NAMES; i++)
        if (streq(name, NAMES[i])) return (int)i;
    return -1;
}

#define DS_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define DS_OUTS_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_OUTS_END "<\xef\xbd\x9ctool\xe2\x96\x81outputs\xe2\x96\x81" "end\xef\xbd\x9c>"
#define DS_OUT_BEGIN "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_OUT_END "<\xef\xbd\x9ctool\xe2\x96\x81output\xe2\x96\x81" "end\xef\xbd\x9c>"

static const char QWEN25_SYSTEM[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";
static const char QWEN2_SYSTEM[] = "You are a helpful assistant.";

bool pg_chat_detect(const char *s, pg_chat_template *out) {
    pg_chat_template t = {PG_CHAT_CHATML, NULL};
    bool known = true;
    if (!s || !*s) {
        known = false;
    } else if (strstr(s, "<|im_start|>")) {
        if (strstr(s, "<think>") || strstr(s, "enable_thinking") || strstr(s, "reasoning_content")) {
            t.family = PG_CHAT_QWEN3;
        } else if (strstr(s, QWEN25_SYSTEM)) {
            t.default_system = QWEN25_SYSTEM;
        } else if (strstr(s, "<|im_start|>system\\n" "You are a helpful assistant.") ||
                   strstr(s, "'You are a helpful assistant.'")) {
            t.default_system = QWEN2_SYSTEM;
        }
    } else if (strstr(s, DS_USER) && strstr(s, DS_ASSISTANT)) {
        t.family = PG_CHAT_DEEPSEEK_V3;
    } else if (strstr(s, "<|start|>") && strstr(s, "<|message|>") && strstr(s, "<|channel|>")) {
        t.family = PG_CHAT_GPTOSS;
    } else if (strstr(s, "<|start_header_id|>") && strstr(s, "<|eot_id|>")) {
        t.family = PG_CHAT_LLAMA3;
    } else if (strstr(s, "[INST]") && strstr(s, "<<SYS>>")) {
        t.family = PG_CHAT_LLAMA2;
    } else if (strstr(s, "[INST]")) {
        t.family = PG_CHAT_MISTRAL;
    } else {
        known = false;
    }
    *out = t;
    return known;
}

static bool has_tok(const pg_tokenizer *t, const char *s) { return pg_tokenizer_find(t, s, strlen(s)) >= 0; }

pg_chat_template pg_chat_for_tokenizer(const pg_tokenizer *t, const char *where) {
    pg_chat_template tpl = {PG_CHAT_CHATML, NULL};
    const char *text = pg_tokenizer_chat_template(t);
    if (text) {
        if (pg_chat_detect(text, &tpl) && tpl.family == PG_CHAT_LLAMA3 && strstr(text, "Cutting Knowledge Date"))
            fprintf(stderr, "pregate: warning: %s: Llama 3.1+ chat template: its dated system header is not "
                            "reproduced (Llama 3 format used)\n",
                    where ? where : "tokenizer");
        else if (!pg_chat_detect(text, &tpl))
            fprintf(stderr, "pregate: warning: %s: chat template not recognised (supported: ChatML/Qwen, Qwen3, "
                            "Mistral [INST], Llama-2 [INST] <<SYS>>, Llama-3, DeepSeek-V3, gpt-oss); using ChatML\n",
                    where ? where : "tokenizer");
        return tpl;
    }
    /* no template text: the family's marker tokens */
    if (has_tok(t, "<|im_start|>")) {
        tpl.family = has_tok(t, "<think>") ? PG_CHAT_QWEN3 : PG_CHAT_CHATML;
    } else if (has_tok(t, DS_USER) && has_tok(t, DS_ASSISTANT)) {
        tpl.family = PG_CHAT_DEEPSEEK_V3;
    } else if (has_tok(t, "<|start_header_id|>") && has_tok(t, "<|eot_id|>")) {
        tpl.family = PG_CHAT_LLAMA3;
    } else if (has_tok(t, "<|start|>") && has_tok(t, "<|message|>") && has_tok(t, "<|channel|>")) {
        tpl.family = PG_CHAT_GPTOSS;
    } else if (pg_tokenizer_kind(t) == PG_TOK_SPM && has_tok(t, "<s>") && has_tok(t, "</s>")) {
        tpl.family = PG_CHAT_MISTRAL;
    } else {
        fprintf(stderr, "pregate: warning: %s: no chat template and no known chat tokens; using ChatML\n",
                where ? where : "tokenizer");
    }
    return tpl;
}

/* ------------------------------------------------------------------ renderers */

static int render_chatml(sbuf *b, const pg_chat_template *tpl, const pg_chat_msg *m, size_t n, const pg_chat_opts *o) {
    if (tpl->default_system && !streq(m[0].role, "system")) {
        sb_add(b, "<|im_start|>system\n");
        sb_add(b, tpl->default_system);
        sb_add(b, "<|im_end|>\n");
    }
    for (size_t i = 0; i < n; i++) {
        sb_add(b, "<|im_start|>");
        sb_add(b, m[i].role);
        sb_add(b, "\n");
        sb_add(b, m[i].content);
        sb_add(b, "<|im_end|>\n");
    }
    if (o->add_generation_prompt) sb_add(b, "<|im_start|>assistant\n");
    return 0;
}

/* Appends s[0..n) without the leading/trailing '\n' characters (Python's
 * str.lstrip('\n') / rstrip / strip). */
static void sb_strip_nl(sbuf *b, const char *s, size_t n, bool left, bool right) {
    if (left)
        while (n && *s == '\n') { s++; n--; }
    if (right)
        while (n && s[n - 1] == '\n') n--;
    sb_addn(b, s, n);
}

static int render_qwen3(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o) {
    /* {%- if messages[0].role == 'system' %} */
    if (streq(m[0].role, "system")) {
        sb_add(b, "<|im_start|>system\n");
        sb_add(b, m[0].content);
        sb_add(b, "<|im_end|>\n");
    }
    /* last_query_index: the last user message that is not a tool response */
    size_t last_query = n - 1;
    for (size_t k = n; k-- > 0;) {
        if (streq(m[k].role, "user") &&
            !(starts_with(m[k].content, "<tool_response>") && ends_with(m[k].content, "</tool_response>"))) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const char *role = m[i].role, *c = m[i].content;
        if (streq(role, "user") || (streq(role, "system") && i > 0)) {
            sb_add(b, "<|im_start|>");
            sb_add(b, role);
            sb_add(b, "\n");
            sb_add(b, c);
            sb_add(b, "<|im_end|>\n");
        } else if (streq(role, "assistant")) {
            size_t cl = strlen(c);
            const char *content = c, *reason = "";
            size_t content_n = cl, reason_n = 0;
            const char *end_think = strstr(c, "</think>");
            if (end_think) {
                /* content = content.split('</think>')[-1].lstrip('\n') */
                const char *last = memrstr(c, cl, "</think>") + 8;
                content = last;
                content_n = cl - (size_t)(last - c);
                while (content_n && *content == '\n') { content++; content_n--; }
                /* reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
                size_t first_n = (size_t)(end_think - c);
                while (first_n && c[first_n - 1] == '\n') first_n--;
                const char *open = memrstr(c, first_n, "<think>");
                reason = open ? open + 7 : c;
                reason_n = first_n - (size_t)(reason - c);
                while (reason_n && *reason == '\n') { reason++; reason_n--; }
            }
            sb_add(b, "<|im_start|>assistant\n");
            if (i > last_query && (i == n - 1 || reason_n > 0)) {
                sb_add(b, "<think>\n");
                sb_strip_nl(b, reason, reason_n, true, true);
                sb_add(b, "\n</think>\n\n");
                sb_strip_nl(b, content, content_n, true, false);
            } else {
                sb_addn(b, content, content_n);
            }
            sb_add(b, "<|im_end|>\n");
        } else if (streq(role, "tool")) {
            if (i == 0 || !streq(m[i - 1].role, "tool")) sb_add(b, "<|im_start|>user");
            sb_add(b, "\n<tool_response>\n");
            sb_add(b, c);
            sb_add(b, "\n</tool_response>");
            if (i == n - 1 || !streq(m[i + 1].role, "tool")) sb_add(b, "<|im_end|>\n");
        }
    }
    if (o->add_generation_prompt) {
        sb_add(b, "<|im_start|>assistant\n");
        if (o->disable_thinking) sb_add(b, "<think>\n\n</think>\n\n");
    }
    return 0;
}

static int render_mistral(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o, pg_error *e) {
    const char *sys = NULL;
    size_t start = 0;
    if (streq(m[0].role, "system")) { sys = m[0].content; start = 1; }
    sb_add(b, o->bos ? o->bos : "<s>");
    for (size_t i = start; i < n; i++) {
        size_t k = i - start;
        if (streq(m[i].role, "user") != (k % 2 == 0))
            return pg_fail(e, "chat template (mistral): after the optional system message, conversation roles must "
                              "alternate user/assistant/user/assistant/...");
        if (streq(m[i].role, "user")) {
            sb_add(b, " [INST] ");
            if (k == 0 && sys) {
                sb_add(b, sys);
                sb_add(b, "\n\n");
            }
            sb_add(b, m[i].content);
            sb_add(b, " [/INST]");
        } else if (streq(m[i].role, "assistant")) {
            sb_add(b, " ");
            sb_add(b, m[i].content);
            sb_add(b, o->eos ? o->eos : "</s>");
        } else {
            return pg_fail(e, "chat template (mistral): only user and assistant roles are supported, with the "
                              "exception of an initial optional system message");
        }
    }
    return 0;
}

/* Python's str.isspace() for one code point. */
static bool py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decodes the UTF-8 character at s (valid input assumed: message text);
 * *k its length. */
static uint32_t cp_at(const unsigned char *s, size_t n, size_t *k) {
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (len > n) len = 1;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t i = 1; i < len; i++) cp = (cp << 6) | (s[i] & 0x3f);
    *k = len;
    return cp;
}

/* Appends Python's s.strip(). */
static void sb_add_pystrip(sbuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), a = 0, k;
    while (a < n && py_space(cp_at(p + a, n - a, &k))) a += k;
    size_t e = a, i = a;
    while (i < n) { /* e: end of the last non-space character */
        uint32_t c = cp_at(p + i, n - i, &k);
        i += k;
        if (!py_space(c)) e = i;
    }
    sb_addn(b, s + a, e - a);
}

static int render_llama2(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o, pg_error *e) {
    const char *sys = NULL;
    size_t start = 0;
    if (streq(m[0].role, "system")) { sys = m[0].content; start = 1; }
    for (size_t i = start; i < n; i++) {
        size_t k = i - start;
        if (streq(m[i].role, "user") != (k % 2 == 0))
            return pg_fail(e, "chat template (llama2): conversation roles must alternate user/assistant/user/assistant/...");
        sbuf c = {0};
        sb_add(&c, "");
        if (k == 0 && sys && *sys) {
            sb_add(&c, "<<SYS>>\n");
            sb_add(&c, sys);
            sb_add(&c, "\n<</SYS>>\n\n");
        }
        sb_add(&c, m[i].content);
        if (streq(m[i].role, "user")) {
            sb_add(b, o->bos ? o->bos : "<s>");
            sb_add(b, "[INST] ");
            sb_add_pystrip(b, c.s);
            sb_add(b, " [/INST]");
        } else if (streq(m[i].role, "assistant")) {
            sb_add(b, " ");
            sb_add_pystrip(b, c.s);
            sb_add(b, " ");
            sb_add(b, o->eos ? o->eos : "</s>");
        }
        free(c.s);
    }
    return 0;
}

static int render_llama3(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o) {
    for (size_t i = 0; i < n; i++) {
        if (i == 0) sb_add(b, o->bos ? o->bos : "<|begin_of_text|>");
        sb_add(b, "<|start_header_id|>");
        sb_add(b, m[i].role);
        sb_add(b, "<|end_header_id|>\n\n");
        sb_add_pystrip(b, m[i].content); /* | trim */
        sb_add(b, "<|eot_id|>");
    }
    if (o->add_generation_prompt) sb_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
    return 0;
}

bool pg_chat_writes_bos(const pg_chat_template *tpl) {
    return tpl->family == PG_CHAT_MISTRAL || tpl->family == PG_CHAT_DEEPSEEK_V3 || tpl->family == PG_CHAT_LLAMA2 ||
           tpl->family == PG_CHAT_LLAMA3;
}

static int render_deepseek(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o, pg_error *e) {
    sb_add(b, o->bos ? o->bos : DS_BOS);
    bool first_sp = true;
    for (size_t i = 0; i < n; i++) {
        if (!streq(m[i].role, "system")) continue;
        if (!first_sp) sb_add(b, "\n\n");
        sb_add(b, m[i].content);
        first_sp = false;
    }
    bool is_tool = false, output_first = true;
    const char *eos = o->eos ? o->eos : DS_EOS;
    for (size_t i = 0; i < n; i++) {
        const char *role = m[i].role, *c = m[i].content;
        if (streq(role, "user")) {
            is_tool = false;
            sb_add(b, DS_USER);
            sb_add(b, c);
        } else if (streq(role, "assistant")) {
            sb_add(b, is_tool ? DS_OUTS_END : DS_ASSISTANT);
            sb_add(b, c);
            sb_add(b, eos);
            is_tool = false;
        } else if (streq(role, "tool")) {
            is_tool = true;
            if (output_first) {
                sb_add(b, DS_OUTS_BEGIN);
                output_first = false;
            } else {
                sb_add(b, "\n");
            }
            sb_add(b, DS_OUT_BEGIN);
            sb_add(b, c);
            sb_add(b, DS_OUT_END);
        }
    }
    if (is_tool) sb_add(b, DS_OUTS_END);
    if (o->add_generation_prompt && !is_tool) sb_add(b, DS_ASSISTANT);
    (void)e;
    return 0;
}

static int render_gptoss(sbuf *b, const pg_chat_msg *m, size_t n, const pg_chat_opts *o, pg_error *e) {
    char today[32];
    const char *date = o->date;
    if (!date) {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(today, sizeof today, "%Y-%m-%d", &tm);
        date = today;
    }
    sb_add(b, "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\n"
              "Knowledge cutoff: 2024-06\nCurrent date: ");
    sb_add(b, date);
    sb_add(b, "\n\nReasoning: ");
    sb_add(b, o->reasoning_effort ? o->reasoning_effort : "medium");
    sb_add(b, "\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.\n"
              "Calls to these tools must go to the commentary channel: 'functions'.<|end|>");
    size_t start = 0;
    if (streq(m[0].role, "developer") || streq(m[0].role, "system")) {
        start = 1;
        if (*m[0].content) {
            sb_add(b, "<|start|>developer<|message|># Instructions\n\n");
            sb_add(b, m[0].content);
            sb_add(b, "<|end|>");
        }
    }
    for (size_t i = start; i < n; i++) {
        const char *role = m[i].role, *c = m[i].content;
        if (streq(role, "assistant")) {
            if (strstr(c, "<|channel|>analysis<|message|>") || strstr(c, "<|channel|>final<|message|>"))
                return pg_fail(e, "chat template (gpt-oss): an assistant message contains <|channel|> tags");
            sb_add(b, "<|start|>assistant<|channel|>final<|message|>");
            sb_add(b, c);
            sb_add(b, i == n - 1 && !o->add_generation_prompt ? "<|return|>" : "<|end|>");
        } else if (streq(role, "user")) {
            sb_add(b, "<|start|>user<|message|>");
            sb_add(b, c);
            sb_add(b, "<|end|>");
        } else if (streq(role, "tool")) {
            return pg_fail(e, "chat template (gpt-oss): tool messages need an assistant tool call (not supported)");
        }
    }
    if (o->add_generation_prompt) sb_add(b, "<|start|>assistant");
    return 0;
}

char *pg_chat_render(const pg_chat_template *tpl, const pg_chat_msg *msgs, size_t n, const pg_chat_opts *opts,
                     pg_error *e) {
    pg_chat_opts def = {0};
    const pg_chat_opts *o = opts ? opts : &def;
    if (n == 0) {
        pg_fail(e, "chat template: no messages");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            pg_fail(e, "chat template: message %zu has no role or no content", i);
            return NULL;
        }
    }
    sbuf b = {0};
    sb_add(&b, "");
    int rc;
    switch (tpl->family) {
    case PG_CHAT_QWEN3: rc = render_qwen3(&b, msgs, n, o); break;
    case PG_CHAT_MISTRAL: rc = render_mistral(&b, msgs, n, o, e); break;
    case PG_CHAT_DEEPSEEK_V3: rc = render_deepseek(&b, msgs, n, o, e); break;
    case PG_CHAT_GPTOSS: rc = render_gptoss(&b, msgs, n, o, e); break;
    case PG_CHAT_LLAMA2: rc = render_llama2(&b, msgs, n, o, e); break;
    case PG_CHAT_LLAMA3: rc = render_llama3(&b, msgs, n, o); break;
    default: rc = render_chatml(&b, tpl, msgs, n, o); break;
    }
    if (rc) {
        free(b.s);
        return NULL;
    }
    return b.s;
}
