/* tokenizer.c - see tokenizer.h
 *
 * Three encoders share one vocabulary representation:
 *  - byte-level BPE (GGUF "gpt2", tokenizer.json BPE + ByteLevel): the text is
 *    split by the pre-tokenizer regexes (PCRE2), each piece's bytes become the
 *    ids of their GPT-2 alphabet characters, then adjacent pairs are merged by
 *    merge rank (lowest first, leftmost on ties) with a linked list and a
 *    binary heap, so a long piece costs O(n log n).
 *  - SentencePiece BPE by score (GGUF "llama"): llama.cpp's algorithm: spaces
 *    become U+2581, one is prepended, UTF-8 characters are merged by the score
 *    of their concatenation (highest first, leftmost on ties), characters not
 *    in the vocabulary fall back to <0xNN> byte tokens.
 *  - SentencePiece-style BPE by merge rank (tokenizer.json BPE with
 *    byte_fallback and a Prepend/Replace U+2581 normalizer, e.g. Mistral): the
 *    same text as above, merged by the rank of tokenizer.json's merges (what
 *    Hugging Face `tokenizers` does).
 *
 * Normalisation: NFC through utf8proc (valid UTF-8 runs; invalid bytes pass
 * as they are), and SentencePiece's Prepend/Replace U+2581. Pre-tokenizers:
 * Split (regex or string; Isolated, Removed, MergedWithPrevious,
 * MergedWithNext, Contiguous; invert), ByteLevel, Digits, Metaspace. Added
 * tokens are matched before everything else (leftmost, longest), with their
 * lstrip / rstrip / single_word flags. GGUF files name their pre-tokenizer
 * (tokenizer.ggml.pre): gpt-2/default, qwen2 (with NFC), deepseek-v3,
 * gpt-4o/o200k, llama-bpe/llama3; others fall back to GPT-2 with a warning.
 *
 * Not implemented: added tokens with normalized=true are matched on the raw
 * text (the same unless the normalizer rewrites the token's own text);
 * normalizers other than NFC/Prepend/Replace and pre-tokenizers other than
 * the above are refused with an error naming the type.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <jansson.h>
#include <pcre2.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VOCAB (1 << 24)
#define MAX_STAGES 8

typedef enum { TT_UNDEF = 0, TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 } tok_type;

typedef enum {
    ST_SPLIT_ISOLATED, ST_SPLIT_REMOVED, ST_SPLIT_PREV, ST_SPLIT_NEXT, ST_SPLIT_CONTIG, ST_PREFIX_SPACE
} stage_kind;

typedef struct {
    stage_kind kind;
    bool invert;  /* the pieces between matches are the delimiters */
    pcre2_code *re;
} stage;

typedef struct {
    uint64_t key;
    uint32_t rank;
    int32_t id;
} pair_slot;

struct pg_tokenizer {
    pg_tok_kind kind;
    bool spm_by_rank;     /* tokenizer.json SPM: merge by rank, not score */
    int n_vocab;
    char **text;          /* vocabulary strings (NUL-terminated) */
    uint32_t *text_len;
    char **bytes;         /* decoded bytes */
    uint32_t *bytes_len;
    float *scores;
    uint8_t *type;
    int32_t *smap;        /* string -> id, open addressing, -1 empty */
    size_t smap_mask;
    pair_slot *pmap;      /* (id,id) -> rank/merged id */
    size_t pmap_mask;
    int32_t byte_tok[256];
    int32_t bos, eos, eot, unk;
    bool add_bos, add_eos, add_space_prefix, ignore_merges, nfc, byte_fallback;
    int32_t *special;     /* sorted by first byte, then length descending */
    int n_special;
    int sp_first[257];    /* bucket start per first byte */
    int32_t *eog;
    int n_eog;
    stage stages[MAX_STAGES];
    int n_stages;
    char *chat_template;
    uint8_t *aflags;      /* added tokens' AF_* flags (tokenizer.json), or NULL */
};

enum { AF_LSTRIP = 1, AF_RSTRIP = 2, AF_SINGLE_WORD = 4 };

/* ------------------------------------------------------------------ utils */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static int32_t vocab_find(const pg_tokenizer *t, const char *s, size_t n) {
    if (!t->smap) return -1;
    size_t i = hash_bytes(s, n) & t->smap_mask;
    for (;;) {
        int32_t id = t->smap[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && memcmp(t->text[id], s, n) == 0) return id;
        i = (i + 1) & t->smap_mask;
    }
}

static void build_smap(pg_tokenizer *t) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2) cap <<= 1;
    t->smap = xmalloc(cap * sizeof *t->smap);
    memset(t->smap, 0xff, cap * sizeof *t->smap);
    t->smap_mask = cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!t->text[id] || t->text_len[id] == 0) continue;
        size_t i = hash_bytes(t->text[id], t->text_len[id]) & t->smap_mask;
        bool dup = false;
        while (t->smap[i] >= 0) {
            int32_t o = t->smap[i];
            if (t->text_len[o] == t->text_len[id] && memcmp(t->text[o], t->text[id], t->text_len[id]) == 0) {
                dup = true; /* keep the first id for duplicate strings */
                break;
            }
            i = (i + 1) & t->smap_mask;
        }
        if (!dup) t->smap[i] = id;
    }
}

static const pair_slot *pair_find(const pg_tokenizer *t, int32_t a, int32_t b) {
    if (!t->pmap || a < 0 || b < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = hash_u64(key) & t->pmap_mask;
    for (;;) {
        const pair_slot *s = &t->pmap[i];
        if (s->id < 0) return NULL;
        if (s->key == key) return s;
        i = (i + 1) & t->pmap_mask;
    }
}

static void pmap_init(pg_tokenizer *t, size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    t->pmap = xmalloc(cap * sizeof *t->pmap);
    for (size_t i = 0; i < cap; i++) t->pmap[i].id = -1;
    t->pmap_mask = cap - 1;
}

/* Lower rank wins for duplicates (the first occurrence). */
static void pmap_add(pg_tokenizer *t, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = hash_u64(key) & t->pmap_mask;
    while (t->pmap[i].id >= 0) {
        if (t->pmap[i].key == key) return;
        i = (i + 1) & t->pmap_mask;
    }
    t->pmap[i].key = key;
    t->pmap[i].rank = rank;
    t->pmap[i].id = merged;
}

/* Strict UTF-8: > 0 length of a valid sequence at p; 0 when p[0..n) is a
 * valid but incomplete prefix; < 0: -(bytes to skip) for an invalid one. */
static int utf8_seq(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    if (c < 0x80) return 1;
    int len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c == 0xe0) { len = 3; lo = 0xa0; }
    else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) len = 3;
    else if (c == 0xed) { len = 3; hi = 0x9f; }
    else if (c == 0xf0) { len = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) len = 4;
    else if (c == 0xf4) { len = 4; hi = 0x8f; }
    else return -1;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return 0;
        uint8_t b = p[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return -k;
    }
    return len;
}

static int utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* GPT-2 bytes_to_unicode. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
    return 256u + (uint32_t)n;
}

static int cp_to_byte(uint32_t cp) {
    static int16_t inv[512];
    static int init;
    if (!init) { /* idempotent, benign if two threads race */
        int16_t tmp[512];
        for (int i = 0; i < 512; i++) tmp[i] = -1;
        for (int b = 0; b < 256; b++) tmp[byte_to_cp(b)] = (int16_t)b;
        memcpy(inv, tmp, sizeof inv);
        __atomic_store_n(&init, 1, __ATOMIC_RELEASE);
    }
    return cp < 512 ? inv[cp] : -1;
}

