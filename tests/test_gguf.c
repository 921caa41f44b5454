/* test_gguf.c - GGUF writer -> reader round trips, getters, and a table of
 * damaged files that must each fail with a one-line "PATH: problem". */
#include "gguf.h"
#include "kernels/quants.h"
#include "test.h"

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir_[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 256, "%s/%s", tmpdir_, name);
    return p;
}

static int read_all(const char *path, uint8_t **out, size_t *len) {
    char *s = NULL;
    pg_error e;
    if (pg_read_file(path, &s, len, &e)) return -1;
    *out = (uint8_t *)s;
    return 0;
}

static int write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(buf, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? 0 : -1;
}

/* A message is one line, starts with "PATH: " and names the problem. */
static bool good_msg(const char *msg, const char *path) {
    size_t n = strlen(path);
    return !strchr(msg, '\n') && strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' && msg[n + 2];
}

/* ---- round trip ---- */

static void test_roundtrip(void) {
    const char *path = tmp_path("rt.gguf"), *path2 = tmp_path("rt2.gguf");
    float f32d[15];
    uint16_t f16d[7], bf16d[12];
    block_q8_0 q8d[4];
    for (int i = 0; i < 15; i++) f32d[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 7; i++) f16d[i] = pg_f32_to_f16((float)i / 3.0f);
    for (int i = 0; i < 12; i++) bf16d[i] = pg_f32_to_bf16((float)(i * i) - 7.25f);
    for (int b = 0; b < 4; b++) {
        q8d[b].d = pg_f32_to_f16(0.01f * (float)(b + 1));
        for (int j = 0; j < PG_QK8_0; j++) q8d[b].qs[j] = (int8_t)(j * 7 - 100 + b);
    }
    const char *strs[] = {"hello", "", "h\xc3\xa9llo \xe2\x82\xac", "<0x0A>"};
    int32_t i32s[] = {1, -2, 3, INT32_MIN, INT32_MAX};
    float f32s[] = {0.5f, -1.25f, 3e10f};
    uint8_t u8s[] = {0, 255, 7};
    int64_t i64s[] = {INT64_MIN, -1, INT64_MAX};
    double f64s[] = {1e300, -0.125};
    uint8_t bools[] = {1, 0, 1};

    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "test.temp", "to be replaced");
    gguf_writer_set_u8(w, "test.u8", 200);
    gguf_writer_set_i8(w, "test.i8", -100);
    gguf_writer_set_u16(w, "test.u16", 60000);
    gguf_writer_set_i16(w, "test.i16", -30000);
    gguf_writer_set_u32(w, "test.u32", 4000000000u);
    gguf_writer_set_i32(w, "test.i32", -2000000000);
    gguf_writer_set_f32(w, "test.f32", 1.5f);
    gguf_writer_set_bool(w, "test.bool", true);
    gguf_writer_set_bool(w, "test.bool_false", false);
    gguf_writer_set_u64(w, "test.u64", UINT64_MAX);
    gguf_writer_set_u64(w, "test.u64_small", 123456789012ull);
    gguf_writer_set_i64(w, "test.i64", INT64_MIN);
    gguf_writer_set_f64(w, "test.f64", 3.141592653589793);
    gguf_writer_set_arr_str(w, "test.arr_str", strs, 4);
    gguf_writer_set_arr_i32(w, "test.arr_i32", i32s, 5);
    gguf_writer_set_arr_f32(w, "test.arr_f32", f32s, 3);
    gguf_writer_set_arr(w, "test.arr_u8", GGUF_TYPE_UINT8, u8s, 3);
    gguf_writer_set_arr(w, "test.arr_i64", GGUF_TYPE_INT64, i64s, 3);
    gguf_writer_set_arr(w, "test.arr_f64", GGUF_TYPE_FLOAT64, f64s, 2);
    gguf_writer_set_arr(w, "test.arr_bool", GGUF_TYPE_BOOL, bools, 3);
    gguf_writer_set_arr_i32(w, "test.arr_empty", NULL, 0);
    gguf_writer_set_str(w, "test.temp", "replaced");
    int64_t ne_f32[] = {5, 3}, ne_f16[] = {7}, ne_q8[] = {64, 2}, ne_bf16[] = {3, 2, 2};
    gguf_writer_add_tensor(w, "t.f32", PG_TYPE_F32, 2, ne_f32, f32d, sizeof f32d);
    gguf_writer_add_tensor(w, "t.f16", PG_TYPE_F16, 1, ne_f16, f16d, sizeof f16d);
    gguf_writer_add_tensor(w, "t.q8_0", PG_TYPE_Q8_0, 2, ne_q8, q8d, sizeof q8d);
    gguf_writer_add_tensor(w, "t.bf16", PG_TYPE_BF16, 3, ne_bf16, bf16d, sizeof bf16d);
    pg_error e = {{0}};
    int rc = gguf_writer_write(w, path, &e);
    CHECK(rc == 0, "write: %s", e.msg);
    gguf_writer_free(w);

    gguf_file g;
    rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc == 0, "open: %s", e.msg);
    if (rc) return;
    CHECK(g.version == 3, "version %u", g.version);
    CHECK(g.alignment == 32, "alignment %llu", (unsigned long long)g.alignment);
    CHECK(g.n_kv == 23, "n_kv %llu", (unsigned long long)g.n_kv);
    CHECK(g.n_tensors == 4, "n_tensors %llu", (unsigned long long)g.n_tensors);
    CHECK(g.data_offset % 32 == 0, "data_offset %llu", (unsigned long long)g.data_offset);
    /* insertion order kept, replaced key keeps its place */
    CHECK(strcmp(g.kv[0].key, "general.architecture") == 0, "%s", g.kv[0].key);
    CHECK(strcmp(g.kv[1].key, "test.temp") == 0, "%s", g.kv[1].key);

    char *s = gguf_get_str(&g, "general.architecture");
    CHECK(s && strcmp(s, "llama") == 0, "arch %s", s ? s : "(null)");
    free(s);
    s = gguf_get_str(&g, "test.temp");
    CHECK(s && strcmp(s, "replaced") == 0, "temp %s", s ? s : "(null)");
    free(s);
    CHECK(gguf_get_str(&g, "test.u32") == NULL, "str of u32");
    CHECK(gguf_get_str(&g, "missing") == NULL, "missing str");

    int64_t iv = 0;
    CHECK(gguf_get_int(&g, "test.u8", &iv) && iv == 200, "u8 %lld", (long long)iv);
    CHECK(gguf_find(&g, "test.u8")->type == GGUF_TYPE_UINT8, "u8 type");
    CHECK(gguf_get_int(&g, "test.i8", &iv) && iv == -100, "i8 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.u16", &iv) && iv == 60000, "u16 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.i16", &iv) && iv == -30000, "i16 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.u32", &iv) && iv == 4000000000ll, "u32 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.i32", &iv) && iv == -2000000000, "i32 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.i64", &iv) && iv == INT64_MIN, "i64 %lld", (long long)iv);
    CHECK(gguf_get_int(&g, "test.u64_small", &iv) && iv == 123456789012ll, "u64 %lld", (long long)iv);
    iv = 42;
    CHECK(!gguf_get_int(&g, "test.u64", &iv) && iv == 42, "u64 max must not fit int64");
    CHECK(gguf_find(&g, "test.u64")->v.u64 == UINT64_MAX, "raw u64");
    CHECK(!gguf_get_int(&g, "test.f32", &iv), "int of f32");
    CHECK(!gguf_get_int(&g, "general.architecture", &iv), "int of str");
    CHECK(!gguf_get_int(&g, "missing", &iv), "int of missing");
    CHECK(!gguf_get_int(&g, "test.bool", &iv), "int of bool");

    double dv = 0;
    CHECK(gguf_get_float(&g, "test.f32", &dv) && dv == 1.5, "f32 %g", dv);
    CHECK(gguf_get_float(&g, "test.f64", &dv) && dv == 3.141592653589793, "f64 %.17g", dv);
    CHECK(gguf_get_float(&g, "test.i16", &dv) && dv == -30000.0, "float of i16 %g", dv);
    CHECK(gguf_get_float(&g, "test.u32", &dv) && dv == 4000000000.0, "float of u32 %g", dv);
    CHECK(!gguf_get_float(&g, "general.architecture", &dv), "float of str");
    CHECK(!gguf_get_float(&g, "test.arr_f32", &dv), "float of array");

    bool bv = false;
    CHECK(gguf_get_bool(&g, "test.bool", &bv) && bv, "bool");
    CHECK(gguf_get_bool(&g, "test.bool_false", &bv) && !bv, "bool false");
    CHECK(!gguf_get_bool(&g, "test.u8", &bv), "bool of u8");

    const gguf_kv *a = gguf_get_arr(&g, "test.arr_str", GGUF_TYPE_STRING);
    CHECK(a && a->arr_n == 4, "arr_str");
    if (a && a->arr_n == 4)
        for (int i = 0; i < 4; i++)
            CHECK(a->arr_str[i].len == strlen(strs[i]) && memcmp(a->arr_str[i].s, strs[i], strlen(strs[i])) == 0,
                  "arr_str[%d]", i);
    CHECK(gguf_get_arr(&g, "test.arr_str", GGUF_TYPE_INT32) == NULL, "arr of wrong elem type");
    CHECK(gguf_get_arr(&g, "test.u32", GGUF_TYPE_UINT32) == NULL, "arr of scalar");
    a = gguf_get_arr(&g, "test.arr_i32", GGUF_TYPE_INT32);
    CHECK(a && a->arr_n == 5, "arr_i32");
    if (a && a->arr_n == 5)
        for (int i = 0; i < 5; i++) {
            CHECK(gguf_arr_int(a, i) == i32s[i], "arr_i32[%d]", i);
            CHECK(gguf_arr_float(a, i) == (double)i32s[i], "arr_i32 as float[%d]", i);
        }
    a = gguf_get_arr(&g, "test.arr_f32", GGUF_TYPE_FLOAT32);
    CHECK(a && a->arr_n == 3, "arr_f32");
    if (a && a->arr_n == 3)
        for (int i = 0; i < 3; i++) CHECK(gguf_arr_float(a, i) == (double)f32s[i], "arr_f32[%d]", i);
    a = gguf_get_arr(&g, "test.arr_u8", GGUF_TYPE_UINT8);
    CHECK(a && a->arr_n == 3 && gguf_arr_int(a, 1) == 255, "arr_u8");
    a = gguf_get_arr(&g, "test.arr_i64", GGUF_TYPE_INT64);
    CHECK(a && a->arr_n == 3 && gguf_arr_int(a, 0) == INT64_MIN && gguf_arr_int(a, 2) == INT64_MAX, "arr_i64");
    a = gguf_get_arr(&g, "test.arr_f64", GGUF_TYPE_FLOAT64);
    CHECK(a && a->arr_n == 2 && gguf_arr_float(a, 0) == 1e300 && gguf_arr_float(a, 1) == -0.125, "arr_f64");
    a = gguf_get_arr(&g, "test.arr_bool", GGUF_TYPE_BOOL);
    CHECK(a && a->arr_n == 3 && gguf_arr_int(a, 0) == 1 && gguf_arr_int(a, 1) == 0, "arr_bool");
    a = gguf_get_arr(&g, "test.arr_empty", GGUF_TYPE_INT32);
    CHECK(a && a->arr_n == 0, "arr_empty");

    struct { const char *name; pg_type type; int nd; const int64_t *ne; const void *data; size_t nbytes; } exp[] = {
        {"t.f32", PG_TYPE_F32, 2, ne_f32, f32d, sizeof f32d},
        {"t.f16", PG_TYPE_F16, 1, ne_f16, f16d, sizeof f16d},
        {"t.q8_0", PG_TYPE_Q8_0, 2, ne_q8, q8d, sizeof q8d},
        {"t.bf16", PG_TYPE_BF16, 3, ne_bf16, bf16d, sizeof bf16d},
    };
    for (int i = 0; i < 4; i++) {
        const pg_tensor *t = gguf_find_tensor(&g, exp[i].name);
        CHECK(t == &g.tensors[i], "tensor %s in insertion order", exp[i].name);
        if (!t) continue;
        CHECK(t->type == exp[i].type && t->n_dims == exp[i].nd, "%s type/n_dims", t->name);
        for (int d = 0; d < PG_MAX_DIMS; d++)
            CHECK(t->ne[d] == (d < exp[i].nd ? exp[i].ne[d] : 1), "%s ne[%d] = %lld", t->name, d, (long long)t->ne[d]);
        CHECK(t->nbytes == exp[i].nbytes, "%s nbytes %zu", t->name, t->nbytes);
        CHECK(t->file_offset % 32 == 0 && t->file_offset >= g.data_offset, "%s offset", t->name);
        CHECK(t->data == g.map + t->file_offset, "%s data pointer", t->name);
        CHECK(memcmp(t->data, exp[i].data, exp[i].nbytes) == 0, "%s data bytes", t->name);
    }
    CHECK(gguf_find_tensor(&g, "nope") == NULL, "missing tensor");

    /* copy every kv and tensor into a second writer: the file must come out identical */
    w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) gguf_writer_copy_kv(w, &g.kv[i]);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    rc = gguf_writer_write(w, path2, &e);
    CHECK(rc == 0, "write copy: %s", e.msg);
    gguf_writer_free(w);
    uint8_t *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(read_all(path, &b1, &l1) == 0 && read_all(path2, &b2, &l2) == 0, "read back");
    CHECK(b1 && b2 && l1 == l2 && memcmp(b1, b2, l1) == 0, "copied file differs (%zu vs %zu bytes)", l1, l2);
    CHECK(l1 % 32 == 0, "file size %zu not padded", l1);

    /* the same image through gguf_open_memory */
    gguf_file gm;
    rc = gguf_open_memory(&gm, b1, l1, "mem", NULL, &e);
    CHECK(rc == 0, "open_memory: %s", e.msg);
    if (rc == 0) {
        CHECK(gm.n_tensors == 4 && gm.n_kv == 23 && gm.fd == -1, "open_memory contents");
        const pg_tensor *t = gguf_find_tensor(&gm, "t.q8_0");
        CHECK(t && memcmp(t->data, q8d, sizeof q8d) == 0, "open_memory data");
        gguf_close(&gm);
        gguf_close(&gm); /* idempotent */
    }
    free(b1);
    free(b2);
    gguf_close(&g);
    gguf_close(&g);
    gguf_close(NULL);
    unlink(path);
    unlink(path2);
}

