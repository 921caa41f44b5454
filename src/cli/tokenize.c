/* tokenize.c - `pregate tokenize` and `pregate detokenize`.
 *
 *   pregate tokenize --tokenizer PATH [--add-special] [--jsonl] [--literal-special]
 *   pregate detokenize --tokenizer PATH [--jsonl] [--skip-special]
 *
 * PATH: a tokenizer.json, a Hugging Face directory, or a GGUF file.
 * tokenize reads all of stdin as one text (any bytes: invalid UTF-8 is
 * encoded byte by byte, as the byte-level alphabet or SentencePiece byte
 * fallback spell it) and prints its ids on one line, separated by single
 * spaces. With --jsonl each stdin line is a JSON string literal and each
 * output line holds the ids of that line. Added and special tokens written
 * in the text are matched, as Hugging Face `tokenizers` does, unless
 * --literal-special. --add-special adds BOS / EOS where the tokenizer's
 * config says so (add_bos_token / add_eos_token).
 * detokenize reads ids (separated by spaces, commas or newlines) and writes
 * the bytes they stand for; with --jsonl each line of ids becomes one JSON
 * string (invalid UTF-8 as U+FFFD).
 * Also `pregate run --chat` (cli_chat). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "forward.h"
#include "model.h"
#include "offload_opts.h"
#include "sampler.h"
#include "tokenizer.h"

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) buf = xrealloc(buf, cap *= 2);
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    *len = n;
    return buf;
}

static void print_ids(FILE *out, const int32_t *ids, size_t n, int32_t eos) {
    char tmp[16];
    for (size_t i = 0; i < n; i++) {
        int k = snprintf(tmp, sizeof tmp, i ? " %d" : "%d", ids[i]);
        fwrite(tmp, 1, (size_t)k, out);
    }
    if (eos >= 0) fprintf(out, n ? " %d" : "%d", eos);
    fputc('\n', out);
}

static int parse_common(int argc, char **argv, const char *cmd, const char **path, bool *jsonl, bool *flag_a,
                        const char *flag_a_name, bool *flag_b, const char *flag_b_name) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tokenizer") && i + 1 < argc) *path = argv[++i];
        else if (!strcmp(a, "--jsonl")) *jsonl = true;
        else if (flag_a_name && !strcmp(a, flag_a_name)) *flag_a = true;
        else if (flag_b_name && !strcmp(a, flag_b_name)) *flag_b = true;
        else {
            fprintf(stderr, "pregate %s: unknown option '%s'\n", cmd, a);
            return -1;
        }
    }
    if (!*path) {
        fprintf(stderr, "usage: pregate %s --tokenizer PATH%s%s [--jsonl]   (PATH: tokenizer.json, HF directory or GGUF)\n",
                cmd, flag_a_name ? " [" : "", flag_a_name ? flag_a_name : "");
        return -1;
    }
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    bool jsonl = false, add_special = false, literal = false;
    if (parse_common(argc, argv, "tokenize", &path, &jsonl, &add_special, "--add-special", &literal,
                     "--literal-special"))
        return 2;
    pg_error e = {{0}};
    pg_tokenizer *t = pg_tokenizer_from_path(path, &e);
    if (!t) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        return 1;
    }
    bool bos = add_special && pg_tokenizer_add_bos(t);
    int32_t eos = add_special && pg_tokenizer_add_eos(t) ? pg_tokenizer_eos(t) : -1;
    int rc = 0;
    if (!jsonl) {
        size_t len;
        char *text = read_all(stdin, &len);
        int32_t *ids;
        size_t n;
        if (pg_tokenize(t, text, len, bos, !literal, &ids, &n, &e) != 0) {
            fprintf(stderr, "pregate: stdin: %s\n", e.msg);
            rc = 1;
        } else {
            print_ids(stdout, ids, n, eos);
            free(ids);
        }
        free(text);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        long lineno = 0;
        while ((got = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            size_t len = (size_t)got;
            if (len && line[len - 1] == '\n') len--;
            if (len && line[len - 1] == '\r') len--;
            json_error_t je;
            json_t *s = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!json_is_string(s)) {
                fprintf(stderr, "pregate: stdin line %ld: expected a JSON string literal%s%s\n", lineno,
                        s ? "" : ": ", s ? "" : je.text);
                json_decref(s);
                rc = 1;
                break;
            }
            int32_t *ids;
            size_t n;
            if (pg_tokenize(t, json_string_value(s), json_string_length(s), bos, !literal, &ids, &n, &e) != 0) {
                fprintf(stderr, "pregate: stdin line %ld: %s\n", lineno, e.msg);
                json_decref(s);
                rc = 1;
                break;
            }
            print_ids(stdout, ids, n, eos);
            free(ids);
            json_decref(s);
        }
        free(line);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "pregate: stdout: %s\n", strerror(errno));
        rc = 1;
    }
    pg_tokenizer_free(t);
    return rc;
}

/* Ids of one text (separated by spaces, tabs, commas; newlines too unless
 * stop_at_nl). Returns the number, or -1 after printing an error. */