/* ------------------------------------------------------------------ growable buffers */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ivec;

static void ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

typedef struct {
    double pri;
    uint32_t pos;
    int32_t a, b;  /* BPE: expected ids; SPM: right index, expected size */
} hent;

typedef struct {
    hent *v;
    size_t n, cap;
} heap;

static bool hless(const hent *x, const hent *y) {
    return x->pri < y->pri || (x->pri == y->pri && x->pos < y->pos);
}

static void heap_push(heap *h, hent e) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&e, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = e;
}

static hent heap_pop(heap *h) {
    hent top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const hent *best = &last;
        if (l < h->n && hless(&h->v[l], best)) { m = l; best = &h->v[l]; }
        if (r < h->n && hless(&h->v[r], best)) { m = r; }
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    int32_t id;
    int32_t prev, next;
    uint32_t start, len; /* bytes in the piece */
} sym;

/* Per-call cache of short pieces' ids (prose repeats its words). */
#define CACHE_N 65536
#define CACHE_LEN 30
#define CACHE_IDS 14
typedef struct {
    uint64_t h;
    uint8_t len, nids;
    char s[CACHE_LEN];
    int32_t ids[CACHE_IDS];
} centry;

typedef struct {
    sym *s;
    size_t cap;
    heap h;
    centry *cache;  /* allocated once a call has seen enough pieces */
    size_t n_pieces;
    char *buf;      /* scratch text (escaped SPM text, prefixed pieces) */
    size_t buf_cap;
    char *nbuf;     /* normalised text */
    size_t nlen, ncap;
    pcre2_match_data *md[MAX_STAGES];
} work;

static void work_syms(work *w, size_t n) {
    if (n > w->cap) {
        w->cap = n + n / 2 + 16;
        w->s = xrealloc(w->s, w->cap * sizeof *w->s);
    }
}

static void nbuf_append(work *w, const char *p, size_t n) {
    if (w->nlen + n > w->ncap) {
        w->ncap = (w->nlen + n) * 2 + 64;
        w->nbuf = xrealloc(w->nbuf, w->ncap);
    }
    memcpy(w->nbuf + w->nlen, p, n);
    w->nlen += n;
}

static void work_free(work *w) {
    free(w->nbuf);
    free(w->s);
    free(w->h.v);
    free(w->buf);
    free(w->cache);
    for (int i = 0; i < MAX_STAGES; i++)
        if (w->md[i]) pcre2_match_data_free(w->md[i]);
}

/* Emits the fallback for bytes p[0..n) that formed no token. */
static void emit_fallback(const pg_tokenizer *t, const char *p, size_t n, ivec *out) {
    if (t->kind == PG_TOK_BPE) {
        for (size_t i = 0; i < n; i++) /* unreachable unless a byte's char is absent: dropped (as HF) */
            if (t->byte_tok[(uint8_t)p[i]] >= 0) ivec_push(out, t->byte_tok[(uint8_t)p[i]]);
        return;
    }
    bool all = true;
    for (size_t i = 0; i < n; i++)
        if (t->byte_tok[(uint8_t)p[i]] < 0) all = false;
    if (all) {
        for (size_t i = 0; i < n; i++) ivec_push(out, t->byte_tok[(uint8_t)p[i]]);
    } else if (t->unk >= 0) {
        ivec_push(out, t->unk);
    }
}

/* Merges w->s[0..n) by merge rank and appends the ids. */
static void merge_by_rank(const pg_tokenizer *t, work *w, size_t n, const char *p, ivec *out) {
    sym *s = w->s;
    heap *h = &w->h;
    h->n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const pair_slot *ps = pair_find(t, s[i].id, s[i + 1].id);
        if (ps) heap_push(h, (hent){ps->rank, (uint32_t)i, s[i].id, s[i + 1].id});
    }
    while (h->n) {
        hent e = heap_pop(h);
        sym *l = &s[e.pos];
        if (l->len == 0 || l->id != e.a || l->next < 0) continue;
        sym *r = &s[l->next];
        if (r->id != e.b) continue;
        const pair_slot *ps = pair_find(t, e.a, e.b);
        l->id = ps->id;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = (int32_t)e.pos;
        if (l->prev >= 0) {
            const pair_slot *q = pair_find(t, s[l->prev].id, l->id);
            if (q) heap_push(h, (hent){q->rank, (uint32_t)l->prev, s[l->prev].id, l->id});
        }
        if (l->next >= 0) {
            const pair_slot *q = pair_find(t, l->id, s[l->next].id);
            if (q) heap_push(h, (hent){q->rank, e.pos, l->id, s[l->next].id});
        }
    }
    for (int32_t i = 0; i >= 0 && (size_t)i < n; i = s[i].next) {
        if (s[i].id >= 0) ivec_push(out, s[i].id);
        else emit_fallback(t, p + s[i].start, s[i].len, out);
    }
}

static void bpe_piece_uncached(const pg_tokenizer *t, work *w, const char *p, size_t n, ivec *out);

/* One byte-level BPE piece. */
static void bpe_piece(const pg_tokenizer *t, work *w, const char *p, size_t n, ivec *out) {
    if (n > CACHE_LEN || ++w->n_pieces < 256) { bpe_piece_uncached(t, w, p, n, out); return; }
    if (!w->cache) w->cache = xcalloc(CACHE_N, sizeof *w->cache);
    uint64_t h = hash_bytes(p, n);
    centry *c = &w->cache[h & (CACHE_N - 1)];
    if (c->nids && c->h == h && c->len == n && memcmp(c->s, p, n) == 0) {
        for (int i = 0; i < c->nids; i++) ivec_push(out, c->ids[i]);
        return;
    }
    size_t before = out->n;
    bpe_piece_uncached(t, w, p, n, out);
    size_t k = out->n - before;
    if (k > 0 && k <= CACHE_IDS) {
        c->h = h;
        c->len = (uint8_t)n;
        c->nids = (uint8_t)k;
        memcpy(c->s, p, n);
        memcpy(c->ids, out->v + before, k * sizeof(int32_t));
    }
}