static void test_alignment_and_writer_errors(void) {
    const char *path = tmp_path("al.gguf");
    float d[3] = {1, 2, 3};
    int64_t ne[] = {3};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 64);
    gguf_writer_add_tensor(w, "a", PG_TYPE_F32, 1, ne, d, sizeof d);
    gguf_writer_add_tensor(w, "b", PG_TYPE_F32, 1, ne, d, sizeof d);
    pg_error e = {{0}};
    CHECK(gguf_writer_write(w, path, &e) == 0, "write: %s", e.msg);
    gguf_writer_free(w);
    gguf_file g;
    int rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc == 0, "open: %s", e.msg);
    if (rc == 0) {
        CHECK(g.alignment == 64 && g.data_offset % 64 == 0, "alignment %llu", (unsigned long long)g.alignment);
        CHECK(g.tensors[1].file_offset - g.tensors[0].file_offset == 64, "second tensor at +64");
        gguf_close(&g);
    }

    /* zero tensors, zero kv: a valid (if useless) file */
    w = gguf_writer_new();
    CHECK(gguf_writer_write(w, path, &e) == 0, "write empty: %s", e.msg);
    gguf_writer_free(w);
    rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc == 0 && g.n_tensors == 0 && g.n_kv == 0, "open empty: %s", e.msg);
    if (rc == 0) gguf_close(&g);

    /* misuse is reported by write */
    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "a", PG_TYPE_F32, 1, ne, d, sizeof d);
    gguf_writer_add_tensor(w, "a", PG_TYPE_F32, 1, ne, d, sizeof d);
    CHECK(gguf_writer_write(w, path, &e) != 0 && strstr(e.msg, "duplicate"), "dup: %s", e.msg);
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_writer_add_tensor(w, "a", PG_TYPE_F32, 1, ne, d, 8);
    CHECK(gguf_writer_write(w, path, &e) != 0 && strstr(e.msg, "do not match"), "nbytes: %s", e.msg);
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_writer_set_u32(w, "general.alignment", 24);
    CHECK(gguf_writer_write(w, path, &e) != 0 && strstr(e.msg, "power of two"), "alignment: %s", e.msg);
    gguf_writer_free(w);
    unlink(path);

    /* files that are not there / too small */
    rc = gguf_open(&g, tmp_path("does-not-exist.gguf"), NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "cannot open") && good_msg(e.msg, tmp_path("does-not-exist.gguf")), "%s", e.msg);
    CHECK(write_all(path, "", 0) == 0, "write empty file");
    rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "truncated") && good_msg(e.msg, path), "empty file: %s", e.msg);
    CHECK(write_all(path, "GGML", 4) == 0, "write 4 bytes");
    rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc != 0 && strstr(e.msg, "bad magic") && good_msg(e.msg, path), "short bad magic: %s", e.msg);
    gguf_close(&g);
    unlink(path);
}

