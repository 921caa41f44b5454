/* test_tokenizer.c - byte-level BPE and SentencePiece tokenizers against
 * expectations computed with Hugging Face `tokenizers`
 * (tools/make_tokenizer_expect.py -> tests/fixtures/tokenizer/NAME.jsonl),
 * plus streaming decode, special tokens, bad input and hostile files. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tokenizer.h"

static const char *DEMO_JSON = "models/demo-moe.tokenizer.json";

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

static const char *shared_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 1024, "%s/%s", test_shared_data(), rel);
    return b;
}

static pg_tokenizer *load_json(const char *path) {
    pg_error e = {{0}};
    pg_tokenizer *t = pg_tokenizer_from_json(path, &e);
    CHECK(t != NULL, "%s", e.msg);
    return t;
}

static pg_tokenizer *load_gguf(const char *path, gguf_file *g) {
    pg_error e = {{0}};
    if (gguf_open(g, path, NULL, &e) != 0) {
        CHECK(0, "%s", e.msg);
        return NULL;
    }
    pg_tokenizer *t = pg_tokenizer_from_gguf(g, &e);
    CHECK(t != NULL, "%s", e.msg);
    return t;
}

static int32_t *enc(const pg_tokenizer *t, const char *s, size_t n, bool bos, bool special, size_t *nid) {
    int32_t *ids = NULL;
    pg_error e = {{0}};
    int rc = pg_tokenize(t, s, n, bos, special, &ids, nid, &e);
    CHECK(rc == 0, "%s", e.msg);
    return ids;
}

/* Concatenated bytes of ids (heap, NUL-terminated). */
static char *dec(const pg_tokenizer *t, const int32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, m = 0;
    char *out = malloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t k = pg_token_to_bytes(t, ids[i], NULL, 0);
        if (m + k + 1 > cap) { cap = (m + k + 1) * 2; out = realloc(out, cap); }
        pg_token_to_bytes(t, ids[i], out + m, k);
        m += k;
    }
    out[m] = 0;
    *len = m;
    return out;
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *what, const int32_t *a, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

static bool check_ids(const pg_tokenizer *t, const char *s, size_t n, bool bos, const int32_t *want, size_t nwant) {
    size_t nid;
    int32_t *ids = enc(t, s, n, bos, false, &nid);
    bool ok = ids_eq(ids, nid, want, nwant);
    CHECK(ok, "encoding of \"%.*s\" differs", (int)(n > 80 ? 80 : n), s);
    if (!ok) { print_ids("got ", ids, nid); print_ids("want", want, nwant); }
    free(ids);
    return ok;
}

/* The test strings (tests/fixtures/tokenizer/corpus.jsonl), loaded once. */
static char **corpus;
static size_t *corpus_len;
static int n_corpus;

static void load_corpus(void) {
    if (corpus) return;
    char *buf;
    size_t len;
    pg_error e = {{0}};
    const char *path = "tests/fixtures/tokenizer/corpus.jsonl";
    if (pg_read_file(path, &buf, &len, &e) != 0) { CHECK(0, "%s", e.msg); return; }
    int cap = 0;
    for (char *p = buf, *nl; p < buf + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) nl = buf + len;
        json_error_t je;
        json_t *o = json_loadb(p, (size_t)(nl - p), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!json_is_string(o)) { CHECK(0, "%s line %d: %s", path, n_corpus + 1, je.text); json_decref(o); break; }
        if (n_corpus == cap) {
            cap = cap ? cap * 2 : 1024;
            corpus = realloc(corpus, (size_t)cap * sizeof *corpus);
            corpus_len = realloc(corpus_len, (size_t)cap * sizeof *corpus_len);
        }
        size_t n = json_string_length(o);
        corpus[n_corpus] = malloc(n + 1);
        memcpy(corpus[n_corpus], json_string_value(o), n + 1);
        corpus_len[n_corpus++] = n;
        json_decref(o);
    }
    free(buf);
}

static void free_corpus(void) {
    for (int i = 0; i < n_corpus; i++) free(corpus[i]);
    free(corpus);
    free(corpus_len);
    corpus = NULL;
    n_corpus = 0;
}

/* Every string of the corpus: the ids of tests/fixtures/tokenizer/NAME.ids
 * (Hugging Face, added tokens written in the text matched), and those ids
 * decode back to the string (or to the text after a tab on the line, where
 * normalisation changes it). spm: the decoded text starts with the added
 * U+2581 -> ' '. */
static void run_fixture(const pg_tokenizer *t, const char *name, bool spm) {
    load_corpus();
    char path[256], *buf;
    size_t len;
    pg_error e = {{0}};
    snprintf(path, sizeof path, "tests/fixtures/tokenizer/%s.ids", name);
    if (pg_read_file(path, &buf, &len, &e) != 0) { CHECK(0, "%s", e.msg); return; }
    int lines = 0, bad = 0, badrt = 0;
    double t0 = pg_time_s();
    for (char *p = buf; p < buf + len && lines < n_corpus; lines++) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) nl = buf + len;
        *nl = 0;
        size_t nw = 0, cap = 16;
        int32_t *want = malloc(cap * sizeof *want);
        char *q = p;
        while (*q && *q != '\t') {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            if (nw == cap) want = realloc(want, (cap *= 2) * sizeof *want);
            want[nw++] = (int32_t)v;
            q = end;
            while (*q == ' ') q++;
        }
        const char *text = corpus[lines];
        size_t tl = corpus_len[lines];
        json_t *alt = NULL;
        if (*q == '\t') {
            json_error_t je;
            alt = json_loads(q + 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            CHECK(json_is_string(alt), "%s line %d: %s", path, lines + 1, je.text);
        }
        size_t nid;
        int32_t *ids = enc(t, text, tl, false, true, &nid);
        bool ok = ids_eq(ids, nid, want, nw);
        if (!ok && ++bad <= 8) {
            fprintf(stderr, "  %s line %d: encoding of \"%.*s\" differs\n", name, lines + 1, (int)(tl > 80 ? 80 : tl), text);
            print_ids("got ", ids, nid);
            print_ids("want", want, nw);
        }
        const char *rt = alt ? json_string_value(alt) : text;
        size_t rtl = alt ? json_string_length(alt) : tl;
        size_t dl;
        char *d = dec(t, ids, nid, &dl);
        const char *dd = d;
        if (spm && tl > 0 && dl > 0 && d[0] == ' ') { dd++; dl--; }
        if (!(dl == rtl && memcmp(dd, rt, rtl) == 0) && ++badrt <= 4)
            fprintf(stderr, "  %s line %d: round trip of \"%.60s\" gave \"%.60s\"\n", name, lines + 1, rt, dd);
        free(d);
        free(ids);
        free(want);
        json_decref(alt);
        p = nl + 1;
    }
    double dt = pg_time_s() - t0;
    CHECK(lines == n_corpus && lines >= 2000, "%s: %d lines for %d strings", path, lines, n_corpus);
    CHECK(bad == 0, "%s: %d of %d strings differ", name, bad, lines);
    CHECK(badrt == 0, "%s: %d of %d strings do not round-trip", name, badrt, lines);
    fprintf(stderr, "  %s: %d strings, %d differ, %d round-trip failures (%.2f s)\n", name, lines, bad, badrt, dt);
    free(buf);
}