static void bpe_piece_uncached(const pg_tokenizer *t, work *w, const char *p, size_t n, ivec *out) {
    if (t->ignore_merges) {
        /* the piece is looked up in its byte-level spelling */
        size_t need = n * 2;
        if (need > w->buf_cap) { w->buf_cap = need + 64; w->buf = xrealloc(w->buf, w->buf_cap); }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += (size_t)utf8_put(byte_to_cp((uint8_t)p[i]), w->buf + k);
        int32_t id = vocab_find(t, w->buf, k);
        if (id >= 0) { ivec_push(out, id); return; }
    }
    work_syms(w, n);
    for (size_t i = 0; i < n; i++)
        w->s[i] = (sym){t->byte_tok[(uint8_t)p[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, (uint32_t)i, 1};
    merge_by_rank(t, w, n, p, out);
}

static void pretok(const pg_tokenizer *t, work *w, int si, const char *p, size_t n, ivec *out);

typedef struct {
    size_t a, b;
    bool m;
} segm;

/* A Split stage with any behaviour / invert, as Hugging Face's
 * NormalizedString::split: the text cut into matches and gaps, matches
 * flipped by invert, then Removed / Isolated / MergedWithPrevious /
 * MergedWithNext / Contiguous. */
static void pretok_general(const pg_tokenizer *t, work *w, int si, const char *p, size_t n, ivec *out) {
    const stage *st = &t->stages[si];
    pcre2_match_data *md = w->md[si];
    segm *v = NULL;
    size_t nv = 0, cap = 0;
#define PUSH(A, B, M)                                                  \
    do {                                                               \
        if (nv == cap) v = xrealloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v); \
        v[nv++] = (segm){(A), (B), (M)};                               \
    } while (0)
    size_t last = 0, off = 0;
    while (off < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)p, n, off, 0, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            int k = utf8_seq((const uint8_t *)p + ms, n - ms);
            off = ms + (size_t)(k > 0 ? k : k < 0 ? -k : 1);
            continue;
        }
        if (ms > last) PUSH(last, ms, false);
        PUSH(ms, me, true);
        last = off = me;
    }
    if (last < n) PUSH(last, n, false);
    if (st->invert)
        for (size_t i = 0; i < nv; i++) v[i].m = !v[i].m;
    /* pieces, in place */
    size_t k = 0;
    bool prev = false;
    switch (st->kind) {
    case ST_SPLIT_REMOVED:
        for (size_t i = 0; i < nv; i++)
            if (!v[i].m) v[k++] = v[i];
        break;
    case ST_SPLIT_PREV:
        for (size_t i = 0; i < nv; i++) {
            if (v[i].m && !prev && k) v[k - 1].b = v[i].b;
            else v[k++] = v[i];
            prev = v[i].m;
        }
        break;
    case ST_SPLIT_NEXT: /* from the end: a match joins the piece after it */
        k = nv;
        for (size_t i = nv; i-- > 0;) {
            bool m = v[i].m;
            if (m && !prev && k < nv) v[k].a = v[i].a;
            else v[--k] = v[i];
            prev = m;
        }
        memmove(v, v + k, (nv - k) * sizeof *v);
        k = nv - k;
        break;
    case ST_SPLIT_CONTIG:
        for (size_t i = 0; i < nv; i++) {
            if (v[i].m == prev && k) v[k - 1].b = v[i].b;
            else v[k++] = v[i];
            prev = v[i].m;
        }
        break;
    default:
        k = nv;
        break;
    }
#undef PUSH
    for (size_t i = 0; i < k; i++) pretok(t, w, si + 1, p + v[i].a, v[i].b - v[i].a, out);
    free(v);
}

/* Runs pre-tokenizer stages from `si` on p[0..n). */
static void pretok(const pg_tokenizer *t, work *w, int si, const char *p, size_t n, ivec *out) {
    if (n == 0) return;
    if (si == t->n_stages) { bpe_piece(t, w, p, n, out); return; }
    const stage *st = &t->stages[si];
    if (st->kind == ST_PREFIX_SPACE) {
        if (p[0] == ' ') { pretok(t, w, si + 1, p, n, out); return; }
        char *tmp = xmalloc(n + 1);
        tmp[0] = ' ';
        memcpy(tmp + 1, p, n);
        pretok(t, w, si + 1, tmp, n + 1, out);
        free(tmp);
        return;
    }
    if (!w->md[si]) w->md[si] = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (st->invert || (st->kind != ST_SPLIT_ISOLATED && st->kind != ST_SPLIT_REMOVED)) {
        pretok_general(t, w, si, p, n, out);
        return;
    }
    pcre2_match_data *md = w->md[si];
    size_t last = 0, off = 0;
    while (off < n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)p, n, off, 0, md, NULL);
        if (rc < 0) break; /* no match (or a matching error: treat the rest as one gap) */
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step over one character */
            int k = utf8_seq((const uint8_t *)p + ms, n - ms);
            off = ms + (size_t)(k > 0 ? k : k < 0 ? -k : 1);
            continue;
        }
        if (ms > last) pretok(t, w, si + 1, p + last, ms - last, out);
        if (st->kind == ST_SPLIT_ISOLATED) pretok(t, w, si + 1, p + ms, me - ms, out);
        last = off = me;
    }
    if (last < n) pretok(t, w, si + 1, p + last, n - last, out);
}

/* SentencePiece: text fragment -> ids. */
static void spm_fragment(const pg_tokenizer *t, work *w, const char *p, size_t n, bool prefix, ivec *out) {
    /* escape: ' ' -> U+2581 (3 bytes), optional leading U+2581 */
    size_t need = n * 3 + 3;
    if (need > w->buf_cap) { w->buf_cap = need + 64; w->buf = xrealloc(w->buf, w->buf_cap); }
    char *b = w->buf;
    size_t m = 0;
    if (prefix) { memcpy(b, "\xe2\x96\x81", 3); m = 3; }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') { memcpy(b + m, "\xe2\x96\x81", 3); m += 3; }
        else b[m++] = p[i];
    }
    if (m == 0) return;
    /* characters */
    work_syms(w, m);
    size_t ns = 0;
    for (size_t i = 0; i < m;) {
        int k = utf8_seq((const uint8_t *)b + i, m - i);
        size_t len = k > 0 ? (size_t)k : 1; /* invalid or truncated: one byte per symbol */
        w->s[ns] = (sym){-1, (int32_t)ns - 1, (int32_t)ns + 1, (uint32_t)i, (uint32_t)len};
        w->s[ns].id = vocab_find(t, b + i, len);
        if (w->s[ns].id >= 0 && (t->type[w->s[ns].id] == TT_CONTROL || t->type[w->s[ns].id] == TT_UNUSED))
            w->s[ns].id = -1;
        ns++;
        i += len;
    }
    w->s[ns - 1].next = -1;
    if (t->spm_by_rank) {
        merge_by_rank(t, w, ns, b, out);
        return;
    }
    sym *s = w->s;
    heap *h = &w->h;
    h->n = 0;
#define TRY_BIGRAM(L, R)                                                                     \
    do {                                                                                     \
        int32_t id_ = vocab_find(t, b + s[L].start, s[L].len + s[R].len);                    \
        if (id_ >= 0 && t->type[id_] != TT_CONTROL && t->type[id_] != TT_UNUSED)             \
            heap_push(h, (hent){-(double)t->scores[id_], (uint32_t)(L), (int32_t)(R),         \
                                (int32_t)(s[L].len + s[R].len)});                             \
    } while (0)
    for (size_t i = 0; i + 1 < ns; i++) TRY_BIGRAM(i, i + 1);
    while (h->n) {
        hent e = heap_pop(h);
        sym *l = &s[e.pos], *r = &s[e.a];
        if (l->len == 0 || r->len == 0 || l->next != e.a || l->len + r->len != (uint32_t)e.b) continue;
        l->len += r->len;
        l->id = -2; /* resolved below */
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = (int32_t)e.pos;
        if (l->prev >= 0) TRY_BIGRAM(l->prev, e.pos);
        if (l->next >= 0) TRY_BIGRAM(e.pos, l->next);
    }
#undef TRY_BIGRAM
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        int32_t id = s[i].id == -2 ? vocab_find(t, b + s[i].start, s[i].len) : s[i].id;
        if (id >= 0) ivec_push(out, id);
        else emit_fallback(t, b + s[i].start, s[i].len, out);
    }
}

/* ------------------------------------------------------------------ public API */

pg_tok_kind pg_tokenizer_kind(const pg_tokenizer *t) { return t->kind; }
int pg_tokenizer_n_vocab(const pg_tokenizer *t) { return t->n_vocab; }
int pg_tokenizer_bos(const pg_tokenizer *t) { return t->bos; }
int pg_tokenizer_eos(const pg_tokenizer *t) { return t->eos; }
bool pg_tokenizer_add_bos(const pg_tokenizer *t) { return t->add_bos; }
bool pg_tokenizer_add_eos(const pg_tokenizer *t) { return t->add_eos && t->eos >= 0; }
int32_t pg_tokenizer_find(const pg_tokenizer *t, const char *s, size_t n) { return vocab_find(t, s, n); }
const char *pg_tokenizer_chat_template(const pg_tokenizer *t) { return t->chat_template; }
bool pg_tokenizer_is_control(const pg_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->type[id] == TT_CONTROL;
}
const char *pg_tokenizer_token_text(const pg_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->text[id] ? t->text[id] : "";
}