/* ---- damaged files ---- */

/* Offsets of the fields of the base file, found by walking it. */
typedef struct {
    size_t kv_key[8], kv_type[8], kv_val[8];
    size_t ti_name[4], ti_ndims[4], ti_ne[4], ti_type[4], ti_off[4];
    uint64_t ti_offv[4];
    size_t data_offset;
    int n_kv, n_t;
} layout_t;

static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void walk(const uint8_t *b, layout_t *L) {
    size_t p = 8;
    L->n_t = (int)get_u64(b + p); p += 8;
    L->n_kv = (int)get_u64(b + p); p += 8;
    for (int i = 0; i < L->n_kv; i++) {
        L->kv_key[i] = p;
        p += 8 + get_u64(b + p);
        L->kv_type[i] = p;
        uint32_t t = get_u32(b + p); p += 4;
        L->kv_val[i] = p;
        if (t == GGUF_TYPE_STRING) p += 8 + get_u64(b + p);
        else if (t == GGUF_TYPE_UINT32) p += 4;
        else if (t == GGUF_TYPE_ARRAY) { PG_ASSERT(get_u32(b + p) == GGUF_TYPE_INT32); p += 12 + 4 * get_u64(b + p + 4); }
        else PG_ASSERT(0);
    }
    for (int i = 0; i < L->n_t; i++) {
        L->ti_name[i] = p;
        p += 8 + get_u64(b + p);
        L->ti_ndims[i] = p;
        uint32_t nd = get_u32(b + p); p += 4;
        L->ti_ne[i] = p;
        p += 8 * nd;
        L->ti_type[i] = p; p += 4;
        L->ti_off[i] = p;
        L->ti_offv[i] = get_u64(b + p); p += 8;
    }
    L->data_offset = (p + 31) / 32 * 32;
}

