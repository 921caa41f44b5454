/* test_chat.c - chat templates against transformers' apply_chat_template
 * (tools/make_tokenizer_fixtures.py -> tests/fixtures/chat/NAME.jsonl), and
 * the recognition of the family from template text and tokenizers. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "test.h"

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

static const char *shared_path(const char *rel) {
    static char buf[4][1024];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 1024, "%s/%s", test_shared_data(), rel);
    return b;
}

/* Renders every conversation of the fixture and compares byte for byte. */
static void run_chat_fixture(const char *name, pg_chat_family fam) {
    char path[256], *buf, rel[128];
    snprintf(rel, sizeof rel, "tokenizers/%s", name);
    pg_tokenizer *tok = NULL;
    if (file_exists(shared_path(rel))) {
        pg_error te = {{0}};
        tok = pg_tokenizer_from_path(shared_path(rel), &te);
        CHECK(tok != NULL, "%s", te.msg);
    }
    int bad_ids = 0;
    size_t len;
    pg_error e = {{0}};
    snprintf(path, sizeof path, "tests/fixtures/chat/%s.jsonl", name);
    if (pg_read_file(path, &buf, &len, &e) != 0) { CHECK(0, "%s", e.msg); return; }
    pg_chat_template tpl = {fam, NULL};
    int lines = 0, bad = 0, with_sys = 0, multi = 0, agp = 0;
    for (char *p = buf; p < buf + len;) {
        char *nl = memchr(p, '\n', (size_t)(buf + len - p));
        if (!nl) nl = buf + len;
        json_error_t je;
        json_t *o = json_loadb(p, (size_t)(nl - p), 0, &je);
        p = nl + 1;
        if (!o) { CHECK(0, "%s line %d: %s", path, lines + 1, je.text); break; }
        json_t *jm = json_object_get(o, "messages");
        size_t n = json_array_size(jm);
        pg_chat_msg *m = calloc(n + 1, sizeof *m);
        int users = 0;
        for (size_t i = 0; i < n; i++) {
            m[i].role = json_string_value(json_object_get(json_array_get(jm, i), "role"));
            m[i].content = json_string_value(json_object_get(json_array_get(jm, i), "content"));
            users += strcmp(m[i].role, "user") == 0;
            if (strcmp(m[i].role, "system") == 0 && i == 0) with_sys++;
        }
        multi += users > 1;
        pg_chat_opts opts = {0};
        opts.add_generation_prompt = json_is_true(json_object_get(o, "add_generation_prompt"));
        agp += opts.add_generation_prompt;
        opts.disable_thinking = json_is_false(json_object_get(o, "enable_thinking"));
        opts.date = json_string_value(json_object_get(o, "date"));
        const char *want = json_string_value(json_object_get(o, "text"));
        char *got = pg_chat_render(&tpl, m, n, &opts, &e);
        CHECK(got != NULL, "%s line %d: %s", name, lines + 1, e.msg);
        if (got && strcmp(got, want) != 0) {
            bad++;
            fprintf(stderr, "  %s line %d:\n  got  %s\n  want %s\n", name, lines + 1, got, want);
        }
        /* the prompt's ids: apply_chat_template(tokenize=True), i.e. the text
         * encoded without adding BOS, special-token text matched */
        json_t *jids = json_object_get(o, "ids");
        if (tok && got && jids) {
            int32_t *ids;
            size_t nid, nw = json_array_size(jids);
            CHECK(pg_tokenize(tok, got, strlen(got), false, true, &ids, &nid, &e) == 0, "%s", e.msg);
            bool same = nid == nw;
            for (size_t i = 0; same && i < nw; i++) same = ids[i] == (int32_t)json_integer_value(json_array_get(jids, i));
            if (!same && ++bad_ids <= 2) {
                fprintf(stderr, "  %s line %d ids differ:", name, lines + 1);
                for (size_t i = 0; i < nid && i < 24; i++) fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  want:");
                for (size_t i = 0; i < nw && i < 24; i++) fprintf(stderr, " %d", (int)json_integer_value(json_array_get(jids, i)));
                fprintf(stderr, "\n");
            }
            free(ids);
        }
        free(got);
        free(m);
        json_decref(o);
        lines++;
    }
    CHECK(bad == 0, "%s: %d of %d conversations differ", name, bad, lines);
    CHECK(bad_ids == 0, "%s: %d of %d prompts tokenize differently", name, bad_ids, lines);
    pg_tokenizer_free(tok);
    CHECK(lines >= 8 && with_sys > 0 && multi > 0, "%s: coverage (%d lines, %d with system, %d multi-turn)", name,
          lines, with_sys, multi);
    fprintf(stderr, "  %s: %d conversations (%d with a system prompt, %d multi-turn, %d with generation prompt), %d differ\n",
            name, lines, with_sys, multi, agp, bad);
    free(buf);
}