bool pg_tokenizer_is_eog(const pg_tokenizer *t, int32_t id) {
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id) return true;
    return false;
}

static bool all_ascii(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)p[i] >= 0x80) return false;
    return true;
}

/* NFC of p[0..n) into w->nbuf: each maximal run of valid UTF-8 is composed
 * with utf8proc (invalid bytes are kept as they are). Returns the length. */
static size_t nfc_into(work *w, const char *p, size_t n) {
    w->nlen = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) {
            int k = utf8_seq((const uint8_t *)p + j, n - j);
            if (k <= 0) break;
            j += (size_t)k;
        }
        if (j > i) {
            utf8proc_uint8_t *o = NULL;
            utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(j - i), &o,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (m >= 0) {
                nbuf_append(w, (const char *)o, (size_t)m);
            } else {
                nbuf_append(w, p + i, j - i);
            }
            free(o);
        }
        if (j < n) { /* one invalid byte (or an incomplete tail) */
            int k = utf8_seq((const uint8_t *)p + j, n - j);
            size_t skip = k < 0 ? (size_t)-k : n - j;
            nbuf_append(w, p + j, skip);
            j += skip;
        }
        i = j;
    }
    return w->nlen;
}

static void encode_fragment(const pg_tokenizer *t, work *w, const char *p, size_t n, bool prefix, ivec *out) {
    if (n == 0) return;
    if (t->nfc && !all_ascii(p, n)) {
        size_t m = nfc_into(w, p, n);
        char *tmp = xmalloc(m + 1);
        memcpy(tmp, w->nbuf, m);
        if (t->kind == PG_TOK_SPM) spm_fragment(t, w, tmp, m, prefix && t->add_space_prefix, out);
        else pretok(t, w, 0, tmp, m, out);
        free(tmp);
        return;
    }
    if (t->kind == PG_TOK_SPM) spm_fragment(t, w, p, n, prefix && t->add_space_prefix, out);
    else pretok(t, w, 0, p, n, out);
}

/* Code point of the UTF-8 character ending just before p[end] (after lo), or
 * starting at p[i]; -1 if invalid. Sets *k to its length. */
static int32_t cp_before(const char *p, size_t lo, size_t end, size_t *k) {
    size_t b = end;
    while (b > lo && end - b < 3 && ((uint8_t)p[b - 1] & 0xc0) == 0x80) b--;
    if (b > lo) b--;
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)p + b, (utf8proc_ssize_t)(end - b), &cp);
    *k = end - b;
    return r == (utf8proc_ssize_t)(end - b) ? cp : -1;
}

static int32_t cp_at(const char *p, size_t i, size_t len, size_t *k) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(len - i), &cp);
    *k = r > 0 ? (size_t)r : 1;
    return r > 0 ? cp : -1;
}