typedef struct {
    const char *label;
    size_t at;      /* patch position (unless width == 0) */
    int width;      /* 1, 4 or 8 bytes; 0: no patch */
    uint64_t value;
    size_t at2;     /* optional second patch */
    int width2;
    uint64_t value2;
    const char *expect;
} dcase;

static void patch(uint8_t *b, size_t at, int width, uint64_t v) {
    if (width == 1) b[at] = (uint8_t)v;
    else if (width == 4) { uint32_t x = (uint32_t)v; memcpy(b + at, &x, 4); }
    else if (width == 8) memcpy(b + at, &v, 8);
}

/* Opens the damaged image both from a file and from memory; both must fail
 * cleanly with a message containing one of the expected phrases ('|'-separated). */
static void expect_fail(const char *label, const uint8_t *buf, size_t len, const char *expect) {
    const char *path = tmp_path("damaged.gguf");
    CHECK(write_all(path, buf, len) == 0, "write %s", label);
    for (int mem = 0; mem < 2; mem++) {
        gguf_file g;
        pg_error e = {{0}};
        const char *name = mem ? "memimage.gguf" : path;
        int rc = mem ? gguf_open_memory(&g, buf, len, name, NULL, &e) : gguf_open(&g, path, NULL, &e);
        CHECK(rc == -1, "%s (%s): opened a damaged file", label, mem ? "memory" : "file");
        if (rc == 0) {
            gguf_close(&g);
            continue;
        }
        CHECK(g.path == NULL && g.kv == NULL && g.tensors == NULL, "%s: state left after failure", label);
        gguf_close(&g);
        CHECK(good_msg(e.msg, name), "%s: message not one line 'PATH: problem': %s", label, e.msg);
        bool found = false;
        char tmp[128];
        snprintf(tmp, sizeof tmp, "%s", expect);
        for (char *tok = strtok(tmp, "|"); tok; tok = strtok(NULL, "|"))
            if (strstr(e.msg, tok)) found = true;
        CHECK(found, "%s: message lacks '%s': %s", label, expect, e.msg);
        if (getenv("PG_TEST_VERBOSE") && mem) fprintf(stderr, "  %-32s -> %s\n", label, e.msg);
    }
}