/* ------------------------------------------------------------------ byte-level BPE */

static void test_bpe_qwen3_fixture(void) {
    const char *p = shared_path("tokenizers/qwen3/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    pg_tokenizer *t = load_json(p);
    if (!t) return;
    CHECK(pg_tokenizer_kind(t) == PG_TOK_BPE, "kind");
    CHECK(pg_tokenizer_n_vocab(t) == 151669, "n_vocab %d", pg_tokenizer_n_vocab(t));
    run_fixture(t, "qwen3", false);
    pg_tokenizer_free(t);
}

static void test_bpe_demo_fixture(void) {
    if (!file_exists(DEMO_JSON)) TEST_SKIP("%s not found", DEMO_JSON);
    pg_tokenizer *t = load_json(DEMO_JSON);
    if (!t) return;
    CHECK(pg_tokenizer_kind(t) == PG_TOK_BPE, "kind");
    run_fixture(t, "demo-moe", false);
    pg_tokenizer_free(t);
}

/* Writes the tokenizer of a byte-level tokenizer.json as GGUF metadata the way
 * llama.cpp's converter does, to test the GGUF loader on the same fixture. */
static bool json_to_gguf(const char *json_path, const char *pre, const char *out) {
    json_error_t je;
    json_t *root = json_load_file(json_path, 0, &je);
    if (!root) return false;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
    json_t *added = json_object_get(root, "added_tokens");
    size_t n = json_object_size(vocab);
    for (size_t i = 0; i < json_array_size(added); i++) {
        size_t id = (size_t)json_integer_value(json_object_get(json_array_get(added, i), "id"));
        if (id + 1 > n) n = id + 1;
    }
    const char **toks = calloc(n, sizeof *toks);
    int32_t *types = calloc(n, sizeof *types);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        toks[json_integer_value(v)] = k;
        types[json_integer_value(v)] = 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        size_t id = (size_t)json_integer_value(json_object_get(a, "id"));
        toks[id] = json_string_value(json_object_get(a, "content"));
        types[id] = json_is_true(json_object_get(a, "special")) ? 3 : 4;
    }
    char pad[32];
    char **pads = calloc(n, sizeof *pads);
    for (size_t i = 0; i < n; i++)
        if (!toks[i]) { snprintf(pad, sizeof pad, "[PAD%zu]", i); toks[i] = pads[i] = strdup(pad); types[i] = 5; }
    size_t nm = json_array_size(merges);
    char **ms = calloc(nm + 1, sizeof *ms);
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            ms[i] = strdup(json_string_value(m));
        } else {
            const char *a = json_string_value(json_array_get(m, 0)), *b = json_string_value(json_array_get(m, 1));
            ms[i] = malloc(strlen(a) + strlen(b) + 2);
            sprintf(ms[i], "%s %s", a, b);
        }
    }
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, n);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, n);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, nm);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 0);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    pg_error e = {{0}};
    int rc = gguf_writer_write(w, out, &e);
    CHECK(rc == 0, "%s", e.msg);
    gguf_writer_free(w);
    for (size_t i = 0; i < nm; i++) free(ms[i]);
    for (size_t i = 0; i < n; i++) free(pads[i]);
    free(ms);
    free(pads);
    free(toks);
    free(types);
    json_decref(root);
    return rc == 0;
}

static void test_bpe_gguf(void) {
    int ran = 0;
    const char *cases[][3] = {
        {shared_path("tokenizers/qwen3/tokenizer.json"), "qwen2", "qwen3"},
        {shared_path("tokenizers/deepseek_v3/tokenizer.json"), "deepseek-v3", "deepseek_v3"},
        {shared_path("tokenizers/gptoss/tokenizer.json"), "gpt-4o", "gptoss"},
        {DEMO_JSON, "gpt-2", "demo-moe"},
    };
    for (int c = 0; c < 4; c++) {
        if (!file_exists(cases[c][0])) continue;
        char tmp[] = "/tmp/pg_tok_XXXXXX";
        int fd = mkstemp(tmp);
        if (fd < 0) continue;
        close(fd);
        if (json_to_gguf(cases[c][0], cases[c][1], tmp)) {
            gguf_file g;
            pg_tokenizer *t = load_gguf(tmp, &g);
            if (t) {
                CHECK(pg_tokenizer_kind(t) == PG_TOK_BPE, "kind");
                CHECK(!pg_tokenizer_add_bos(t), "add_bos");
                run_fixture(t, cases[c][2], false);
                pg_tokenizer_free(t);
                gguf_close(&g);
            }
            ran++;
        }
        unlink(tmp);
    }
    if (!ran) TEST_SKIP("no tokenizer.json to convert");
}

static void test_bpe_json_families(void) {
    const char *names[] = {"deepseek_v3", "gptoss"};
    int ran = 0;
    for (int i = 0; i < 2; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", names[i]);
        const char *p = shared_path(rel);
        if (!file_exists(p)) continue;
        pg_tokenizer *t = load_json(p);
        if (!t) continue;
        CHECK(pg_tokenizer_kind(t) == PG_TOK_BPE, "kind");
        run_fixture(t, names[i], false);
        pg_tokenizer_free(t);
        ran++;
    }
    if (!ran) TEST_SKIP("no deepseek_v3/gptoss tokenizer.json");
}

