/* fuzz_chat.c - libFuzzer target: chat-template rendering of arbitrary
 * conversations, for every family, and family detection on arbitrary
 * template text.
 *
 * Input: byte 0 selects options (generation prompt, thinking, reasoning
 * effort, custom bos/eos); the rest is split at 0x01 bytes into fields taken
 * as role, content, role, content, ... A role field of one byte names a
 * standard role (byte % 6); a longer one is used as the role text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define MAX_MSGS 64

static const char *const roles[] = {"system", "user", "assistant", "tool", "developer", "ipython"};
static const char *const efforts[] = {NULL, "low", "medium", "high"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t flags = data[0];
    /* one NUL-terminated copy; fields become its 0x01-separated pieces */
    char *buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    size_t len = size - 1;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == 0) buf[i] = ' '; /* C strings: no NULs inside a field */

    pg_chat_msg msgs[MAX_MSGS];
    size_t n = 0;
    char *p = buf;
    while (n < MAX_MSGS) {
        char *role = p, *sep = strchr(p, 1);
        if (sep) *sep = 0;
        const char *r = strlen(role) == 1 ? roles[(unsigned char)role[0] % 6] : role;
        char *content = "";
        if (sep) {
            content = sep + 1;
            char *sep2 = strchr(content, 1);
            if (sep2) *sep2 = 0;
            msgs[n].role = r;
            msgs[n].content = content;
            n++;
            if (!sep2) break;
            p = sep2 + 1;
        } else {
            msgs[n].role = r;
            msgs[n].content = content;
            n++;
            break;
        }
    }

    pg_chat_opts o = {0};
    o.add_generation_prompt = flags & 1;
    o.disable_thinking = (flags >> 1) & 1;
    o.reasoning_effort = efforts[(flags >> 2) & 3];
    o.date = "2025-06-01";
    if (flags & 16) { o.bos = "<s>"; o.eos = "</s>"; }
    for (int f = PG_CHAT_CHATML; f <= PG_CHAT_LLAMA3; f++) {
        pg_chat_template tpl = {.family = (pg_chat_family)f,
                                .default_system = (flags & 32) ? "You are a helpful assistant." : NULL};
        pg_error e;
        char *out = pg_chat_render(&tpl, msgs, n, &o, &e);
        free(out);
        (void)pg_chat_writes_bos(&tpl);
        if (pg_chat_family_from_name(pg_chat_family_name((pg_chat_family)f)) != f) abort();
    }
    /* the whole input as a template text */
    char *tt = malloc(size);
    memcpy(tt, data + 1, size - 1);
    tt[size - 1] = 0;
    pg_chat_template det;
    (void)pg_chat_detect(tt, &det);
    (void)pg_chat_family_from_name(tt);
    free(tt);
    free(buf);
    return 0;
}