static uint8_t *make_base(size_t *len, layout_t *L) {
    const char *path = tmp_path("base.gguf");
    static float a[32];
    static block_q8_0 q[2];
    static uint16_t h[16];
    for (int i = 0; i < 32; i++) a[i] = (float)i;
    int32_t arr[] = {1, 2, 3};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "test.k1", 7);
    gguf_writer_set_u32(w, "test.k2", 8);
    gguf_writer_set_u32(w, "general.alignment", 32);
    gguf_writer_set_arr_i32(w, "test.arr", arr, 3);
    int64_t ne_a[] = {8, 4}, ne_b[] = {64}, ne_c[] = {16};
    gguf_writer_add_tensor(w, "t.a.weight", PG_TYPE_F32, 2, ne_a, a, sizeof a);   /* 128 bytes */
    gguf_writer_add_tensor(w, "t.b.weight", PG_TYPE_Q8_0, 1, ne_b, q, sizeof q);  /* 68 -> 96 */
    gguf_writer_add_tensor(w, "t.c.weight", PG_TYPE_F16, 1, ne_c, h, sizeof h);   /* 32, ends the file */
    pg_error e = {{0}};
    int rc = gguf_writer_write(w, path, &e);
    gguf_writer_free(w);
    CHECK(rc == 0, "write base: %s", e.msg);
    uint8_t *b = NULL;
    if (rc || read_all(path, &b, len)) return NULL;
    walk(b, L);
    gguf_file g;
    rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc == 0, "base must open: %s", e.msg);
    if (rc == 0) {
        CHECK(g.data_offset == L->data_offset, "walker data offset");
        CHECK(g.tensors[2].file_offset + g.tensors[2].nbytes == *len, "last tensor ends the file");
        gguf_close(&g);
    }
    unlink(path);
    return b;
}