/* ------------------------------------------------------------------ SentencePiece */

static void test_spm_gguf_llama2(void) {
    const char *p = shared_path("models/llama-2-tiny-random.gguf");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    gguf_file g;
    pg_tokenizer *t = load_gguf(p, &g);
    if (!t) return;
    CHECK(pg_tokenizer_kind(t) == PG_TOK_SPM, "kind");
    CHECK(pg_tokenizer_n_vocab(t) == 32000, "n_vocab");
    CHECK(pg_tokenizer_bos(t) == 1 && pg_tokenizer_eos(t) == 2, "bos/eos");
    CHECK(pg_tokenizer_add_bos(t), "add_bos default for llama");
    CHECK(pg_tokenizer_is_eog(t, 2) && !pg_tokenizer_is_eog(t, 1), "eog");
    run_fixture(t, "llama2", true);
    /* Llama-2 ids (HF transformers' conversion of this GGUF; " Hello" as
     * llama.cpp / sentencepiece: the dummy prefix is always added). */
    struct { const char *s; int32_t ids[16]; int n; } cases[] = {
        {"Hello world", {1, 15043, 3186}, 3},
        {" Hello", {1, 29871, 15043}, 3},
        {"Hello", {1, 15043}, 2},
        {"", {1}, 1},
        {"hello\nworld", {1, 22172, 13, 11526}, 4},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text", {1, 29871, 30325, 30346, 30968, 1426}, 6},
        {"\xf0\x9f\x98\x80 emoji", {1, 29871, 243, 162, 155, 131, 953, 29877, 2397}, 9},
        {"tab\there", {1, 4434, 12, 4150}, 4},
        {"it's 1234 ok!", {1, 372, 29915, 29879, 29871, 29896, 29906, 29941, 29946, 3431, 29991}, 11},
        {"\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac",
         {1, 29871, 30311, 30142, 30142, 30183, 30133, 30136, 30173, 30216}, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_ids(t, cases[i].s, strlen(cases[i].s), true, cases[i].ids, (size_t)cases[i].n);
    /* special tokens only with parse_special; the text after a special token
     * gets the space prefix again (llama.cpp; HF's legacy Prepend normalizer
     * does the same): "x" -> "\u2581x" = 921 */
    size_t n;
    int32_t *ids = enc(t, "<s>x</s>", 8, true, true, &n);
    int32_t want[] = {1, 1, 921, 2};
    CHECK(ids_eq(ids, n, want, 4), "parse_special");
    if (!ids_eq(ids, n, want, 4)) print_ids("got", ids, n);
    free(ids);
    ids = enc(t, "<s>", 3, false, false, &n);
    bool has1 = false;
    for (size_t i = 0; i < n; i++) has1 |= ids[i] == 1;
    CHECK(!has1 && n > 1, "<s> as text without parse_special");
    free(ids);
    /* streaming decode: leading space dropped, byte tokens assembled */
    const char *text = "Hello \xf0\x9f\x98\x80 world\n\xe6\x97\xa5";
    ids = enc(t, text, strlen(text), true, false, &n);
    pg_detok d;
    pg_detok_init(&d);
    char out[4096];
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = pg_detok_push(t, &d, ids[i], out + o, sizeof out - o);
        CHECK(pg_utf8_valid(out + o, k), "chunk %zu not valid UTF-8", i);
        o += k;
    }
    o += pg_detok_flush(&d, out + o, sizeof out - o);
    CHECK(o == strlen(text) && memcmp(out, text, o) == 0, "stream gave \"%.*s\"", (int)o, out);
    free(ids);
    /* byte tokens split across pushes; an invalid byte; a dangling lead byte */
    pg_detok_init(&d);
    o = pg_detok_push(t, &d, 3 + 0xE6, out, sizeof out);
    o += pg_detok_push(t, &d, 3 + 0x97, out + o, sizeof out - o);
    CHECK(o == 0, "incomplete sequence held back (%zu)", o);
    o += pg_detok_push(t, &d, 3 + 0xA5, out + o, sizeof out - o);
    CHECK(o == 3 && memcmp(out, "\xe6\x97\xa5", 3) == 0, "assembled");
    o = pg_detok_push(t, &d, 3 + 0xFF, out, sizeof out);
    CHECK(o == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0, "0xFF -> U+FFFD");
    o = pg_detok_push(t, &d, 3 + 0xE6, out, sizeof out);
    CHECK(o == 0, "held");
    o = pg_detok_flush(&d, out, sizeof out);
    CHECK(o == 3 && memcmp(out, "\xef\xbf\xbd", 3) == 0, "dangling lead byte -> U+FFFD on flush");
    o = pg_detok_push(t, &d, 3 + 0xE6, out, sizeof out);
    o += pg_detok_push(t, &d, 15043, out + o, sizeof out - o); /* "▁Hello" after a broken lead byte */
    CHECK(o == 9 && memcmp(out, "\xef\xbf\xbd Hello", 9) == 0, "lead byte then ASCII: %.*s", (int)o, out);
    /* invalid UTF-8 input goes to byte fallback and round-trips */
    const char bad[] = "a\xff\xc3 b\xe6\x97\xc0\x80";
    ids = enc(t, bad, sizeof bad - 1, false, false, &n);
    size_t dl;
    char *dd = dec(t, ids, n, &dl);
    CHECK(dl == sizeof bad && dd[0] == ' ' && memcmp(dd + 1, bad, sizeof bad - 1) == 0, "invalid input round trip");
    free(dd);
    free(ids);
    pg_tokenizer_free(t);
    gguf_close(&g);
}

static void test_spm_json_mistral(void) {
    const char *p = shared_path("tokenizers/mistral/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    pg_tokenizer *t = load_json(p);
    if (!t) return;
    CHECK(pg_tokenizer_kind(t) == PG_TOK_SPM, "kind");
    CHECK(pg_tokenizer_bos(t) == 1 && pg_tokenizer_eos(t) == 2 && pg_tokenizer_add_bos(t), "bos/eos");
    run_fixture(t, "mistral", true);
    int32_t want[] = {1, 22557};
    check_ids(t, "Hello", 5, true, want, 2);
    pg_tokenizer_free(t);
}

/* ------------------------------------------------------------------ shared behaviour */

static void test_special_and_stream_bpe(void) {
    const char *p = shared_path("tokenizers/qwen3/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    pg_tokenizer *t = load_json(p);
    if (!t) return;
    const char *chat = "<|im_start|>user\nhi<|im_end|><think>";
    size_t n;
    int32_t *ids = enc(t, chat, strlen(chat), false, true, &n);
    CHECK(n >= 5 && ids[0] == 151644 && ids[n - 2] == 151645 && ids[n - 1] == 151667, "chat specials");
    free(ids);
    ids = enc(t, chat, strlen(chat), false, false, &n);
    bool any = false;
    for (size_t i = 0; i < n; i++) any |= ids[i] >= 151643;
    CHECK(!any, "no specials without parse_special");
    size_t dl;
    char *d = dec(t, ids, n, &dl);
    CHECK(dl == strlen(chat) && memcmp(d, chat, dl) == 0, "round trip");
    free(d);
    free(ids);
    CHECK(pg_tokenizer_is_eog(t, 151645) && pg_tokenizer_is_eog(t, 151643), "eog im_end/endoftext");
    CHECK(!pg_tokenizer_is_eog(t, 151644), "im_start not eog");
    CHECK(pg_tokenizer_eos(t) == 151645 && pg_tokenizer_bos(t) == -1 && !pg_tokenizer_add_bos(t),
          "tokenizer_config.json: eos %d bos %d", pg_tokenizer_eos(t), pg_tokenizer_bos(t));
    /* streaming: multi-byte characters split across byte-level tokens */
    const char *text = "na\xc3\xafve \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9d\x95\x8f!";
    ids = enc(t, text, strlen(text), false, false, &n);
    pg_detok dk;
    pg_detok_init(&dk);
    char out[1024];
    size_t o = 0;
    int held = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = pg_detok_push(t, &dk, ids[i], out + o, sizeof out - o);
        CHECK(pg_utf8_valid(out + o, k), "chunk %zu invalid", i);
        if (dk.n_pending) held++;
        o += k;
    }
    o += pg_detok_flush(&dk, out + o, sizeof out - o);
    CHECK(held > 0, "expected some token to end mid-character");
    CHECK(o == strlen(text) && memcmp(out, text, o) == 0, "stream");
    free(ids);
    /* control tokens are not rendered in the stream */
    pg_detok_init(&dk);
    CHECK(pg_detok_push(t, &dk, 151645, out, sizeof out) == 0, "control token rendered");
    /* invalid UTF-8 input: bytes are bytes */
    const char bad[] = "ab\xff\xfe cd \xc3\x28 \xe6\x97 end\xf0";
    ids = enc(t, bad, sizeof bad - 1, false, false, &n);
    d = dec(t, ids, n, &dl);
    CHECK(dl == sizeof bad - 1 && memcmp(d, bad, dl) == 0, "invalid input round trip");
    free(d);
    free(ids);
    pg_tokenizer_free(t);
}

static void test_empty_and_long(void) {
    const char *p = file_exists(DEMO_JSON) ? DEMO_JSON : shared_path("tokenizers/qwen3/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("no byte-level tokenizer.json");
    pg_tokenizer *t = load_json(p);
    if (!t) return;
    size_t n;
    int32_t *ids = enc(t, "", 0, false, true, &n);
    CHECK(n == 0 && ids != NULL, "empty");
    free(ids);
    ids = enc(t, NULL, 0, false, false, &n);
    CHECK(n == 0, "NULL empty");
    free(ids);
    /* 1 MB of one repeated word, and 1 MB of one letter (a single piece) */
    size_t big = 1 << 20;
    char *s = malloc(big + 1);
    for (size_t i = 0; i < big; i++) s[i] = "hello "[i % 6];
    double t0 = pg_time_s();
    ids = enc(t, s, big, false, false, &n);
    double t1 = pg_time_s();
    CHECK(n > 0 && t1 - t0 < 10, "1 MB of words took %.2f s", t1 - t0);
    free(ids);
    memset(s, 'a', big);
    t0 = pg_time_s();
    ids = enc(t, s, big, false, false, &n);
    t1 = pg_time_s();
    CHECK(n > 0 && t1 - t0 < 10, "1 MB single piece took %.2f s", t1 - t0);
    size_t dl;
    char *d = dec(t, ids, n, &dl);
    CHECK(dl == big && memcmp(d, s, big) == 0, "long round trip");
    free(d);
    free(ids);
    free(s);
    pg_tokenizer_free(t);
}

/* Encode speed on the Austen corpus (1 MB; the whole corpus with
 * PREGATE_TOK_BENCH=1). Informational. */
static void test_speed_austen(void) {
    const char *p = shared_path("tokenizers/qwen3/tokenizer.json");
    const char *c = shared_path("corpora/austen_novels.txt");
    if (!file_exists(p) || !file_exists(c)) TEST_SKIP("qwen3 tokenizer or corpus not found");
    pg_tokenizer *t = load_json(p);
    if (!t) return;
    char *buf;
    size_t len;
    pg_error e = {{0}};
    if (pg_read_file(c, &buf, &len, &e) != 0) { CHECK(0, "%s", e.msg); pg_tokenizer_free(t); return; }
    if (!getenv("PREGATE_TOK_BENCH") && len > (1u << 20)) len = 1u << 20;
    double t0 = pg_time_s();
    size_t n;
    int32_t *ids = enc(t, buf, len, false, false, &n);
    double dt = pg_time_s() - t0;
    fprintf(stderr, "  qwen3 encode: %.2f MB in %.3f s = %.2f MB/s, %zu tokens\n", len / 1e6, dt, len / 1e6 / dt, n);
    size_t dl;
    char *d = dec(t, ids, n, &dl);
    CHECK(dl == len && memcmp(d, buf, len) == 0, "corpus round trip");
    free(d);
    free(ids);
    free(buf);
    pg_tokenizer_free(t);
}

/* ------------------------------------------------------------------ hostile files */

static char tmpdir[64];

static const char *write_tmp(const char *name, const char *content) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(content, f);
    fclose(f);
    return path;
}

static void expect_json_error(const char *content, const char *needle) {
    const char *path = write_tmp("tokenizer.json", content);
    pg_error e = {{0}};
    pg_tokenizer *t = pg_tokenizer_from_json(path, &e);
    CHECK(t == NULL, "accepted: %s", content);
    CHECK(strstr(e.msg, path) && strstr(e.msg, needle), "message \"%s\" lacks \"%s\"", e.msg, needle);
    pg_tokenizer_free(t);
}

#define PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

static void test_bad_json(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pg_tokjson_XXXXXX");
    if (!mkdtemp(tmpdir)) TEST_SKIP("mkdtemp failed");
    expect_json_error("{\"model\":", "line");
    expect_json_error("[]", "expected a JSON object");
    expect_json_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model.type");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",5]}}",
                      "model.merges[1]: expected a string or a pair of strings");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                      "model.merges[0]");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-3},\"merges\":[]}}", "model.vocab[\"a\"]");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999},\"merges\":[]}}", "model.vocab");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "used twice");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}", "model.merges");
    expect_json_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "pre_tokenizer.pattern");
    expect_json_error("{" PRE ",\"added_tokens\":[{\"id\":\"x\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "added_tokens[0]");
    expect_json_error("{" PRE ",\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "normalizer.type");
    expect_json_error("{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"BertPreTokenizer\"}]},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "pre_tokenizer.pretokenizers[0].type: unsupported pre-tokenizer 'BertPreTokenizer'");
    expect_json_error("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "pre_tokenizer.behavior: unsupported 'Sideways'");
    expect_json_error("{" PRE ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}]},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "normalizer.normalizers[0].type: unsupported normalizer 'Lowercase'");
    expect_json_error("{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]", "line 1");
    /* a tiny valid one: pairs as arrays, a hole in the ids */
    const char *path = write_tmp("tokenizer.json",
                                 "{" PRE ",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\\u0120\":4,"
                                 "\"\\u0120ab\":5},\"merges\":[[\"a\",\"b\"],\"\\u0120 ab\"]}}");
    pg_error e = {{0}};
    pg_tokenizer *t = pg_tokenizer_from_json(path, &e);
    CHECK(t != NULL, "%s", e.msg);
    if (t) {
        int32_t want[] = {2, 5, 0, 0};
        check_ids(t, "ab abaa", 7, false, want, 4); /* "ab" " ab" "a" "a": b then a does not merge */
        int32_t want2[] = {0};
        check_ids(t, "a\x01", 2, false, want2, 1); /* a byte with no token is dropped (as HF) */
        pg_tokenizer_free(t);
    }
    unlink(path);
    rmdir(tmpdir);
}

