/* chat.h - chat templates of the supported model families.
 *
 * A conversation (a list of {role, content}) is rendered into the prompt
 * text that the model's own Jinja template gives with transformers'
 * apply_chat_template(messages, tokenize=False, add_generation_prompt=...),
 * byte for byte, for conversations of system/user/assistant messages (and
 * the tool-output messages of the families that have them). This is not a
 * Jinja interpreter: each family's template is written out in C, and the
 * family is recognised from the template text (GGUF tokenizer.chat_template,
 * tokenizer_config.json chat_template) or, where the model ships none, from
 * the tokenizer's vocabulary.
 *
 * Families:
 *  - chatml:      <|im_start|>role\ncontent<|im_end|>\n (Qwen2/Qwen2.5 and
 *                 unknown templates; Qwen2's and Qwen2.5's default system
 *                 prompt when the template has one)
 *  - qwen3:       ChatML with Qwen3's <think> handling (reasoning kept only
 *                 after the last user query; enable_thinking=false adds an
 *                 empty think block to the generation prompt)
 *  - mistral:     <s> [INST] ... [/INST] answer</s> (Mixtral-8x7B-Instruct /
 *                 Mistral v0.1 template; system prompt joined to the first
 *                 user message; roles must alternate)
 *  - deepseek-v3: <｜begin▁of▁sentence｜>system<｜User｜>...<｜Assistant｜>...
 *  - llama2:      <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s>
 *                 (Llama-2-chat; recognised from the template text only: its
 *                 vocabulary is Mistral's shape)
 *  - llama3:      <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\n
 *                 content<|eot_id|> (Meta-Llama-3-Instruct; the Llama 3.1+
 *                 templates' dated system header is not reproduced: warning)
 *  - gpt-oss:     harmony: <|start|>system<|message|>...<|end|> with the date
 *                 and reasoning effort, the system message as developer
 *                 instructions, assistant answers on the final channel.
 */
#ifndef PG_CHAT_H
#define PG_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "tokenizer.h"
#include "util.h"

typedef enum {
    PG_CHAT_CHATML = 0,
    PG_CHAT_QWEN3,
    PG_CHAT_MISTRAL,
    PG_CHAT_DEEPSEEK_V3,
    PG_CHAT_GPTOSS,
    PG_CHAT_LLAMA2,
    PG_CHAT_LLAMA3,
} pg_chat_family;

typedef struct {
    const char *role;    /* "system", "user", "assistant", "tool", "developer" */
    const char *content;
} pg_chat_msg;

typedef struct {
    pg_chat_family family;
    const char *default_system; /* chatml: system prompt used when none is given (NULL: none) */
} pg_chat_template;

typedef struct {
    bool add_generation_prompt;
    bool disable_thinking;        /* qwen3: enable_thinking=false */
    const char *bos, *eos;        /* token texts; NULL: the family's usual ones */
    const char *date;             /* gpt-oss: "YYYY-MM-DD"; NULL: today (local time) */
    const char *reasoning_effort; /* gpt-oss: NULL = "medium" */
} pg_chat_opts;

const char *pg_chat_family_name(pg_chat_family f);
/* "chatml", "qwen3", "mistral", "deepseek-v3", "gpt-oss", "llama2", "llama3"; -1
 * when unknown. */
int pg_chat_family_from_name(const char *name);

/* Recognises the family from a Jinja template's text. Returns false (and
 * ChatML) when the text matches none of the families. */
bool pg_chat_detect(const char *template_text, pg_chat_template *out);

/* The template of a tokenizer: its chat template text when it has one (see
 * pg_tokenizer_chat_template), else the vocabulary's family tokens. Unknown:
 * ChatML, with a one-line warning on stderr naming `where` (may be NULL). */
pg_chat_template pg_chat_for_tokenizer(const pg_tokenizer *t, const char *where);

/* Whether the family's template writes the BOS token text itself (then the
 * rendered prompt is tokenized without adding BOS). */
bool pg_chat_writes_bos(const pg_chat_template *tpl);

/* Renders msgs[0..n) (heap string, caller frees), or NULL with e set (no
 * messages; roles a template refuses, as its raise_exception would). */
char *pg_chat_render(const pg_chat_template *tpl, const pg_chat_msg *msgs, size_t n, const pg_chat_opts *o,
                     pg_error *e);

#endif