static void test_fixtures(void) {
    run_chat_fixture("qwen3", PG_CHAT_QWEN3);
    run_chat_fixture("deepseek_v3", PG_CHAT_DEEPSEEK_V3);
    run_chat_fixture("gptoss", PG_CHAT_GPTOSS);
    run_chat_fixture("mistral", PG_CHAT_MISTRAL);
    run_chat_fixture("llama2", PG_CHAT_LLAMA2);
    run_chat_fixture("llama3", PG_CHAT_LLAMA3);
}

/* The shipped tokenizers: the family from their template or vocabulary. */
static void test_detect_tokenizers(void) {
    struct { const char *name; pg_chat_family fam; bool has_template; } cases[] = {
        {"qwen3", PG_CHAT_QWEN3, true},
        {"deepseek_v3", PG_CHAT_DEEPSEEK_V3, true},
        {"gptoss", PG_CHAT_GPTOSS, false},
        {"mistral", PG_CHAT_MISTRAL, false},
    };
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tokenizers/%s", cases[i].name);
        const char *dir = shared_path(rel);
        if (!file_exists(dir)) continue;
        pg_error e = {{0}};
        pg_tokenizer *t = pg_tokenizer_from_path(dir, &e);
        CHECK(t != NULL, "%s", e.msg);
        if (!t) continue;
        CHECK((pg_tokenizer_chat_template(t) != NULL) == cases[i].has_template, "%s: template", cases[i].name);
        pg_chat_template tpl = pg_chat_for_tokenizer(t, cases[i].name);
        CHECK(tpl.family == cases[i].fam, "%s: family %s", cases[i].name, pg_chat_family_name(tpl.family));
        pg_tokenizer_free(t);
        ran++;
    }
    if (!ran) TEST_SKIP("no tokenizers in %s", shared_path("tokenizers"));
}

static void test_detect_text(void) {
    pg_chat_template t;
    CHECK(pg_chat_detect("{% for m in messages %}{{'<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n'}}"
                         "{% endfor %}",
                         &t) && t.family == PG_CHAT_CHATML && !t.default_system,
          "plain chatml");
    CHECK(pg_chat_detect("{{'<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                         "assistant.<|im_end|>\\n'}}",
                         &t) && t.family == PG_CHAT_CHATML && t.default_system &&
              strstr(t.default_system, "Qwen"),
          "qwen2.5 default system");
    CHECK(pg_chat_detect("<|im_start|>{{ '<think>' }}", &t) && t.family == PG_CHAT_QWEN3, "qwen3");
    CHECK(pg_chat_detect("{{ bos_token }}{% for m in messages %}{{ ' [INST] ' + m['content'] + ' [/INST]' }}",
                         &t) && t.family == PG_CHAT_MISTRAL,
          "mistral");
    CHECK(pg_chat_detect("{{'<\xef\xbd\x9cUser\xef\xbd\x9c>' + c}}{{'<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>'}}", &t) &&
              t.family == PG_CHAT_DEEPSEEK_V3,
          "deepseek");
    CHECK(pg_chat_detect("<|start|>assistant<|channel|>final<|message|>", &t) && t.family == PG_CHAT_GPTOSS, "gpt-oss");
    CHECK(pg_chat_detect("{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}", &t) && t.family == PG_CHAT_LLAMA2, "llama2");
    CHECK(pg_chat_detect("{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}{{ '<|eot_id|>' }}", &t) &&
              t.family == PG_CHAT_LLAMA3,
          "llama3");
    CHECK(!pg_chat_detect("{{ '<start_of_turn>user\\n' }}", &t) && t.family == PG_CHAT_CHATML, "unknown -> chatml");
    CHECK(!pg_chat_detect("", &t) && !pg_chat_detect(NULL, &t), "empty");
    for (int f = 0; f <= PG_CHAT_LLAMA3; f++)
        CHECK(pg_chat_family_from_name(pg_chat_family_name((pg_chat_family)f)) == f, "name %d", f);
    CHECK(pg_chat_family_from_name("jinja") == -1, "unknown name");
}