static void expect_gguf_error(gguf_writer *w, const char *needle) {
    char path[] = "/tmp/pg_tokgguf_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return;
    close(fd);
    pg_error e = {{0}};
    CHECK(gguf_writer_write(w, path, &e) == 0, "%s", e.msg);
    gguf_file g;
    if (gguf_open(&g, path, NULL, &e) != 0) {
        CHECK(0, "%s", e.msg);
    } else {
        pg_tokenizer *t = pg_tokenizer_from_gguf(&g, &e);
        CHECK(t == NULL, "accepted (want %s)", needle);
        CHECK(strstr(e.msg, path) && strstr(e.msg, needle), "message \"%s\" lacks \"%s\"", e.msg, needle);
        pg_tokenizer_free(t);
        gguf_close(&g);
    }
    gguf_writer_free(w);
    unlink(path);
}

static void test_bad_gguf(void) {
    const char *toks[] = {"a", "b", "ab", "\xc4\xa0"};
    int32_t types[] = {1, 1, 1, 9};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    expect_gguf_error(w, "tokenizer.ggml.model");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "bert");
    expect_gguf_error(w, "tokenizer.ggml.model");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    expect_gguf_error(w, "tokenizer.ggml.tokens");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    expect_gguf_error(w, "tokenizer.ggml.merges");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    const char *m[] = {"a b", "a c"};
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, 2);
    expect_gguf_error(w, "tokenizer.ggml.merges[1]");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", m, 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 4);
    expect_gguf_error(w, "tokenizer.ggml.bos_token_id");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, 4);
    expect_gguf_error(w, "tokenizer.ggml.token_type[3]");
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, 3);
    expect_gguf_error(w, "tokenizer.ggml.token_type");
    float sc[] = {0, 0};
    w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", sc, 2);
    expect_gguf_error(w, "tokenizer.ggml.scores");
}