/* Rust's char::is_whitespace (Unicode White_Space). */
static bool is_ws(int32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* A word character: alphanumeric or '_' (HF's single_word check). */
static bool is_word(int32_t c) {
    if (c < 0) return false;
    if (c == '_') return true;
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static bool word_before(const char *p, size_t lo, size_t i) {
    size_t k;
    return i > lo && is_word(cp_before(p, lo, i, &k));
}

static bool word_after(const char *p, size_t i, size_t len) {
    size_t k;
    return i < len && is_word(cp_at(p, i, len, &k));
}

static size_t ws_back(const char *p, size_t lo, size_t i) {
    size_t k;
    while (i > lo && is_ws(cp_before(p, lo, i, &k))) i -= k;
    return i;
}

static size_t ws_fwd(const char *p, size_t i, size_t len) {
    size_t k;
    while (i < len && is_ws(cp_at(p, i, len, &k))) i += k;
    return i;
}

int pg_tokenize(const pg_tokenizer *t, const char *text, size_t len, bool add_bos, bool parse_special,
                int32_t **ids, size_t *n_ids, pg_error *e) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return pg_fail(e, "pg_tokenize: NULL text");
    ivec out = {0};
    work w = {0};
    if (add_bos && t->bos >= 0) ivec_push(&out, t->bos);
    bool prev_special = true;
    size_t seg = 0;
    if (parse_special && t->n_special) {
        for (size_t i = 0; i < len;) {
            uint8_t c = (uint8_t)text[i];
            int32_t hit = -1;
            for (int k = t->sp_first[c]; k < t->sp_first[c + 1]; k++) {
                int32_t id = t->special[k];
                uint32_t sl = t->text_len[id];
                if (sl <= len - i && memcmp(text + i, t->text[id], sl) == 0) { hit = id; break; }
            }
            if (hit < 0) { i++; continue; }
            size_t start = i, end = i + t->text_len[hit];
            uint8_t fl = t->aflags ? t->aflags[hit] : 0;
            if ((fl & AF_SINGLE_WORD) && (word_before(text, seg, start) || word_after(text, end, len))) {
                i = end; /* not a match; the search goes on after it (non-overlapping, as HF) */
                continue;
            }
            if (fl & AF_LSTRIP) start = ws_back(text, seg, start);
            if (fl & AF_RSTRIP) end = ws_fwd(text, end, len);
            if (start > seg) { encode_fragment(t, &w, text + seg, start - seg, prev_special, &out); prev_special = false; }
            ivec_push(&out, hit);
            prev_special = true;
            i = end;
            seg = i;
        }
    }
    if (len > seg) encode_fragment(t, &w, text + seg, len - seg, prev_special, &out);
    work_free(&w);
    *ids = out.v ? out.v : xmalloc(sizeof(int32_t));
    *n_ids = out.n;
    return 0;
}

size_t pg_token_to_bytes(const pg_tokenizer *t, int32_t id, char *out, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    size_t n = t->bytes_len[id];
    if (out && cap) memcpy(out, t->bytes[id], n < cap ? n : cap);
    return n;
}

void pg_detok_init(pg_detok *d) {
    memset(d, 0, sizeof *d);
}

/* Appends complete, valid UTF-8 from p[0..n) to out; invalid bytes become
 * U+FFFD; an incomplete tail is kept in d->pending when `hold`. */
static size_t detok_emit(pg_detok *d, const char *p, size_t n, bool hold, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int k = utf8_seq((const uint8_t *)p + i, n - i);
        if (k == 0 && hold && n - i < sizeof d->pending) {
            memcpy(d->pending, p + i, n - i);
            d->n_pending = (int)(n - i);
            return o;
        }
        if (k > 0) {
            if (o + (size_t)k > cap) return o;
            memcpy(out + o, p + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        } else {
            if (o + 3 > cap) return o;
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += (size_t)(k < 0 ? -k : (int)(n - i)); /* truncated at flush: one U+FFFD */
        }
    }
    return o;
}

size_t pg_detok_push(const pg_tokenizer *t, pg_detok *d, int32_t id, char *out, size_t cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    if (t->type[id] == TT_CONTROL) return 0; /* control tokens are not rendered */
    const char *b = t->bytes[id];
    size_t n = t->bytes_len[id];
    if (!d->started) {
        if (t->kind == PG_TOK_SPM && n > 0 && b[0] == ' ') { b++; n--; }
        d->started = true;
    }
    if (n == 0) return 0;
    size_t np = (size_t)d->n_pending;
    char stackbuf[512];
    char *tmp = np + n <= sizeof stackbuf ? stackbuf : xmalloc(np + n);
    memcpy(tmp, d->pending, np);
    memcpy(tmp + np, b, n);
    d->n_pending = 0;
    size_t o = detok_emit(d, tmp, np + n, true, out, cap);
    if (tmp != stackbuf) free(tmp);
    return o;
}

size_t pg_detok_flush(pg_detok *d, char *out, size_t cap) {
    size_t np = (size_t)d->n_pending;
    d->n_pending = 0;
    char tmp[8];
    memcpy(tmp, d->pending, np);
    return detok_emit(d, tmp, np, false, out, cap);
}

void pg_tokenizer_free(pg_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_vocab; i++) {
        free(t->text ? t->text[i] : NULL);
        free(t->bytes ? t->bytes[i] : NULL);
    }
    free(t->text);
    free(t->text_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->scores);
    free(t->type);
    free(t->smap);
    free(t->pmap);
    free(t->special);
    free(t->eog);
    free(t->chat_template);
    free(t->aflags);
    for (int i = 0; i < t->n_stages; i++)
        if (t->stages[i].re) pcre2_code_free(t->stages[i].re);
    free(t);
}

/* ------------------------------------------------------------------ loading helpers */

static pg_tokenizer *tok_new(int n_vocab) {
    pg_tokenizer *t = xcalloc(1, sizeof *t);
    t->n_vocab = n_vocab;
    t->text = xcalloc((size_t)n_vocab, sizeof *t->text);
    t->text_len = xcalloc((size_t)n_vocab, sizeof *t->text_len);
    t->bytes = xcalloc((size_t)n_vocab, sizeof *t->bytes);
    t->bytes_len = xcalloc((size_t)n_vocab, sizeof *t->bytes_len);
    t->scores = xcalloc((size_t)n_vocab, sizeof *t->scores);
    t->type = xcalloc((size_t)n_vocab, sizeof *t->type);
    t->bos = t->eos = t->eot = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_tok[i] = -1;
    return t;
}

static void set_text(pg_tokenizer *t, int id, const char *s, size_t n) {
    free(t->text[id]);
    t->text[id] = xmalloc(n + 1);
    memcpy(t->text[id], s, n);
    t->text[id][n] = 0;
    t->text_len[id] = (uint32_t)n;
}

static int add_stage_regex(pg_tokenizer *t, const char *pattern, size_t plen, bool literal, stage_kind kind,
                           const char *file, const char *where, pg_error *e) {
    if (t->n_stages >= MAX_STAGES) return pg_fail(e, "%s: %s: too many pre-tokenizer steps", file, where);
    int err;
    PCRE2_SIZE eoff;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
    char *esc = NULL;
    if (literal) { /* PCRE2_LITERAL does not go with MATCH_INVALID_UTF: escape ASCII punctuation instead */
        esc = xmalloc(plen * 4 + 1);
        size_t k = 0;
        for (size_t i = 0; i < plen; i++) {
            unsigned char ch = (unsigned char)pattern[i];
            if (ch < 0x80 && !((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
                if (ch == 0) { memcpy(esc + k, "\\x00", 4); k += 4; continue; } /* never: strings have no NUL */
                esc[k++] = '\\';
            }
            esc[k++] = (char)ch;
        }
        pattern = esc;
        plen = k;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, plen, opts, &err, &eoff, NULL);
    free(esc);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return pg_fail(e, "%s: %s: bad regex at offset %zu: %s", file, where, (size_t)eoff, (char *)msg);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
    t->stages[t->n_stages].kind = kind;
    t->stages[t->n_stages].re = re;
    t->n_stages++;
    return 0;
}

static const char RE_GPT2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* llama.cpp's pre-tokenizers of the same names (llama-vocab.cpp), equal to
 * the Split regexes of the models' tokenizer.json. */
static const char RE_DSV3_0[] = "\\p{N}{1,3}";
static const char RE_DSV3_1[] = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
static const char RE_DSV3_2[] =
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
    " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
static const char RE_O200K[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static _Thread_local const pg_tokenizer *sort_tok;

static int special_cmp(const void *x, const void *y) {
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    uint8_t ca = (uint8_t)sort_tok->text[a][0], cb = (uint8_t)sort_tok->text[b][0];
    if (ca != cb) return ca < cb ? -1 : 1;
    if (sort_tok->text_len[a] != sort_tok->text_len[b]) return sort_tok->text_len[a] > sort_tok->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* "<0xHH>" (upper-case hex) -> HH, else -1. */
static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F') v = v * 16 + (c - 'A' + 10);
        else return -1;
    }
    return v;
}

/* Decoded bytes, byte tokens, special list, EOG list. */
static int finish(pg_tokenizer *t, const char *file, pg_error *e) {
    build_smap(t);
    char buf[8];
    for (int id = 0; id < t->n_vocab; id++) {
        const char *s = t->text[id] ? t->text[id] : "";
        size_t n = t->text_len[id];
        char *o = xmalloc(n + 1);
        size_t m = 0;
        if (t->type[id] == TT_CONTROL || t->type[id] == TT_USER) {
            memcpy(o, s, n);
            m = n;
        } else if (t->kind == PG_TOK_SPM) {
            int v = parse_byte_token(s, n);
            if (v >= 0 && t->spm_by_rank && t->byte_fallback && t->type[id] == TT_NORMAL) t->type[id] = TT_BYTE;
            if (v >= 0 && t->type[id] == TT_BYTE) {
                o[m++] = (char)v;
            } else {
                for (size_t i = 0; i < n;) {
                    if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) { o[m++] = ' '; i += 3; }
                    else o[m++] = s[i++];
                }
            }
        } else {
            for (size_t i = 0; i < n;) {
                int k = utf8_seq((const uint8_t *)s + i, n - i);
                if (k <= 0) { o[m++] = s[i++]; continue; }
                uint32_t cp = (uint8_t)s[i];
                if (k == 2) cp = ((cp & 0x1f) << 6) | ((uint8_t)s[i + 1] & 0x3f);
                int b = k <= 2 ? cp_to_byte(cp) : -1;
                if (b >= 0) o[m++] = (char)b;
                else { memcpy(o + m, s + i, (size_t)k); m += (size_t)k; }
                i += (size_t)k;
            }
        }
        t->bytes[id] = o;
        t->bytes_len[id] = (uint32_t)m;
    }
    for (int b = 0; b < 256; b++) {
        if (t->kind == PG_TOK_BPE) {
            int k = utf8_put(byte_to_cp(b), buf);
            t->byte_tok[b] = vocab_find(t, buf, (size_t)k);
        } else {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            t->byte_tok[b] = vocab_find(t, buf, 6);
            if (t->byte_tok[b] >= 0 && t->type[t->byte_tok[b]] != TT_BYTE && t->type[t->byte_tok[b]] != TT_UNDEF &&
                t->type[t->byte_tok[b]] != TT_NORMAL)
                t->byte_tok[b] = -1;
        }
    }
    if (t->unk < 0) {
        for (int id = 0; id < t->n_vocab; id++)
            if (t->type[id] == TT_UNKNOWN) { t->unk = id; break; }
    }
    /* specials: control and user-defined tokens, bucketed by first byte, longest first */
    int n = 0;
    t->special = xmalloc(sizeof(int32_t) * (size_t)(t->n_vocab + 1));
    for (int id = 0; id < t->n_vocab; id++)
        if ((t->type[id] == TT_CONTROL || t->type[id] == TT_USER || (t->type[id] == TT_UNKNOWN && t->kind == PG_TOK_SPM)) &&
            t->text_len[id] > 0)
            t->special[n++] = id;
    sort_tok = t;
    qsort(t->special, (size_t)n, sizeof(int32_t), special_cmp);
    sort_tok = NULL;
    int k = 0;
    for (int c = 0; c <= 256; c++) {
        while (k < n && (uint8_t)t->text[t->special[k]][0] < c) k++;
        t->sp_first[c] = k;
    }
    t->sp_first[256] = n;
    t->n_special = n;
    /* end of generation */
    static const char *const eog_names[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>",
                                            "<end_of_turn>", "<|return|>", "<|call|>", "</s>",
                                            "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"};
    t->eog = xmalloc(sizeof(int32_t) * (2 + sizeof eog_names / sizeof *eog_names));
    if (t->eos >= 0) t->eog[t->n_eog++] = t->eos;
    if (t->eot >= 0 && t->eot != t->eos) t->eog[t->n_eog++] = t->eot;
    for (size_t i = 0; i < sizeof eog_names / sizeof *eog_names; i++) {
        int32_t id = vocab_find(t, eog_names[i], strlen(eog_names[i]));
        if (id >= 0 && t->type[id] == TT_CONTROL && !pg_tokenizer_is_eog(t, id)) t->eog[t->n_eog++] = id;
    }
    (void)file;
    (void)e;
    return 0;
}

/* ------------------------------------------------------------------ GGUF */

static int gguf_id(const gguf_file *g, const char *key, int n_vocab, int32_t *out, pg_error *e) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return 0;
    int64_t v;
    if (!gguf_get_int(g, key, &v)) return pg_fail(e, "%s: %s: expected an integer", g->path, key);
    if (v == -1 || (v == 0xffffffffll)) return 0; /* "none" */
    if (v < 0 || v >= n_vocab)
        return pg_fail(e, "%s: %s: token id %lld out of range (vocabulary of %d)", g->path, key, (long long)v,
                       n_vocab);
    *out = (int32_t)v;
    return 0;
}

static bool gguf_arr_numeric(const gguf_kv *kv) {
    return kv && kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING &&
           kv->arr_type != GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_BOOL;
}

pg_tokenizer *pg_tokenizer_from_gguf(const gguf_file *g, pg_error *e) {
    const char *path = g->path ? g->path : "(gguf)";
    char *model = gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) {
        pg_fail(e, "%s: tokenizer.ggml.model: missing (no tokenizer in this file)", path);
        return NULL;
    }
    pg_tok_kind kind;
    if (strcmp(model, "gpt2") == 0) kind = PG_TOK_BPE;
    else if (strcmp(model, "llama") == 0) kind = PG_TOK_SPM;
    else {
        pg_fail(e, "%s: tokenizer.ggml.model: unsupported tokenizer '%s' (supported: gpt2, llama)", path, model);
        free(model);
        return NULL;
    }
    free(model);
    const gguf_kv *toks = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    if (!toks) {
        pg_fail(e, "%s: tokenizer.ggml.tokens: missing or not an array of strings", path);
        return NULL;
    }
    if (toks->arr_n == 0 || toks->arr_n > MAX_VOCAB) {
        pg_fail(e, "%s: tokenizer.ggml.tokens: bad vocabulary size %llu", path, (unsigned long long)toks->arr_n);
        return NULL;
    }
    int nv = (int)toks->arr_n;
    pg_tokenizer *t = tok_new(nv);
    t->kind = kind;
    for (int i = 0; i < nv; i++) {
        if (toks->arr_str[i].len > (1u << 20)) {
            pg_fail(e, "%s: tokenizer.ggml.tokens[%d]: token too long", path, i);
            goto fail;
        }
        set_text(t, i, toks->arr_str[i].s, toks->arr_str[i].len);
        t->type[i] = TT_NORMAL;
    }
    const gguf_kv *kv = gguf_find(g, "tokenizer.ggml.token_type");
    if (kv) {
        if (!gguf_arr_numeric(kv) || kv->arr_n != (uint64_t)nv) {
            pg_fail(e, "%s: tokenizer.ggml.token_type: expected %d integers", path, nv);
            goto fail;
        }
        for (int i = 0; i < nv; i++) {
            int64_t v = gguf_arr_int(kv, (uint64_t)i);
            if (v < 0 || v > 6) {
                pg_fail(e, "%s: tokenizer.ggml.token_type[%d]: bad type %lld", path, i, (long long)v);
                goto fail;
            }
            t->type[i] = (uint8_t)(v == 0 ? TT_NORMAL : v);
        }
    }
    kv = gguf_find(g, "tokenizer.ggml.scores");
    if (kv) {
        if (!gguf_arr_numeric(kv) || kv->arr_n != (uint64_t)nv) {
            pg_fail(e, "%s: tokenizer.ggml.scores: expected %d numbers", path, nv);
            goto fail;
        }
        for (int i = 0; i < nv; i++) t->scores[i] = (float)gguf_arr_float(kv, (uint64_t)i);
    }
    if (gguf_id(g, "tokenizer.ggml.bos_token_id", nv, &t->bos, e) || gguf_id(g, "tokenizer.ggml.eos_token_id", nv, &t->eos, e) ||
        gguf_id(g, "tokenizer.ggml.eot_token_id", nv, &t->eot, e) ||
        gguf_id(g, "tokenizer.ggml.unknown_token_id", nv, &t->unk, e))
        goto fail;
    t->chat_template = gguf_get_str(g, "tokenizer.chat_template");
    t->add_bos = kind == PG_TOK_SPM;
    t->add_space_prefix = kind == PG_TOK_SPM;
    bool b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;
    if (kind == PG_TOK_BPE) {
        char *pre = gguf_get_str(g, "tokenizer.ggml.pre");
        const char *res[3] = {RE_GPT2, NULL, NULL};
        if (pre && strcmp(pre, "qwen2") == 0) { res[0] = RE_QWEN2; t->nfc = true; } /* Qwen2/3: NFC normalizer */
        else if (pre && strcmp(pre, "deepseek-v3") == 0) { res[0] = RE_DSV3_0; res[1] = RE_DSV3_1; res[2] = RE_DSV3_2; }
        else if (pre && (strcmp(pre, "gpt-4o") == 0 || strcmp(pre, "o200k") == 0)) { res[0] = RE_O200K; t->ignore_merges = true; }
        else if (pre && (strcmp(pre, "llama-bpe") == 0 || strcmp(pre, "llama3") == 0)) { res[0] = RE_LLAMA3; t->ignore_merges = true; }
        else if (pre && strcmp(pre, "gpt-2") != 0 && strcmp(pre, "default") != 0)
            fprintf(stderr, "pregate: warning: %s: tokenizer.ggml.pre '%s' is not supported; using the gpt-2 pre-tokenizer\n",
                    path, pre);
        free(pre);
        for (int k = 0; k < 3 && res[k]; k++)
            if (add_stage_regex(t, res[k], strlen(res[k]), false, ST_SPLIT_ISOLATED, path, "tokenizer.ggml.pre", e)) goto fail;
        const gguf_kv *mg = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_TYPE_STRING);
        if (!mg) {
            pg_fail(e, "%s: tokenizer.ggml.merges: missing or not an array of strings", path);
            goto fail;
        }
        build_smap(t);
        pmap_init(t, mg->arr_n);
        char *tmp = NULL;
        size_t tcap = 0;
        for (uint64_t i = 0; i < mg->arr_n; i++) {
            const char *s = mg->arr_str[i].s;
            size_t n = mg->arr_str[i].len;
            const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
            if (!sp) {
                free(tmp);
                pg_fail(e, "%s: tokenizer.ggml.merges[%llu]: expected \"a b\"", path, (unsigned long long)i);
                goto fail;
            }
            size_t la = (size_t)(sp - s), lb = n - la - 1;
            if (la + lb > tcap) { tcap = la + lb + 64; tmp = xrealloc(tmp, tcap); }
            memcpy(tmp, s, la);
            memcpy(tmp + la, sp + 1, lb);
            int32_t a = vocab_find(t, s, la), bb = vocab_find(t, sp + 1, lb), m = vocab_find(t, tmp, la + lb);
            if (a < 0 || bb < 0 || m < 0) {
                free(tmp);
                pg_fail(e, "%s: tokenizer.ggml.merges[%llu]: '%.*s' references a token not in the vocabulary", path,
                        (unsigned long long)i, (int)(n > 100 ? 100 : n), s);
                goto fail;
            }
            pmap_add(t, a, bb, (uint32_t)i, m);
        }
        free(tmp);
    }
    free(t->smap);
    t->smap = NULL;
    if (finish(t, path, e)) goto fail;
    return t;