static void test_bad_conversations(void) {
    pg_error e = {{0}};
    pg_chat_template tpl = {PG_CHAT_MISTRAL, NULL};
    pg_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    char *s = pg_chat_render(&tpl, two_users, 2, NULL, &e);
    CHECK(!s && strstr(e.msg, "alternate"), "mistral alternation: %s", e.msg);
    free(s);
    pg_chat_msg tool[] = {{"user", "a"}, {"tool", "b"}};
    s = pg_chat_render(&tpl, tool, 2, NULL, &e);
    CHECK(!s, "mistral tool role");
    free(s);
    tpl.family = PG_CHAT_QWEN3;
    s = pg_chat_render(&tpl, tool, 0, NULL, &e);
    CHECK(!s && strstr(e.msg, "no messages"), "no messages");
    free(s);
    pg_chat_msg nul[] = {{"user", NULL}};
    s = pg_chat_render(&tpl, nul, 1, NULL, &e);
    CHECK(!s, "NULL content");
    free(s);
    /* qwen3 tool responses are grouped into one user turn */
    pg_chat_msg tools[] = {{"user", "q"}, {"assistant", "x"}, {"tool", "r1"}, {"tool", "r2"}};
    pg_chat_opts o = {.add_generation_prompt = true};
    s = pg_chat_render(&tpl, tools, 4, &o, &e);
    CHECK(s && strcmp(s, "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n<|im_start|>user\n"
                         "<tool_response>\nr1\n</tool_response>\n<tool_response>\nr2\n</tool_response><|im_end|>\n"
                         "<|im_start|>assistant\n") == 0,
          "qwen3 tools: %s", s ? s : e.msg);
    free(s);
    tpl.family = PG_CHAT_GPTOSS;
    s = pg_chat_render(&tpl, tool, 2, NULL, &e);
    CHECK(!s, "gpt-oss tool without call");
    free(s);
}

/* tokenizer.chat_template in GGUF metadata picks the family. */
static void test_detect_gguf(void) {
    const char *toks[] = {"a", "b", "ab", "<|im_start|>", "<|im_end|>"};
    const char *merges[] = {"a b"};
    const char *tpls[] = {"{{ bos_token }}{% for m in messages %}{{ ' [INST] ' + m['content'] + ' [/INST]' }}{% endfor %}",
                          "{{'<|im_start|>' + m.role}}{{'<think>'}}", "{{ '<start_of_turn>' }}", NULL};
    pg_chat_family want[] = {PG_CHAT_MISTRAL, PG_CHAT_QWEN3, PG_CHAT_CHATML, PG_CHAT_CHATML};
    for (int i = 0; i < 4; i++) {
        gguf_writer *w = gguf_writer_new();
        gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
        gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
        if (tpls[i]) gguf_writer_set_str(w, "tokenizer.chat_template", tpls[i]);
        char path[] = "/tmp/pg_chatgguf_XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0) { gguf_writer_free(w); TEST_SKIP("mkstemp"); }
        close(fd);
        pg_error e = {{0}};
        CHECK(gguf_writer_write(w, path, &e) == 0, "%s", e.msg);
        gguf_writer_free(w);
        pg_tokenizer *t = pg_tokenizer_from_path(path, &e);
        CHECK(t != NULL, "%s", e.msg);
        if (t) {
            CHECK(tpls[i] ? pg_tokenizer_chat_template(t) && !strcmp(pg_tokenizer_chat_template(t), tpls[i])
                          : !pg_tokenizer_chat_template(t),
                  "template %d kept", i);
            pg_chat_template tpl = pg_chat_for_tokenizer(t, path);
            CHECK(tpl.family == want[i], "gguf template %d: %s", i, pg_chat_family_name(tpl.family));
            pg_tokenizer_free(t);
        }
        unlink(path);
    }
}

/* pregate run --chat: two turns on stdin, answers on stdout (a random-weight
 * Llama-2-shaped model: Mistral [INST] template from its vocabulary). */
static void test_run_chat(void) {
    const char *model = shared_path("models/llama-2-tiny-random.gguf");
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char bin[256], cmd[2048], err[] = "/tmp/pg_chat_err_XXXXXX";
    snprintf(bin, sizeof bin, "%s/pregate", build);
    if (!file_exists(model) || !file_exists(bin)) TEST_SKIP("model or %s missing", bin);
    int fd = mkstemp(err);
    if (fd < 0) TEST_SKIP("mkstemp");
    close(fd);
    snprintf(cmd, sizeof cmd,
             "printf 'Hello there\\nAnd again\\n' | %s run -m %s --chat -sys 'Be brief.' -n 6 --temp 0 -t 1 2>%s",
             bin, model, err);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL, "popen");
    if (!f) return;
    char line[4096];
    int lines = 0;
    while (fgets(line, sizeof line, f)) lines += strchr(line, '\n') != NULL;
    int st = pclose(f);
    CHECK(st == 0, "run --chat exit status %d", st);
    CHECK(lines >= 2, "run --chat: %d answer lines", lines);
    FILE *ef = fopen(err, "r");
    bool saw = false;
    while (ef && fgets(line, sizeof line, ef)) saw |= strstr(line, "chat template: mistral") != NULL;
    if (ef) fclose(ef);
    CHECK(saw, "template named on stderr");
    unlink(err);
}

int main(void) {
    TEST_RUN(test_fixtures);
    TEST_RUN(test_detect_text);
    TEST_RUN(test_detect_tokenizers);
    TEST_RUN(test_bad_conversations);
    TEST_RUN(test_detect_gguf);
    TEST_RUN(test_run_chat);
    return test_summary("test_chat");
}