/* A tiny SentencePiece vocabulary with scores: merge order, ties, fallback. */
static void test_spm_tiny(void) {
    const char *toks[260 + 8] = {"<unk>", "<s>", "</s>"};
    float sc[268] = {0};
    int32_t ty[268] = {2, 3, 3};
    char names[256][8];
    for (int b = 0; b < 256; b++) {
        snprintf(names[b], 8, "<0x%02X>", b);
        toks[3 + b] = names[b];
        ty[3 + b] = 6;
    }
    int n = 259;
    const char *extra[] = {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "c"};
    float esc[] = {-1, -2, -3, -10, -5, -4, -6};
    for (int i = 0; i < 7; i++) { toks[n] = extra[i]; sc[n] = esc[i]; ty[n] = 1; n++; }
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", sc, (uint64_t)n);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", ty, (uint64_t)n);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    char path[] = "/tmp/pg_tokspm_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    pg_error e = {{0}};
    CHECK(gguf_writer_write(w, path, &e) == 0, "%s", e.msg);
    gguf_writer_free(w);
    gguf_file g;
    pg_tokenizer *t = load_gguf(path, &g);
    if (t) {
        /* "▁ab": ▁+a (-10) vs a+b (-5): a b merges first, then ▁+ab (-4) */
        int32_t w1[] = {1, 264};
        check_ids(t, "ab", 2, true, w1, 2);
        /* "▁abc d": c alone; 'd' not in vocab -> <0x64> */
        int32_t w2[] = {264, 265, 259, 3 + 'd'};
        check_ids(t, "abc d", 5, false, w2, 4);
        /* ties: "▁aa": ▁a (-10) twice? only one ▁; a+a not a token */
        int32_t w3[] = {262, 260};
        check_ids(t, "aa", 2, false, w3, 2);
        size_t nn;
        int32_t *ids = enc(t, "\xff", 1, false, false, &nn);
        int32_t w4[] = {259, 3 + 0xff};
        CHECK(ids_eq(ids, nn, w4, 2), "invalid byte fallback");
        free(ids);
        pg_tokenizer_free(t);
        gguf_close(&g);
    }
    unlink(path);
}