static long parse_ids(const char *s, size_t len, const pg_tokenizer *t, long lineno, int32_t **out) {
    size_t n = 0, cap = 64;
    int32_t *ids = xmalloc(cap * sizeof *ids);
    size_t i = 0;
    while (i < len) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == ',' || c == '\n' || c == '\r') { i++; continue; }
        long v = 0;
        size_t j = i;
        while (j < len && s[j] >= '0' && s[j] <= '9' && j - i < 10) v = v * 10 + (s[j++] - '0');
        if (j == i || (j < len && !(s[j] == ' ' || s[j] == '\t' || s[j] == ',' || s[j] == '\n' || s[j] == '\r'))) {
            fprintf(stderr, "pregate: stdin%s%.0ld: expected token ids, got '%.20s'\n", lineno ? " line " : "",
                    lineno, s + i);
            free(ids);
            return -1;
        }
        if (v >= pg_tokenizer_n_vocab(t)) {
            fprintf(stderr, "pregate: stdin%s%.0ld: token id %ld out of range (vocabulary of %d)\n",
                    lineno ? " line " : "", lineno, v, pg_tokenizer_n_vocab(t));
            free(ids);
            return -1;
        }
        if (n == cap) ids = xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        i = j;
    }
    *out = ids;
    return (long)n;
}

static bool is_control(const pg_tokenizer *t, int32_t id) { return pg_tokenizer_is_control(t, id); }