fail:
    pg_tokenizer_free(t);
    return NULL;
}

/* ------------------------------------------------------------------ tokenizer.json */

typedef struct {
    const char *file;
    pg_error *e;
} jctx;

static int json_str_of(json_t *v, const char **s, size_t *n) {
    if (!json_is_string(v)) return -1;
    *s = json_string_value(v);
    *n = json_string_length(v);
    return 0;
}

/* Reads bos/eos/add_bos from a sibling tokenizer_config.json, if any. */
static void read_config(pg_tokenizer *t, const char *path) {
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path + 1) : 0;
    char *cfg = xmalloc(dl + 32);
    memcpy(cfg, path, dl);
    strcpy(cfg + dl, "tokenizer_config.json");
    json_error_t je;
    json_t *root = json_load_file(cfg, 0, &je);
    free(cfg);
    if (!root) return;
    const char *keys[2] = {"bos_token", "eos_token"};
    int32_t *dst[2] = {&t->bos, &t->eos};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(root, keys[k]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (json_is_string(v)) {
            int32_t id = vocab_find(t, json_string_value(v), json_string_length(v));
            if (id >= 0) *dst[k] = id;
        } else if (json_is_null(v)) {
            *dst[k] = -1;
        }
    }
    json_t *ab = json_object_get(root, "add_bos_token");
    if (json_is_boolean(ab)) t->add_bos = json_is_true(ab);
    json_t *ae = json_object_get(root, "add_eos_token");
    if (json_is_boolean(ae)) t->add_eos = json_is_true(ae);
    json_t *ct = json_object_get(root, "chat_template");
    if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
        json_t *pick = NULL;
        for (size_t i = 0; i < json_array_size(ct); i++) {
            json_t *x = json_array_get(ct, i);
            const char *nm = json_string_value(json_object_get(x, "name"));
            if (!pick || (nm && strcmp(nm, "default") == 0)) pick = x;
        }
        ct = json_object_get(pick, "template");
    }
    if (json_is_string(ct)) t->chat_template = xstrdup(json_string_value(ct));
    json_decref(root);
}