/* added_tokens' lstrip / rstrip / single_word, against HF on the qwen3
 * tokenizer with the flags set as tools/make_tokenizer_fixtures.py sets them. */
static void test_added_flags(void) {
    const char *p = shared_path("tokenizers/qwen3/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    CHECK(root != NULL, "%s", je.text);
    if (!root) return;
    json_t *added = json_object_get(root, "added_tokens");
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!strcmp(c, "<think>")) json_object_set_new(a, "lstrip", json_true());
        if (!strcmp(c, "</think>")) json_object_set_new(a, "rstrip", json_true());
        if (!strcmp(c, "<tool_call>")) json_object_set_new(a, "single_word", json_true());
        if (!strcmp(c, "<|im_start|>")) {
            json_object_set_new(a, "lstrip", json_true());
            json_object_set_new(a, "rstrip", json_true());
        }
    }
    char tmp[] = "/tmp/pg_tokflags_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) { json_decref(root); TEST_SKIP("mkstemp"); }
    close(fd);
    CHECK(json_dump_file(root, tmp, JSON_COMPACT) == 0, "dump");
    json_decref(root);
    pg_tokenizer *t = load_json(tmp);
    unlink(tmp);
    if (!t) return;
    char *buf;
    size_t len;
    pg_error e = {{0}};
    if (pg_read_file("tests/fixtures/tokenizer/added_flags.jsonl", &buf, &len, &e) != 0) {
        CHECK(0, "%s", e.msg);
        pg_tokenizer_free(t);
        return;
    }
    int n = 0;
    for (char *q = buf, *nl; q < buf + len; q = nl + 1) {
        nl = memchr(q, '\n', (size_t)(buf + len - q));
        if (!nl) nl = buf + len;
        json_t *o = json_loadb(q, (size_t)(nl - q), 0, &je);
        if (!o) break;
        json_t *jt = json_object_get(o, "text"), *jids = json_object_get(o, "ids");
        size_t nw = json_array_size(jids), nid;
        int32_t want[64];
        for (size_t i = 0; i < nw && i < 64; i++) want[i] = (int32_t)json_integer_value(json_array_get(jids, i));
        int32_t *ids = enc(t, json_string_value(jt), json_string_length(jt), false, true, &nid);
        bool ok = ids_eq(ids, nid, want, nw);
        CHECK(ok, "added flags: \"%s\"", json_string_value(jt));
        if (!ok) { print_ids("got ", ids, nid); print_ids("want", want, nw); }
        free(ids);
        json_decref(o);
        n++;
    }
    CHECK(n >= 20, "added_flags.jsonl: %d lines", n);
    free(buf);
    pg_tokenizer_free(t);
}

/* Split behaviours (MergedWithPrevious/Next, Contiguous, Removed), invert
 * and Digits on the qwen3 vocabulary, against HF (split_variants.jsonl). */
static void test_split_variants(void) {
    const char *p = shared_path("tokenizers/qwen3/tokenizer.json");
    if (!file_exists(p)) TEST_SKIP("%s not found", p);
    json_error_t je;
    json_t *root = json_load_file(p, 0, &je);
    CHECK(root != NULL, "%s", je.text);
    if (!root) return;
    char *buf;
    size_t len;
    pg_error e = {{0}};
    if (pg_read_file("tests/fixtures/tokenizer/split_variants.jsonl", &buf, &len, &e) != 0) {
        CHECK(0, "%s", e.msg);
        json_decref(root);
        return;
    }
    char tmp[] = "/tmp/pg_toksplit_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) close(fd);
    pg_tokenizer *t = NULL;
    int variants = 0, lines = 0, bad = 0;
    for (char *q = buf, *nl; q < buf + len; q = nl + 1) {
        nl = memchr(q, '\n', (size_t)(buf + len - q));
        if (!nl) nl = buf + len;
        json_t *o = json_loadb(q, (size_t)(nl - q), 0, &je);
        if (!o) { CHECK(0, "split_variants.jsonl: %s", je.text); break; }
        json_t *pre = json_object_get(o, "pre_tokenizers");
        if (pre) {
            pg_tokenizer_free(t);
            json_t *seq = json_deep_copy(pre);
            json_array_append_new(seq, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                                 "trim_offsets", 0, "use_regex", 0));
            json_object_set_new(root, "pre_tokenizer", json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", seq));
            CHECK(json_dump_file(root, tmp, JSON_COMPACT) == 0, "dump");
            t = load_json(tmp);
            variants++;
        } else if (t) {
            json_t *jt = json_object_get(o, "text"), *jids = json_object_get(o, "ids");
            size_t nw = json_array_size(jids), nid;
            int32_t *want = malloc((nw + 1) * sizeof *want);
            for (size_t i = 0; i < nw; i++) want[i] = (int32_t)json_integer_value(json_array_get(jids, i));
            int32_t *ids = enc(t, json_string_value(jt), json_string_length(jt), false, true, &nid);
            if (!ids_eq(ids, nid, want, nw) && ++bad <= 5) {
                char *d = json_dumps(pre ? pre : json_null(), 0);
                fprintf(stderr, "  variant %d: \"%.60s\"\n", variants, json_string_value(jt));
                print_ids("got ", ids, nid);
                print_ids("want", want, nw);
                free(d);
            }
            free(ids);
            free(want);
            lines++;
        }
        json_decref(o);
    }
    CHECK(variants >= 10 && lines >= 500, "%d variants, %d strings", variants, lines);
    CHECK(bad == 0, "split variants: %d of %d strings differ", bad, lines);
    pg_tokenizer_free(t);
    unlink(tmp);
    free(buf);
    json_decref(root);
}

/* ------------------------------------------------------------------ pregate tokenize / detokenize */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    pg_error e = {{0}};
    if (pg_read_file(path, &buf, len, &e) != 0) return NULL;
    return buf;
}