/* The bytes of ids: SentencePiece drops the space of the first text piece. */
static char *ids_to_bytes(const pg_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len) {
    size_t cap = 256, m = 0;
    char *out = xmalloc(cap);
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && is_control(t, ids[i])) continue;
        size_t k = pg_token_to_bytes(t, ids[i], NULL, 0);
        if (m + k + 1 > cap) out = xrealloc(out, cap = (m + k + 1) * 2);
        pg_token_to_bytes(t, ids[i], out + m, k);
        if (first && pg_tokenizer_kind(t) == PG_TOK_SPM && !is_control(t, ids[i]) && k && out[m] == ' ') {
            memmove(out + m, out + m + 1, k - 1);
            k--;
        }
        if (!is_control(t, ids[i])) first = false;
        m += k;
    }
    *len = m;
    return out;
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL;
    bool jsonl = false, skip = false;
    if (parse_common(argc, argv, "detokenize", &path, &jsonl, &skip, "--skip-special", NULL, NULL)) return 2;
    pg_error e = {{0}};
    pg_tokenizer *t = pg_tokenizer_from_path(path, &e);
    if (!t) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        return 1;
    }
    int rc = 0;
    if (!jsonl) {
        size_t len;
        char *text = read_all(stdin, &len);
        int32_t *ids;
        long n = parse_ids(text, len, t, 0, &ids);
        if (n < 0) {
            rc = 1;
        } else {
            size_t bl;
            char *b = ids_to_bytes(t, ids, (size_t)n, skip, &bl);
            fwrite(b, 1, bl, stdout);
            free(b);
            free(ids);
        }
        free(text);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t got;
        long lineno = 0;
        while ((got = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            int32_t *ids;
            long n = parse_ids(line, (size_t)got, t, lineno, &ids);
            if (n < 0) { rc = 1; break; }
            size_t bl;
            char *b = ids_to_bytes(t, ids, (size_t)n, skip, &bl);
            /* invalid UTF-8 -> U+FFFD (JSON strings hold Unicode text) */
            char *u = xmalloc(bl * 3 + 16);
            size_t ul = 0;
            for (size_t i = 0; i < bl;) {
                unsigned char c = (unsigned char)b[i];
                size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
                if (i + k <= bl && pg_utf8_valid(b + i, k)) {
                    memcpy(u + ul, b + i, k);
                    ul += k;
                    i += k;
                } else {
                    memcpy(u + ul, "\xef\xbf\xbd", 3);
                    ul += 3;
                    i++;
                }
            }
            json_t *s = json_stringn_nocheck(u, ul);
            char *js = json_dumps(s, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
            if (js) {
                fputs(js, stdout);
                fputc('\n', stdout);
            }
            free(js);
            json_decref(s);
            free(u);
            free(b);
            free(ids);
        }
        free(line);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "pregate: stdout: %s\n", strerror(errno));
        rc = 1;
    }
    pg_tokenizer_free(t);
    return rc;
}

/* ------------------------------------------------------------------ run --chat */

/* Interactive chat: each stdin line is a user turn (a first one may come from
 * -p); the whole conversation is rendered with the model's chat template and
 * tokenized, and only the tokens after the part already in the KV cache are
 * evaluated (the cache is rewound to the common prefix when the rendering of
 * the earlier turns changed, e.g. Qwen3 dropping old think blocks). */
