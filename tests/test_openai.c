/* test_openai.c - the OpenAI request parser (every refusal has a message
 * and leaves nothing allocated), the reply shapes, and the stop-sequence
 * scan that decides how much generated text may be sent. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "server/openai.h"
#include "test.h"

static int parse_(const char *body, pg_oai_kind kind, pg_oai_request *r, pg_error *e) {
    return pg_openai_parse_request(body, strlen(body), kind, r, e);
}

static void test_parse_ok(void) {
    pg_oai_request r;
    pg_error e = {{0}};
    CHECK(parse_("{\"model\":\"x\",\"prompt\":\"Hi\"}", PG_OAI_COMPLETION, &r, &e) == 0, "%s", e.msg);
    CHECK(r.prompt && !strcmp(r.prompt, "Hi") && r.prompt_len == 2, "prompt");
    CHECK(r.max_tokens == -1 && r.temperature == 1.0 && r.top_p == 1.0 && !r.stream && !r.has_seed, "defaults");
    CHECK(r.model && !strcmp(r.model, "x"), "model");
    pg_oai_request_free(&r);

    CHECK(parse_("{\"prompt\":[\"one\"],\"max_tokens\":5,\"temperature\":0,\"top_p\":0.5,\"seed\":-3,"
                 "\"stop\":[\"\\n\",\"\",\"END\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                 "\"n\":1,\"top_k\":40,\"min_p\":0.1,\"ignore_eos\":true,\"return_token_ids\":true,\"logprobs\":null,"
                 "\"unknown\":{\"a\":[1]}}",
                 PG_OAI_COMPLETION, &r, &e) == 0,
          "%s", e.msg);
    CHECK(!strcmp(r.prompt, "one") && r.max_tokens == 5 && r.temperature == 0 && r.top_p == 0.5, "values");
    CHECK(r.has_seed && r.seed == (uint64_t)-3, "negative seed kept as 64 bits");
    CHECK(r.n_stop == 2 && !strcmp(r.stop[0], "\n") && !strcmp(r.stop[1], "END"), "stop: empty one dropped");
    CHECK(r.stream && r.include_usage && r.top_k == 40 && r.ignore_eos && r.return_token_ids, "flags");
    pg_oai_request_free(&r);

    CHECK(parse_("{\"prompt\":[1,2,3],\"stop\":\"x\"}", PG_OAI_COMPLETION, &r, &e) == 0, "%s", e.msg);
    CHECK(r.n_prompt_ids == 3 && r.prompt_ids[2] == 3 && !r.prompt && r.n_stop == 1, "token prompt");
    pg_oai_request_free(&r);

    CHECK(parse_("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":"
                 "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
                 "{\"role\":\"assistant\",\"content\":null}],\"max_completion_tokens\":7}",
                 PG_OAI_CHAT, &r, &e) == 0,
          "%s", e.msg);
    CHECK(r.n_messages == 3 && !strcmp(r.messages[1].content, "ab") && !strcmp(r.messages[2].content, "") &&
              !strcmp(r.messages[0].role, "system") && r.max_tokens == 7,
          "messages");
    pg_oai_request_free(&r);
    pg_oai_request_free(NULL);
}

static void test_parse_refusals(void) {
    static const struct { pg_oai_kind kind; const char *body, *expect; } cases[] = {
        {PG_OAI_COMPLETION, "", "not valid JSON"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\"", "not valid JSON"},
        {PG_OAI_COMPLETION, "[1,2]", "JSON object"},
        {PG_OAI_COMPLETION, "{}", "'prompt' is required"},
        {PG_OAI_COMPLETION, "{\"prompt\":5}", "'prompt' must be"},
        {PG_OAI_COMPLETION, "{\"prompt\":[]}", "'prompt' must be"},
        {PG_OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "one prompt"},
        {PG_OAI_COMPLETION, "{\"prompt\":[1,-2]}", "token id"},
        {PG_OAI_COMPLETION, "{\"prompt\":[1,\"a\"]}", "token id"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"prompt\":\"b\"}", "not valid JSON"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", "not valid JSON"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", "'max_tokens'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":\"5\"}", "'max_tokens' must be an integer"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":1.5}", "'max_tokens' must be an integer"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"n\":2}", "'n' must be 1"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"n\":0}", "'n'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"temperature\":-1}", "'temperature'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"temperature\":\"hot\"}", "'temperature' must be a number"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"top_p\":0}", "'top_p'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"stream\":1}", "'stream' must be a boolean"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":[]}", "'stream_options'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "at most 4"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[1]}", "'stop'"},
        {PG_OAI_COMPLETION, "{\"prompt\":\"a\",\"model\":3}", "'model'"},
        {PG_OAI_CHAT, "{\"prompt\":\"a\"}", "'messages' is required"},
        {PG_OAI_CHAT, "{\"messages\":{}}", "'messages' must be an array"},
        {PG_OAI_CHAT, "{\"messages\":[]}", "must not be empty"},
        {PG_OAI_CHAT, "{\"messages\":[\"hi\"]}", "messages[0] must be an object"},
        {PG_OAI_CHAT, "{\"messages\":[{\"content\":\"hi\"}]}", "role"},
        {PG_OAI_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "'wizard'"},
        {PG_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "content"},
        {PG_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
                      "[{\"type\":\"image_url\",\"image_url\":{}}]}]}", "only text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pg_oai_request r;
        pg_error e = {{0}};
        int rc = parse_(cases[i].body, cases[i].kind, &r, &e);
        CHECK(rc != 0 && strstr(e.msg, cases[i].expect), "case %zu (%s): rc %d, message '%s', expected '%s'", i,
              cases[i].body, rc, e.msg, cases[i].expect);
        CHECK(!r.messages && !r.prompt && !r.prompt_ids && r.n_stop == 0 && !r.model, "case %zu: left state", i);
        pg_oai_request_free(&r);
    }
}

static json_t *load_(char *s) {
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    return j;
}

static void test_replies(void) {
    pg_oai_meta chat = {PG_OAI_CHAT, "chatcmpl-1", 1700000000, "demo"}, cmpl = {PG_OAI_COMPLETION, "cmpl-1", 1, "demo"};
    pg_oai_usage u = {3, 4};
    int32_t ids[2] = {5, 6};
    json_t *j = load_(pg_openai_response_json(&chat, "hi \"there\"", 10, "stop", &u, NULL, 0, NULL, 0));
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "object")), "chat.completion"), "chat object");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "hi \"there\""),
          "content escaped and back");
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"), "finish");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")) == 7, "usage");
    CHECK(!json_object_get(j, "prompt_token_ids") && !json_object_get(ch, "token_ids"), "no ids unless asked");
    json_decref(j);
    j = load_(pg_openai_response_json(&cmpl, "x", 1, "length", &u, ids, 2, ids, 1));
    ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(ch, "text")), "x") &&
              json_array_size(json_object_get(ch, "token_ids")) == 1 &&
              json_array_size(json_object_get(j, "prompt_token_ids")) == 2,
          "completion with ids");
    json_decref(j);
    j = load_(pg_openai_chunk_json(&chat, "", 0, true, NULL));
    json_t *delta = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "delta");
    CHECK(!strcmp(json_string_value(json_object_get(delta, "role")), "assistant"), "first delta has the role");
    json_decref(j);
    j = load_(pg_openai_chunk_json(&chat, "", 0, false, "length"));
    ch = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(json_object_size(json_object_get(ch, "delta")) == 0 &&
              !strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length"),
          "last delta empty");
    json_decref(j);
    j = load_(pg_openai_usage_chunk_json(&chat, &u));
    CHECK(json_array_size(json_object_get(j, "choices")) == 0 && json_object_get(j, "usage"), "usage chunk");
    json_decref(j);
    /* invalid UTF-8 never makes an invalid reply */
    j = load_(pg_openai_chunk_json(&cmpl, "\xff\xfe", 2, false, NULL));
    CHECK(j != NULL, "invalid UTF-8 replaced");
    json_decref(j);
    j = load_(pg_openai_error_json("bad \"thing\"", "invalid_request_error"));
    json_t *err = json_object_get(j, "error");
    CHECK(err && !strcmp(json_string_value(json_object_get(err, "message")), "bad \"thing\"") &&
              json_is_null(json_object_get(err, "param")),
          "error shape");
    json_decref(j);
    const char *names[2] = {"demo-moe.gguf", "alias"};
    j = load_(pg_openai_models_json(names, 2, 5));
    CHECK(json_array_size(json_object_get(j, "data")) == 2 &&
              !strcmp(json_string_value(json_object_get(json_array_get(json_object_get(j, "data"), 1), "id")), "alias"),
          "models");
    json_decref(j);
}