/* Lines of `out` (ids) equal the id part of the first n lines of NAME.ids. */
static void compare_ids_lines(const char *out, const char *name, int n) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/tokenizer/%s.ids", name);
    size_t la, lb;
    char *a = slurp(out, &la), *b = slurp(path, &lb);
    CHECK(a && b, "read %s / %s", out, path);
    if (!a || !b) { free(a); free(b); return; }
    char *p = a, *q = b;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char *ea = strchr(p, '\n'), *eb = strchr(q, '\n');
        if (!ea || !eb) { CHECK(0, "%s: only %d lines", out, i); break; }
        char *tb = memchr(q, '\t', (size_t)(eb - q));
        size_t nb = (size_t)((tb ? tb : eb) - q);
        if ((size_t)(ea - p) != nb || memcmp(p, q, nb) != 0) {
            if (++bad <= 3) fprintf(stderr, "  %s line %d: got \"%.*s\" want \"%.*s\"\n", name, i + 1,
                                    (int)(ea - p > 80 ? 80 : ea - p), p, (int)(nb > 80 ? 80 : nb), q);
        }
        p = ea + 1;
        q = eb + 1;
    }
    CHECK(bad == 0, "pregate tokenize --jsonl (%s): %d of %d lines differ", name, bad, n);
    free(a);
    free(b);
}