int cli_chat(pg_model *m, const pg_sampler_params *sp, const cli_offload *off, const char *sys, const char *first,
             int n_ctx, int n_threads, long n_predict, bool ignore_eos, const char *where) {
    if (!m->tok) {
        fprintf(stderr, "pregate: %s has no tokenizer; --chat needs one\n", where);
        return 1;
    }
    pg_error e = {{0}};
    pg_chat_template tpl = pg_chat_for_tokenizer(m->tok, where);
    fprintf(stderr, "pregate: chat template: %s (end a turn with Enter, the conversation with Ctrl-D)\n",
            pg_chat_family_name(tpl.family));
    pg_session *s = pg_session_new(m, n_ctx, n_threads, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    if (cli_offload_wanted(off) && cli_offload_attach(off, cli_offload_mode(off), NULL, s, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        pg_session_free(s);
        return 1;
    }
    pg_sampler smp = {0};
    pg_sampler_init(&smp, sp, m->hp.vocab);
    size_t n_msg = 0, cap_msg = 8;
    pg_chat_msg *msgs = xmalloc(cap_msg * sizeof *msgs);
    char **owned = xmalloc(cap_msg * sizeof *owned);
    if (sys) { msgs[n_msg] = (pg_chat_msg){"system", sys}; owned[n_msg++] = NULL; }
    int32_t *hist = xmalloc(sizeof(int32_t) * (size_t)s->n_ctx); /* tokens in the KV cache */
    int n_hist = 0, rc = 0;
    char *line = NULL;
    size_t lcap = 0;
    bool interactive = isatty(0);
    for (;;) {
        const char *user;
        if (first) {
            user = first;
            first = NULL;
        } else {
            if (interactive) { fputs("> ", stderr); fflush(stderr); }
            ssize_t got = getline(&line, &lcap, stdin);
            if (got < 0) break;
            while (got && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
            if (got == 0) continue;
            user = line;
        }
        if (n_msg + 2 > cap_msg) {
            cap_msg *= 2;
            msgs = xrealloc(msgs, cap_msg * sizeof *msgs);
            owned = xrealloc(owned, cap_msg * sizeof *owned);
        }
        owned[n_msg] = xstrdup(user);
        msgs[n_msg] = (pg_chat_msg){"user", owned[n_msg]};
        n_msg++;
        pg_chat_opts o = {.add_generation_prompt = true};
        char *text = pg_chat_render(&tpl, msgs, n_msg, &o, &e);
        if (!text) { fprintf(stderr, "pregate: %s\n", e.msg); rc = 1; break; }
        int32_t *ids;
        size_t n_ids;
        /* the template writes BOS itself where the family has one in its text */
        bool bos = pg_tokenizer_add_bos(m->tok) && !pg_chat_writes_bos(&tpl);
        int trc = pg_tokenize(m->tok, text, strlen(text), bos, true, &ids, &n_ids, &e);
        free(text);
        if (trc) { fprintf(stderr, "pregate: %s\n", e.msg); rc = 1; break; }
        if ((long)n_ids + 1 >= s->n_ctx) {
            fprintf(stderr, "pregate: the conversation (%zu tokens) fills the context (%d); ending it\n", n_ids, s->n_ctx);
            free(ids);
            rc = 1;
            break;
        }
        int common = 0;
        while (common < n_hist && (size_t)common < n_ids && hist[common] == ids[common]) common++;
        if ((size_t)common == n_ids) common--; /* evaluate at least one token for the logits */
        s->n_past = common;
        if (pg_session_eval(s, ids + common, (int)n_ids - common, NULL, &e)) {
            fprintf(stderr, "pregate: %s\n", e.msg);
            free(ids);
            rc = 1;
            break;
        }
        memcpy(hist, ids, n_ids * sizeof *ids);
        n_hist = (int)n_ids;
        for (size_t i = 0; i < n_ids; i++) pg_sampler_accept(&smp, ids[i]);
        free(ids);
        /* the answer */
        pg_detok dt;
        pg_detok_init(&dt);
        char buf[1024];
        size_t alen = 0, acap = 256;
        char *answer = xmalloc(acap);
        long room = s->n_ctx - n_hist - 1;
        for (long k = 0; k < n_predict && k < room; k++) {
            int32_t tok = pg_sampler_sample(&smp, s->logits);
            pg_sampler_accept(&smp, tok);
            if (!ignore_eos && pg_tokenizer_is_eog(m->tok, tok)) break;
            size_t nb = pg_detok_push(m->tok, &dt, tok, buf, sizeof buf);
            fwrite(buf, 1, nb, stdout);
            fflush(stdout);
            size_t tb = pg_token_to_bytes(m->tok, tok, NULL, 0);
            if (alen + tb + 1 > acap) answer = xrealloc(answer, acap = (alen + tb + 1) * 2);
            if (!pg_tokenizer_is_control(m->tok, tok)) alen += pg_token_to_bytes(m->tok, tok, answer + alen, tb);
            if (pg_session_eval(s, &tok, 1, NULL, &e)) {
                fprintf(stderr, "\npregate: %s\n", e.msg);
                rc = 1;
                break;
            }
            hist[n_hist++] = tok;
        }
        fwrite(buf, 1, pg_detok_flush(&dt, buf, sizeof buf), stdout);
        fputc('\n', stdout);
        fflush(stdout);
        answer[alen] = 0;
        /* SentencePiece: the answer's first piece carries the template's space */
        char *a = answer;
        if (pg_tokenizer_kind(m->tok) == PG_TOK_SPM && *a == ' ') a++;
        owned[n_msg] = xstrdup(a);
        free(answer);
        msgs[n_msg] = (pg_chat_msg){"assistant", owned[n_msg]};
        n_msg++;
        if (rc) break;
    }
    for (size_t i = 0; i < n_msg; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    free(hist);
    pg_sampler_free(&smp);
    pg_session_free(s);
    return rc;
}