/* normalizer: null, NFC, or a (Sequence of) Prepend "\u2581" / Replace " " -> "\u2581". */
static int json_normalizer(pg_tokenizer *t, json_t *n, const char *where, int *spm_hint, jctx *c) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type) return pg_fail(c->e, "%s: %s.type: expected a string", c->file, where);
    if (strcmp(type, "NFC") == 0) { t->nfc = true; return 0; }
    if (strcmp(type, "Prepend") == 0) {
        const char *p = json_string_value(json_object_get(n, "prepend"));
        if (!p || strcmp(p, "\xe2\x96\x81") != 0)
            return pg_fail(c->e, "%s: %s.prepend: only \"\\u2581\" is supported", c->file, where);
        *spm_hint |= 1;
        return 0;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *p = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
        const char *r = json_string_value(json_object_get(n, "content"));
        if (!p || !r || strcmp(p, " ") != 0 || strcmp(r, "\xe2\x96\x81") != 0)
            return pg_fail(c->e, "%s: %s: only Replace \" \" -> \"\\u2581\" is supported", c->file, where);
        *spm_hint |= 2;
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr)) return pg_fail(c->e, "%s: %s.normalizers: expected an array", c->file, where);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.normalizers[%zu]", where, i);
            if (json_normalizer(t, json_array_get(arr, i), w, spm_hint, c)) return -1;
        }
        return 0;
    }
    return pg_fail(c->e, "%s: %s.type: unsupported normalizer '%s'", c->file, where, type);
}

static int json_pretok(pg_tokenizer *t, json_t *p, const char *where, bool *bytelevel, int *spm_hint, jctx *c) {
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return pg_fail(c->e, "%s: %s.type: expected a string", c->file, where);
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(p, "pretokenizers");
        if (!json_is_array(arr)) return pg_fail(c->e, "%s: %s.pretokenizers: expected an array", c->file, where);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char w[128];
            snprintf(w, sizeof w, "%s.pretokenizers[%zu]", where, i);
            if (json_pretok(t, json_array_get(arr, i), w, bytelevel, spm_hint, c)) return -1;
        }
        return 0;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        *bytelevel = true;
        if (json_is_true(json_object_get(p, "add_prefix_space"))) {
            if (t->n_stages >= MAX_STAGES) return pg_fail(c->e, "%s: %s: too many pre-tokenizer steps", c->file, where);
            t->stages[t->n_stages++].kind = ST_PREFIX_SPACE;
        }
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur))
            return add_stage_regex(t, RE_GPT2, strlen(RE_GPT2), false, ST_SPLIT_ISOLATED, c->file, where, c->e);
        return 0;
    }
    if (strcmp(type, "Split") == 0) {
        json_t *pat = json_object_get(p, "pattern");
        json_t *rx = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
        const char *s;
        size_t n;
        bool literal = false;
        if (json_str_of(rx, &s, &n) != 0) {
            if (json_str_of(lit, &s, &n) != 0)
                return pg_fail(c->e, "%s: %s.pattern: expected {\"Regex\": ...} or {\"String\": ...}", c->file, where);
            literal = true;
        }
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        stage_kind k;
        if (beh && strcmp(beh, "Isolated") == 0) k = ST_SPLIT_ISOLATED;
        else if (beh && strcmp(beh, "Removed") == 0) k = ST_SPLIT_REMOVED;
        else if (beh && strcmp(beh, "MergedWithPrevious") == 0) k = ST_SPLIT_PREV;
        else if (beh && strcmp(beh, "MergedWithNext") == 0) k = ST_SPLIT_NEXT;
        else if (beh && strcmp(beh, "Contiguous") == 0) k = ST_SPLIT_CONTIG;
        else return pg_fail(c->e, "%s: %s.behavior: unsupported '%s'", c->file, where, beh ? beh : "(missing)");
        char w[160];
        snprintf(w, sizeof w, "%s.pattern", where);
        if (add_stage_regex(t, s, n, literal, k, c->file, w, c->e)) return -1;
        t->stages[t->n_stages - 1].invert = json_is_true(json_object_get(p, "invert"));
        return 0;
    }
    if (strcmp(type, "Digits") == 0) {
        const char *re = json_is_true(json_object_get(p, "individual_digits")) ? "\\p{N}" : "\\p{N}+";
        return add_stage_regex(t, re, strlen(re), false, ST_SPLIT_ISOLATED, c->file, where, c->e);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *r = json_string_value(json_object_get(p, "replacement"));
        if (r && strcmp(r, "\xe2\x96\x81") != 0)
            return pg_fail(c->e, "%s: %s.replacement: only \"\\u2581\" is supported", c->file, where);
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        json_t *aps = json_object_get(p, "add_prefix_space");
        bool prefix = scheme ? strcmp(scheme, "never") != 0 : !json_is_false(aps);
        *spm_hint |= 2 | (prefix ? 1 : 0) | 4;
        return 0;
    }
    return pg_fail(c->e, "%s: %s.type: unsupported pre-tokenizer '%s'", c->file, where, type);
}

