/* fuzz_openai.c - libFuzzer target: the server's request parser
 * (pg_openai_parse_request) on arbitrary bodies, and, for what it accepts,
 * the reply builders and the stop-sequence scan on the parsed strings.
 *
 * Input: byte 0 selects the endpoint (bit 0: chat, else completions); the
 * rest is the request body as received. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    pg_oai_kind kind = (data[0] & 1) ? PG_OAI_CHAT : PG_OAI_COMPLETION;
    pg_oai_request r;
    pg_error e;
    if (pg_openai_parse_request((const char *)data + 1, size - 1, kind, &r, &e)) {
        pg_oai_request_free(&r);
        free(pg_openai_error_json(e.msg, "invalid_request_error"));
        return 0;
    }
    /* what the server would echo: message contents or the prompt, as text */
    const char *text = r.prompt ? r.prompt : r.n_messages ? r.messages[r.n_messages - 1].content : "";
    size_t len = r.prompt ? r.prompt_len : strlen(text);
    pg_oai_meta meta = {kind, "id", 1, r.model ? r.model : "m"};
    pg_oai_usage u = {(int)r.n_prompt_ids, (int)len};
    size_t safe;
    long at = pg_stop_scan(text, len, 0, r.stop, r.n_stop, &safe);
    if (at >= 0 && (size_t)at > len) abort();
    if (safe > len) abort();
    free(pg_openai_response_json(&meta, text, safe, "stop", &u, r.prompt_ids, (int)r.n_prompt_ids, NULL, 0));
    free(pg_openai_chunk_json(&meta, text, len, true, NULL));
    pg_oai_request_free(&r);
    return 0;
}