static void test_stop_scan(void) {
    char *stops[] = {"END", "\n\n"};
    size_t safe;
    const char *t = "hello E";
    CHECK(pg_stop_scan(t, strlen(t), 0, stops, 2, &safe) == -1 && safe == 6, "'E' held back: safe %zu", safe);
    t = "hello EN";
    CHECK(pg_stop_scan(t, strlen(t), 6, stops, 2, &safe) == -1 && safe == 6, "'EN' held back: safe %zu", safe);
    t = "hello ENX";
    CHECK(pg_stop_scan(t, strlen(t), 6, stops, 2, &safe) == -1 && safe == 9, "released: safe %zu", safe);
    t = "hello END and more END";
    CHECK(pg_stop_scan(t, strlen(t), 0, stops, 2, &safe) == 6 && safe == 6, "first match");
    t = "a\n\nb END";
    CHECK(pg_stop_scan(t, strlen(t), 0, stops, 2, &safe) == 1 && safe == 1, "earliest of several stops");
    t = "no stops";
    CHECK(pg_stop_scan(t, strlen(t), 0, NULL, 0, &safe) == -1 && safe == strlen(t), "none given");
    t = "ab\n";
    CHECK(pg_stop_scan(t, strlen(t), 0, stops, 2, &safe) == -1 && safe == 2, "newline held back");
    /* streamed a byte at a time, the sent text never contains a stop, and
     * what is sent before the stop is the text up to it */
    const char *full = "It was END of it";
    size_t sent = 0;
    long m = -1;
    for (size_t n = 1; n <= strlen(full) && m < 0; n++) {
        m = pg_stop_scan(full, n, sent, stops, 2, &safe);
        CHECK(safe >= sent, "never goes back");
        sent = safe;
    }
    CHECK(m == 7 && sent == 7, "stream cut at the stop: match %ld, sent %zu", m, sent);
}

int main(void) {
    TEST_RUN(test_parse_ok);
    TEST_RUN(test_parse_refusals);
    TEST_RUN(test_replies);
    TEST_RUN(test_stop_scan);
    return test_summary("test_openai");
}