static void test_damaged(void) {
    size_t len = 0;
    layout_t L;
    uint8_t *base = make_base(&len, &L);
    if (!base) return;
    CHECK(L.n_kv == 5 && L.n_t == 3, "base layout");
    const uint64_t big = 1ull << 60;
    const dcase cases[] = {
        {"wrong magic", 0, 1, 'X', 0, 0, 0, "not a GGUF file (bad magic)"},
        {"version 1", 4, 4, 1, 0, 0, 0, "unsupported GGUF version 1"},
        {"version 99", 4, 4, 99, 0, 0, 0, "unsupported GGUF version 99"},
        {"big-endian version", 4, 4, 3u << 24, 0, 0, 0, "unsupported GGUF version"},
        {"absurd tensor count", 8, 8, big, 0, 0, 0, "tensor count"},
        {"tensor count past file", 8, 8, 1000, 0, 0, 0, "cannot fit"},
        {"absurd kv count", 16, 8, big, 0, 0, 0, "kv count"},
        {"kv count past file", 16, 8, 1000, 0, 0, 0, "cannot fit"},
        {"key length past end", L.kv_key[0], 8, len, 0, 0, 0, "past end of file"},
        {"key length over limit", L.kv_key[0], 8, 1ull << 40, 0, 0, 0, "exceeds the limit"},
        {"empty key", L.kv_key[1], 8, 0, 0, 0, 0, "empty key|invalid value type"},
        {"string value past end", L.kv_val[0], 8, len, 0, 0, 0, "past end of file"},
        {"non-UTF-8 key", L.kv_key[1] + 8, 1, 0xff, 0, 0, 0, "UTF-8"},
        {"NUL in key", L.kv_key[1] + 9, 1, 0, 0, 0, 0, "UTF-8"},
        {"non-UTF-8 string value", L.kv_val[0] + 8, 1, 0xc0, 0, 0, 0, "UTF-8"},
        {"invalid kv type", L.kv_type[1], 4, 13, 0, 0, 0, "invalid value type 13"},
        {"nested array", L.kv_val[4], 4, GGUF_TYPE_ARRAY, 0, 0, 0, "nested"},
        {"bad array element type", L.kv_val[4], 4, 77, 0, 0, 0, "invalid array element type 77"},
        {"array past end", L.kv_val[4] + 4, 8, 1000, 0, 0, 0, "past end of file"},
        {"array over limit", L.kv_val[4] + 4, 8, 1ull << 40, 0, 0, 0, "exceeds the limit"},
        {"duplicate key", L.kv_key[2] + 8 + 6, 1, '1', 0, 0, 0, "duplicate key 'test.k1'"},
        {"alignment not power of two", L.kv_val[3], 4, 48, 0, 0, 0, "not a power of two"},
        {"alignment zero", L.kv_val[3], 4, 0, 0, 0, 0, "not a power of two"},
        {"alignment not u32", L.kv_type[3], 4, GGUF_TYPE_INT32, 0, 0, 0, "must be u32"},
        {"tensor name past end", L.ti_name[1], 8, len, 0, 0, 0, "past end of file"},
        {"non-UTF-8 tensor name", L.ti_name[0] + 8, 1, 0xff, 0, 0, 0, "tensor 0 name"},
        {"duplicate tensor name", L.ti_name[1] + 8 + 2, 1, 'a', 0, 0, 0, "duplicate tensor name 't.a.weight'"},
        {"n_dims 0", L.ti_ndims[0], 4, 0, 0, 0, 0, "n_dims 0"},
        {"n_dims 5", L.ti_ndims[1], 4, 5, 0, 0, 0, "n_dims 5"},
        {"zero dim", L.ti_ne[0] + 8, 8, 0, 0, 0, 0, "ne[1] = 0 out of range"},
        {"dim over max_dim", L.ti_ne[0], 8, 1ull << 41, 0, 0, 0, "out of range"},
        {"dims overflow", L.ti_ne[0], 8, 1ull << 40, L.ti_ne[0] + 8, 8, 1ull << 40, "overflows"},
        {"Q8_0 row not a block multiple", L.ti_ne[1], 8, 33, 0, 0, 0, "block size 32"},
        {"unknown type 200", L.ti_type[0], 4, 200, 0, 0, 0, "unknown type id 200"},
        {"removed type id 4", L.ti_type[2], 4, 4, 0, 0, 0, "unknown type id 4"},
        {"pregate's own Q16_0 id", L.ti_type[2], 4, PG_TYPE_Q16_0, 0, 0, 0, "unknown type id 64"},
        {"tensor offset past end", L.ti_off[2], 8, 1ull << 20, 0, 0, 0, "extends past end of file"},
        {"tensor offset near 2^64", L.ti_off[2], 8, UINT64_MAX - 31, 0, 0, 0, "extends past end of file"},
        {"misaligned offset", L.ti_off[1], 8, L.ti_offv[1] + 1, 0, 0, 0, "not a multiple of the alignment"},
        {"overlapping tensors", L.ti_off[1], 8, L.ti_offv[0], 0, 0, 0, "overlap"},
        {"grown tensor overlaps next", L.ti_ne[0], 8, 9, 0, 0, 0, "overlap"},
        {"last tensor grown past end", L.ti_ne[2], 8, 32, 0, 0, 0, "extends past end of file"},
    };
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const dcase *c = &cases[i];
        memcpy(buf, base, len);
        patch(buf, c->at, c->width, c->value);
        if (c->width2) patch(buf, c->at2, c->width2, c->value2);
        expect_fail(c->label, buf, len, c->expect);
    }
    /* the tensor offset message names the tensor, its data range and the file size */
    {
        memcpy(buf, base, len);
        patch(buf, L.ti_off[2], 8, 1ull << 20);
        gguf_file g;
        pg_error e;
        CHECK(gguf_open_memory(&g, buf, len, "model.gguf", NULL, &e) != 0, "offset past end");
        char want[200];
        snprintf(want, sizeof want, "model.gguf: tensor 2 't.c.weight' data [offset %zu, size 32] extends past end of file (size %zu)",
                 L.data_offset + (1u << 20), len);
        CHECK(strcmp(e.msg, want) == 0, "got: %s", e.msg);
    }
    /* limits: a caller can tighten them */
    {
        gguf_limits lim;
        gguf_limits_default(&lim);
        lim.max_tensors = 2;
        gguf_file g;
        pg_error e;
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", &lim, &e) != 0 && strstr(e.msg, "tensor count 3 exceeds"),
              "max_tensors: %s", e.msg);
        gguf_limits_default(&lim);
        lim.max_dim = 16;
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", &lim, &e) != 0 && strstr(e.msg, "out of range"),
              "max_dim: %s", e.msg);
        gguf_limits_default(&lim);
        lim.max_kv = 1;
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", &lim, &e) != 0 && strstr(e.msg, "kv count"),
              "max_kv: %s", e.msg);
        gguf_limits_default(&lim);
        lim.max_string = 4;
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", &lim, &e) != 0 && strstr(e.msg, "string length"),
              "max_string: %s", e.msg);
        gguf_limits_default(&lim);
        lim.max_array = 1;
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", &lim, &e) != 0 && strstr(e.msg, "array length"),
              "max_array: %s", e.msg);
        /* the defaults accept it; --limits parsing; process-wide limits apply to a NULL argument */
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", NULL, &e) == 0, "defaults: %s", e.msg);
        gguf_close(&g);
        gguf_limits saved;
        gguf_limits_default(&saved);
        lim = saved;
        CHECK(gguf_limits_parse("tensors=2,dim=99", &lim, &e) == 0 && lim.max_tensors == 2 && lim.max_dim == 99 &&
                  lim.max_kv == saved.max_kv, "parse: %s", e.msg);
        gguf_limits_set(&lim);
        CHECK(gguf_open_memory(&g, base, len, "lim.gguf", NULL, &e) != 0 && strstr(e.msg, "tensor count 3 exceeds"),
              "process-wide limit: %s", e.msg);
        gguf_limits_set(&saved);
        const char *bad[] = {"tensors", "tensors=", "tensors=0", "tensors=-3", "tensors=1x", "bogus=3", "kv=1,,"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            CHECK(gguf_limits_parse(bad[i], &lim, &e) != 0 && strstr(e.msg, "limits"), "parse '%s' accepted", bad[i]);
    }
    /* truncated at every byte of the header region and at points in the data */
    char label[64];
    for (size_t cut = 0; cut <= L.data_offset; cut++) {
        snprintf(label, sizeof label, "truncated at %zu", cut);
        expect_fail(label, base, cut, "truncated|past end of file|cannot fit");
    }
    size_t data_cuts[] = {1, 31, 64, 127, 128, 129, 200, 224, 255};
    for (size_t i = 0; i < sizeof data_cuts / sizeof data_cuts[0]; i++) {
        size_t cut = L.data_offset + data_cuts[i];
        if (cut >= len) continue;
        snprintf(label, sizeof label, "truncated at data+%zu", data_cuts[i]);
        expect_fail(label, base, cut, "extends past end of file");
    }
    /* random single-byte damage: must never crash; failures stay one line */
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, base, len);
        int nflip = 1 + it % 3;
        for (int k = 0; k < nflip; k++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            size_t at = (size_t)(rng % L.data_offset);
            buf[at] = (uint8_t)(rng >> 32);
        }
        gguf_file g;
        pg_error e = {{0}};
        if (gguf_open_memory(&g, buf, len, "fuzz.gguf", NULL, &e) == 0) gguf_close(&g);
        else CHECK(good_msg(e.msg, "fuzz.gguf"), "fuzz message: %s", e.msg);
    }
    free(buf);
    free(base);
    unlink(tmp_path("damaged.gguf"));
}