static pg_tokenizer *from_json_root(json_t *root, const char *path, pg_error *e) {
    jctx c = {path, e};
    pg_tokenizer *t = NULL;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { pg_fail(e, "%s: model: expected an object", path); return NULL; }
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (!mt || strcmp(mt, "BPE") != 0) {
        pg_fail(e, "%s: model.type: unsupported model '%s' (supported: BPE)", path, mt ? mt : "(missing)");
        return NULL;
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) { pg_fail(e, "%s: model.vocab: expected an object", path); return NULL; }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        pg_fail(e, "%s: added_tokens: expected an array", path);
        return NULL;
    }
    /* vocabulary size: the largest id + 1 */
    int64_t maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= MAX_VOCAB) {
            pg_fail(e, "%s: model.vocab[\"%.60s\"]: expected a token id in [0, %d)", path, key, MAX_VOCAB);
            return NULL;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= MAX_VOCAB || !json_is_string(json_object_get(a, "content"))) {
            pg_fail(e, "%s: added_tokens[%zu]: expected {\"id\": token id, \"content\": string}", path, i);
            return NULL;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    if (maxid < 0) { pg_fail(e, "%s: model.vocab: empty vocabulary", path); return NULL; }
    t = tok_new((int)maxid + 1);
    for (int i = 0; i < t->n_vocab; i++) t->type[i] = TT_UNUSED;
    size_t klen;
    json_object_keylen_foreach(vocab, key, klen, val) {
        int id = (int)json_integer_value(val);
        if (t->text[id]) {
            pg_fail(e, "%s: model.vocab[\"%.60s\"]: id %d is used twice", path, key, id);
            goto fail;
        }
        set_text(t, id, key, klen);
        t->type[id] = TT_NORMAL;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int id = (int)json_integer_value(json_object_get(a, "id"));
        json_t *content = json_object_get(a, "content");
        set_text(t, id, json_string_value(content), json_string_length(content));
        t->type[id] = json_is_true(json_object_get(a, "special")) ? TT_CONTROL : TT_USER;
        uint8_t fl = (json_is_true(json_object_get(a, "lstrip")) ? AF_LSTRIP : 0) |
                     (json_is_true(json_object_get(a, "rstrip")) ? AF_RSTRIP : 0) |
                     (json_is_true(json_object_get(a, "single_word")) ? AF_SINGLE_WORD : 0);
        if (fl) {
            if (!t->aflags) t->aflags = xcalloc((size_t)t->n_vocab, 1);
            t->aflags[id] = fl;
        }
    }
    int spm_hint = 0;
    bool bytelevel = false;
    if (json_normalizer(t, json_object_get(root, "normalizer"), "normalizer", &spm_hint, &c)) goto fail;
    if (json_pretok(t, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", &bytelevel, &spm_hint, &c)) goto fail;
    t->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    if (bytelevel) {
        t->kind = PG_TOK_BPE;
        if (spm_hint) { pg_fail(e, "%s: normalizer: U+2581 rewriting together with ByteLevel is not supported", path); goto fail; }
    } else if (spm_hint & 2) {
        t->kind = PG_TOK_SPM;
        t->spm_by_rank = true;
        t->add_space_prefix = (spm_hint & 1) != 0;
        if (t->n_stages) { pg_fail(e, "%s: pre_tokenizer: Split together with U+2581 spaces is not supported", path); goto fail; }
    } else {
        pg_fail(e, "%s: pre_tokenizer: expected ByteLevel (byte-level BPE) or a U+2581 space normalizer (SentencePiece BPE)", path);
        goto fail;
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    build_smap(t);
    if (unk) t->unk = vocab_find(t, unk, strlen(unk));
    /* merges */
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) { pg_fail(e, "%s: model.merges: expected an array", path); goto fail; }
    pmap_init(t, json_array_size(merges));
    char *tmp = NULL;
    size_t tcap = 0;
    for (size_t i = 0; i < json_array_size(merges); i++) {
        json_t *m = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            a = json_string_value(m);
            size_t n = json_string_length(m);
            const char *sp = n > 1 ? memchr(a + 1, ' ', n - 1) : NULL;
            if (!sp) { free(tmp); pg_fail(e, "%s: model.merges[%zu]: expected \"a b\"", path, i); goto fail; }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = n - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            free(tmp);
            pg_fail(e, "%s: model.merges[%zu]: expected a string or a pair of strings", path, i);
            goto fail;
        }
        if (la + lb > tcap) { tcap = la + lb + 64; tmp = xrealloc(tmp, tcap); }
        memcpy(tmp, a, la);
        memcpy(tmp + la, b, lb);
        int32_t ia = vocab_find(t, a, la), ib = vocab_find(t, b, lb), im = vocab_find(t, tmp, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            free(tmp);
            pg_fail(e, "%s: model.merges[%zu]: \"%.*s\" + \"%.*s\" references a token not in the vocabulary", path, i,
                    (int)(la > 60 ? 60 : la), a, (int)(lb > 60 ? 60 : lb), b);
            goto fail;
        }
        pmap_add(t, ia, ib, (uint32_t)i, im);
    }
    free(tmp);
    if (t->kind == PG_TOK_SPM) {
        t->add_bos = true;
        t->bos = vocab_find(t, "<s>", 3);
        t->eos = vocab_find(t, "</s>", 4);
    } else {
        t->eos = vocab_find(t, "<|endoftext|>", 13);
    }
    read_config(t, path);
    free(t->smap);
    t->smap = NULL;
    if (finish(t, path, e)) goto fail;
    return t;
fail:
    pg_tokenizer_free(t);
    return NULL;
}

pg_tokenizer *pg_tokenizer_from_json(const char *path, pg_error *e) {
    char *buf;
    size_t len;
    if (pg_read_file(path, &buf, &len, e)) return NULL;
    json_error_t je;
    json_t *root = json_loadb(buf, len, 0, &je);
    free(buf);
    if (!root) {
        pg_fail(e, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        pg_fail(e, "%s: expected a JSON object", path);
        return NULL;
    }
    pg_tokenizer *t = from_json_root(root, path, e);
    json_decref(root);
    return t;
}

pg_tokenizer *pg_tokenizer_from_path(const char *path, pg_error *e) {
    struct stat st;
    if (stat(path, &st) != 0) {
        pg_fail(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        char *p = xmalloc(n + 32);
        snprintf(p, n + 32, "%s/tokenizer.json", path);
        pg_tokenizer *t = NULL;
        if (access(p, R_OK) == 0) t = pg_tokenizer_from_json(p, e);
        else pg_fail(e, "%s: no tokenizer.json in this directory", path);
        free(p);
        return t;
    }
    char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        pg_fail(e, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0) {
        gguf_file g;
        if (gguf_open(&g, path, NULL, e) != 0) return NULL;
        pg_tokenizer *t = pg_tokenizer_from_gguf(&g, e);
        gguf_close(&g);
        return t;
    }
    return pg_tokenizer_from_json(path, e);
}