static void test_cli_tokenize(void) {
    char qdir[1024], mjson[1024], lgguf[1024], austen[1024];
    snprintf(qdir, sizeof qdir, "%s", shared_path("tokenizers/qwen3"));
    snprintf(mjson, sizeof mjson, "%s", shared_path("tokenizers/mistral/tokenizer.json"));
    snprintf(lgguf, sizeof lgguf, "%s", shared_path("models/llama-2-tiny-random.gguf"));
    snprintf(austen, sizeof austen, "%s", shared_path("corpora/austen_novels.txt"));
    if (!file_exists(qdir) || !file_exists(mjson) || !file_exists(austen)) TEST_SKIP("shared tokenizers not found");
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char bin[256];
    snprintf(bin, sizeof bin, "%s/pregate", build);
    if (!file_exists(bin)) TEST_SKIP("%s not built", bin);
    char dir[] = "/tmp/pg_tokcli_XXXXXX";
    if (!mkdtemp(dir)) TEST_SKIP("mkdtemp failed");
    /* --jsonl: the first 600 corpus strings, then a 10 MB line */
    const int N = 600;
    CHECK(sh("head -n %d tests/fixtures/tokenizer/corpus.jsonl > %s/in.jsonl", N, dir) == 0, "head");
    size_t big = 10u << 20;
    char *s = malloc(big + 1);
    size_t al;
    char *at = slurp(austen, &al);
    size_t k = 0;
    for (size_t i = 0; k < big; i = (i + 1) % al) {
        unsigned char c = (unsigned char)at[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') s[k++] = (char)c;
    }
    s[k] = 0;
    char path[256];
    snprintf(path, sizeof path, "%s/in.jsonl", dir);
    FILE *f = fopen(path, "a");
    fputc('"', f);
    fwrite(s, 1, big, f);
    fputs("\"\n", f);
    fclose(f);
    double t0 = pg_time_s();
    int rc = sh("%s tokenize --tokenizer %s --jsonl < %s/in.jsonl > %s/out.txt", bin, qdir, dir, dir);
    double dt = pg_time_s() - t0;
    CHECK(rc == 0, "tokenize --jsonl exit %d", rc);
    snprintf(path, sizeof path, "%s/out.txt", dir);
    compare_ids_lines(path, "qwen3", N);
    fprintf(stderr, "  pregate tokenize --jsonl: %d strings and a 10 MB line in %.2f s\n", N, dt);
    /* the 10 MB line: the library's ids */
    {
        pg_tokenizer *t = load_json(shared_path("tokenizers/qwen3/tokenizer.json"));
        size_t n;
        int32_t *ids = t ? enc(t, s, big, false, true, &n) : NULL;
        size_t ol;
        char *o = slurp(path, &ol);
        char *last = o;
        for (int i = 0; o && i < N; i++) last = strchr(last, '\n') + 1;
        bool ok = o && ids;
        char *q = last;
        for (size_t i = 0; ok && i < n; i++) {
            char *end;
            long v = strtol(q, &end, 10);
            ok = end != q && v == ids[i];
            q = end;
        }
        CHECK(ok && *q == '\n', "10 MB line");
        free(o);
        free(ids);
        pg_tokenizer_free(t);
    }
    /* GGUF tokenizer (llama-2 vocabulary) */
    if (file_exists(lgguf)) {
        rc = sh("head -n %d tests/fixtures/tokenizer/corpus.jsonl | %s tokenize --tokenizer %s --jsonl > %s/out2.txt",
                N, bin, lgguf, dir);
        CHECK(rc == 0, "gguf tokenize exit %d", rc);
        snprintf(path, sizeof path, "%s/out2.txt", dir);
        compare_ids_lines(path, "llama2", N);
    }
    /* whole stdin, with invalid UTF-8: tokenize | detokenize gives the bytes back */
    snprintf(path, sizeof path, "%s/text.bin", dir);
    f = fopen(path, "wb");
    fwrite(at, 1, al < 200000 ? al : 200000, f);
    fputs("\n bad: \xff\xfe \xc3\x28 \xe6\x97 \xed\xa0\x80 end\xf0", f);
    fclose(f);
    const char *paths[] = {qdir, mjson, lgguf};
    for (int i = 0; i < 3; i++) {
        if (!file_exists(paths[i])) continue;
        rc = sh("%s tokenize --tokenizer %s < %s > %s/ids.txt && %s detokenize --tokenizer %s < %s/ids.txt > %s/back.bin"
                " && cmp -s %s %s/back.bin",
                bin, paths[i], path, dir, bin, paths[i], dir, dir, path, dir);
        CHECK(rc == 0, "round trip through the CLI with %s (exit %d)", paths[i], rc);
    }
    /* --add-special: BOS for Mistral, none for Qwen3 */
    CHECK(sh("printf 'Hello' | %s tokenize --tokenizer %s --add-special | grep -qx '1 22557'", bin, mjson) == 0,
          "mistral --add-special");
    CHECK(sh("printf 'Hello' | %s tokenize --tokenizer %s --add-special | grep -qx '9707'", bin, qdir) == 0,
          "qwen3 --add-special");
    /* add_eos_token in tokenizer_config.json */
    CHECK(sh("mkdir -p %s/m && ln -s $(realpath %s) %s/m/tokenizer.json && "
             "printf '{\"add_bos_token\": true, \"add_eos_token\": true}' > %s/m/tokenizer_config.json",
             dir, mjson, dir, dir) == 0, "config dir");
    CHECK(sh("printf 'Hello' | %s tokenize --tokenizer %s/m --add-special | grep -qx '1 22557 2'", bin, dir) == 0,
          "add_eos_token");
    CHECK(sh("printf '<|im_start|>' | %s tokenize --tokenizer %s | grep -qx '151644'", bin, qdir) == 0,
          "special text matched");
    CHECK(sh("printf '<|im_start|>' | %s tokenize --tokenizer %s --literal-special | grep -qvx '151644'", bin, qdir) == 0,
          "--literal-special");
    CHECK(sh("printf '9707 151645\\n' | %s detokenize --tokenizer %s --jsonl | grep -qx '\"Hello<|im_end|>\"'", bin,
             qdir) == 0,
          "detokenize --jsonl");
    CHECK(sh("printf '9707 151645' | %s detokenize --tokenizer %s --skip-special | grep -qx 'Hello'", bin, qdir) == 0,
          "detokenize --skip-special");
    /* errors: one line naming the file / line, non-zero exit */
    CHECK(sh("%s tokenize --tokenizer %s/nope.json < /dev/null 2> %s/err.txt", bin, dir, dir) != 0 &&
              sh("grep -q 'nope.json' %s/err.txt", dir) == 0,
          "missing file");
    CHECK(sh("head -c 5000 %s/tokenizer.json > %s/trunc.json", qdir, dir) == 0, "truncate");
    CHECK(sh("%s tokenize --tokenizer %s/trunc.json < /dev/null 2> %s/err.txt", bin, dir, dir) != 0 &&
              sh("grep -q 'trunc.json: line' %s/err.txt", dir) == 0,
          "truncated tokenizer.json");
    CHECK(sh("printf '\"ok\"\\nnot json\\n' | %s tokenize --tokenizer %s --jsonl > /dev/null 2> %s/err.txt", bin, qdir,
             dir) != 0 &&
              sh("grep -q 'stdin line 2' %s/err.txt", dir) == 0,
          "bad --jsonl line");
    CHECK(sh("printf '1 99999999' | %s detokenize --tokenizer %s > /dev/null 2> %s/err.txt", bin, qdir, dir) != 0 &&
              sh("grep -q 'out of range' %s/err.txt", dir) == 0,
          "detokenize id out of range");
    CHECK(sh("%s tokenize < /dev/null 2> /dev/null", bin) == 2, "usage");
    sh("rm -rf %s", dir);
    free(s);
    free(at);
}

/* Arbitrary bytes into every tokenizer (under the sanitizers in make test
 * SANITIZE=1): no crash, and byte-level BPE gives the bytes back. */
static void test_fuzz_bytes(void) {
    const char *names[] = {"qwen3", "deepseek_v3", "gptoss", "mistral"};
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int ran = 0;
    for (int ti = 0; ti < 4; ti++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", names[ti]);
        const char *p = shared_path(rel);
        if (!file_exists(p)) continue;
        pg_tokenizer *t = load_json(p);
        if (!t) continue;
        ran++;
        char buf[512];
        static const char *const frag[] = {"<|im_start|>", "<s>", "\xe2\x96\x81", " ", "\n", "'s", "\xf0\x9f\x98",
                                           "\xcc\x81", "12", "<|end|>", "\xef\xbd\x9c"};
        int bad = 0;
        for (int it = 0; it < 400; it++) {
            size_t n = 0, want = (size_t)(it % 97) * 5;
            while (n < want && n < sizeof buf - 16) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                if (x % 5 == 0) {
                    const char *fr = frag[(x >> 8) % (sizeof frag / sizeof *frag)];
                    memcpy(buf + n, fr, strlen(fr));
                    n += strlen(fr);
                } else {
                    buf[n++] = (char)(x >> 24);
                }
            }
            size_t nid;
            int32_t *ids = enc(t, buf, n, it & 1, it & 2, &nid);
            if (pg_tokenizer_kind(t) == PG_TOK_BPE && !(it & 2)) {
                size_t dl, skip = (it & 1) && pg_tokenizer_bos(t) >= 0 && pg_tokenizer_add_bos(t);
                char *d = dec(t, ids + skip, nid - skip, &dl);
                /* NFC may change valid text; compare only where it cannot */
                if (strcmp(names[ti], "qwen3") != 0 && !(dl == n && memcmp(d, buf, n) == 0)) bad++;
                free(d);
            }
            for (size_t i = 0; i < nid; i++) CHECK(ids[i] >= 0 && ids[i] < pg_tokenizer_n_vocab(t), "id range");
            free(ids);
        }
        CHECK(bad == 0, "%s: %d random inputs did not round-trip", names[ti], bad);
        pg_tokenizer_free(t);
    }
    if (!ran) TEST_SKIP("no tokenizers");
}

int main(void) {
    TEST_RUN(test_bpe_qwen3_fixture);
    TEST_RUN(test_bpe_demo_fixture);
    TEST_RUN(test_bpe_json_families);
    TEST_RUN(test_bpe_gguf);
    TEST_RUN(test_spm_gguf_llama2);
    TEST_RUN(test_spm_json_mistral);
    TEST_RUN(test_spm_tiny);
    TEST_RUN(test_special_and_stream_bpe);
    TEST_RUN(test_empty_and_long);
    TEST_RUN(test_speed_austen);
    TEST_RUN(test_bad_json);
    TEST_RUN(test_bad_gguf);
    TEST_RUN(test_added_flags);
    TEST_RUN(test_split_variants);
    TEST_RUN(test_cli_tokenize);
    TEST_RUN(test_fuzz_bytes);
    free_corpus();
    return test_summary("test_tokenizer");
}