/* ---- the shared tiny llama ---- */

static void test_tiny_llama(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/llama-2-tiny-random.gguf", test_shared_data());
    if (access(path, R_OK) != 0) TEST_SKIP("%s not found", path);
    gguf_file g;
    pg_error e = {{0}};
    int rc = gguf_open(&g, path, NULL, &e);
    CHECK(rc == 0, "open: %s", e.msg);
    if (rc) return;
    char *arch = gguf_get_str(&g, "general.architecture");
    CHECK(arch && strcmp(arch, "llama") == 0, "arch %s", arch ? arch : "(null)");
    free(arch);
    int64_t emb = 0;
    CHECK(gguf_get_int(&g, "llama.embedding_length", &emb) && emb > 0, "embedding_length %lld", (long long)emb);
    const gguf_kv *tok = gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
    CHECK(tok && tok->arr_n == 32000, "token count %llu", tok ? (unsigned long long)tok->arr_n : 0ull);
    CHECK(g.n_tensors > 0, "no tensors");
    const pg_tensor *te = gguf_find_tensor(&g, "token_embd.weight");
    CHECK(te && te->ne[0] == emb, "token_embd.weight ne[0]");

    /* copy everything through the writer and read it back */
    const char *out = tmp_path("tiny-copy.gguf");
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++) gguf_writer_copy_kv(w, &g.kv[i]);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    rc = gguf_writer_write(w, out, &e);
    gguf_writer_free(w);
    CHECK(rc == 0, "write copy: %s", e.msg);
    gguf_file c;
    rc = rc ? -1 : gguf_open(&c, out, NULL, &e);
    CHECK(rc == 0, "open copy: %s", e.msg);
    if (rc == 0) {
        CHECK(c.n_kv == g.n_kv && c.n_tensors == g.n_tensors, "copy counts");
        const gguf_kv *t2 = gguf_get_arr(&c, "tokenizer.ggml.tokens", GGUF_TYPE_STRING);
        bool same = t2 && tok && t2->arr_n == tok->arr_n;
        for (uint64_t i = 0; same && i < tok->arr_n; i++)
            same = t2->arr_str[i].len == tok->arr_str[i].len &&
                   memcmp(t2->arr_str[i].s, tok->arr_str[i].s, tok->arr_str[i].len) == 0;
        CHECK(same, "copied tokens differ");
        for (uint64_t i = 0; i < g.n_tensors; i++)
            CHECK(c.tensors[i].nbytes == g.tensors[i].nbytes &&
                      memcmp(c.tensors[i].data, g.tensors[i].data, g.tensors[i].nbytes) == 0,
                  "copied tensor %s differs", g.tensors[i].name);
        gguf_close(&c);
    }
    unlink(out);
    gguf_close(&g);
}

int main(void) {
    snprintf(tmpdir_, sizeof tmpdir_, "/tmp/pg_test_gguf_XXXXXX");
    if (!mkdtemp(tmpdir_)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_roundtrip);
    TEST_RUN(test_alignment_and_writer_errors);
    TEST_RUN(test_damaged);
    TEST_RUN(test_tiny_llama);
    rmdir(tmpdir_);
    return test_summary("test_gguf");
}
