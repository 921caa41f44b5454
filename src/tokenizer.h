/* tokenizer.h - text <-> token ids.
 *
 * Two model kinds:
 *  - byte-level BPE (GPT-2 style: Qwen, DeepSeek, gpt-oss, Llama-3): text is
 *    split by the pre-tokenizer regex (PCRE2), each piece mapped byte by
 *    byte to the GPT-2 byte-to-unicode alphabet, then merged by merge rank.
 *  - SentencePiece BPE (Llama-2, Mistral): spaces become U+2581, a space is
 *    prepended, symbols merged by score; unknown characters fall back to
 *    <0xNN> byte tokens.
 * Loaded from GGUF metadata (tokenizer.ggml.*) or a Hugging Face
 * tokenizer.json. Special (control) tokens written literally in the text are
 * matched only when `parse_special` is set.
 */
#ifndef PG_TOKENIZER_H
#define PG_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "util.h"

typedef struct pg_tokenizer pg_tokenizer;

typedef enum { PG_TOK_BPE = 0, PG_TOK_SPM = 1 } pg_tok_kind;

pg_tokenizer *pg_tokenizer_from_gguf(const gguf_file *g, pg_error *e);
/* path: a tokenizer.json file. */
pg_tokenizer *pg_tokenizer_from_json(const char *path, pg_error *e);
/* path: a tokenizer.json, a Hugging Face directory holding one, or a GGUF
 * file (by its magic). */
pg_tokenizer *pg_tokenizer_from_path(const char *path, pg_error *e);
void pg_tokenizer_free(pg_tokenizer *t); /* NULL-safe */

/* The id of the token spelled s[0..n) in the vocabulary (its stored form:
 * byte-level alphabet, U+2581 for spaces), or -1. */
int32_t pg_tokenizer_find(const pg_tokenizer *t, const char *s, size_t n);
/* The chat template's Jinja text (GGUF tokenizer.chat_template, or
 * tokenizer_config.json's chat_template: the string, or the "default" entry
 * of a list), or NULL. */
const char *pg_tokenizer_chat_template(const pg_tokenizer *t);
/* True for control (special) tokens: BOS, EOS, <|im_start|>, ... */
bool pg_tokenizer_is_control(const pg_tokenizer *t, int32_t id);
/* The text of a token (as written in the vocabulary), or "" when out of range. */
const char *pg_tokenizer_token_text(const pg_tokenizer *t, int32_t id);

pg_tok_kind pg_tokenizer_kind(const pg_tokenizer *t);
int pg_tokenizer_n_vocab(const pg_tokenizer *t);
int pg_tokenizer_bos(const pg_tokenizer *t); /* -1 if none */
int pg_tokenizer_eos(const pg_tokenizer *t); /* -1 if none */
bool pg_tokenizer_add_bos(const pg_tokenizer *t); /* file's add_bos_token */
bool pg_tokenizer_add_eos(const pg_tokenizer *t); /* file's add_eos_token (and an EOS exists) */
/* True for end-of-generation tokens (eos, eot, <|im_end|>, ...). */
bool pg_tokenizer_is_eog(const pg_tokenizer *t, int32_t id);

/* Encodes len bytes of text (any bytes; invalid UTF-8 is handled, never a
 * crash). add_bos prepends BOS when the tokenizer has one. parse_special
 * matches control/added tokens written in the text. *ids is heap-allocated
 * (caller frees). Returns 0, or -1 with e set. */
int pg_tokenize(const pg_tokenizer *t, const char *text, size_t len, bool add_bos,
                bool parse_special, int32_t **ids, size_t *n_ids, pg_error *e);

/* The raw bytes a token stands for (byte-level alphabet undone, U+2581 ->
 * space, <0xNN> -> the byte); control tokens give their text. Returns the
 * number of bytes (which may exceed cap; only cap are written). */
size_t pg_token_to_bytes(const pg_tokenizer *t, int32_t id, char *out, size_t cap);

/* Streaming detokenizer: pushes one token and appends to out only complete
 * UTF-8 sequences (an incomplete tail is held back until the next token).
 * SentencePiece: the leading space of the first piece is dropped. */
typedef struct {
    char pending[8];
    int n_pending;
    bool started;
} pg_detok;

void pg_detok_init(pg_detok *d);
/* Returns the bytes written to out (at most cap; cap >= 256 recommended). */
size_t pg_detok_push(const pg_tokenizer *t, pg_detok *d, int32_t id, char *out, size_t cap);
/* Emits what is held back (invalid bytes become U+FFFD). */
size_t pg_detok_flush(pg_detok *d, char *out, size_t cap);

#endif
