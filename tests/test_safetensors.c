/* test_safetensors.c - hand-made .safetensors files (valid and damaged) and
 * Hugging Face model directories (single file, sharded with an index). */
#include "safetensors.h"
#include "test.h"

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

static int write_all(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(buf, 1, len, f) : 0;
    return fclose(f) == 0 && w == len ? 0 : -1;
}

/* Builds u64 header length | header (space-padded to 8) | data into a heap buffer. */
static uint8_t *make_image(const char *header, const void *data, size_t dlen, size_t *len) {
    size_t h = strlen(header), hp = (h + 7) / 8 * 8;
    *len = 8 + hp + dlen;
    uint8_t *b = malloc(*len);
    uint64_t hl = hp;
    memcpy(b, &hl, 8);
    memcpy(b + 8, header, h);
    memset(b + 8 + h, ' ', hp - h);
    if (dlen) memcpy(b + 8 + hp, data, dlen);
    return b;
}

static int write_st(const char *path, const char *header, const void *data, size_t dlen) {
    size_t len;
    uint8_t *b = make_image(header, data, dlen, &len);
    int rc = write_all(path, b, len);
    free(b);
    return rc;
}

static bool good_msg(const char *msg, const char *path) {
    size_t n = strlen(path);
    return !strchr(msg, '\n') && strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' && msg[n + 2];
}

static uint8_t data_[256];

static void test_parse(void) {
    for (int i = 0; i < 256; i++) data_[i] = (uint8_t)(i * 37 + 11);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"h\\u00e9\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]},"
        "\"c\":{\"dtype\":\"BF16\",\"shape\":[2,1,2],\"data_offsets\":[32,40]},"
        "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[40,48]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[1,1,1,2],\"data_offsets\":[48,64]},"
        "\"i8\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[64,67]},"
        "\"i32\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[68,76]},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[76,76]}}";
    const char *path = tmp_path("ok.safetensors");
    CHECK(write_st(path, hdr, data_, 76) == 0, "write");
    size_t len;
    uint8_t *img = make_image(hdr, data_, 76, &len);
    size_t data_start = len - 76;
    for (int mem = 0; mem < 2; mem++) {
        st_file f;
        pg_error e = {{0}};
        int rc = mem ? st_open_memory(&f, img, len, "mem.safetensors", &e) : st_open(&f, path, &e);
        CHECK(rc == 0, "open (%s): %s", mem ? "memory" : "file", e.msg);
        if (rc) continue;
        CHECK(f.n_tensors == 8, "n_tensors %llu", (unsigned long long)f.n_tensors);
        CHECK(f.n_meta == 2, "n_meta %llu", (unsigned long long)f.n_meta);
        CHECK(st_meta(&f, "format") && strcmp(st_meta(&f, "format"), "pt") == 0, "meta format");
        CHECK(st_meta(&f, "note") && strcmp(st_meta(&f, "note"), "h\xc3\xa9") == 0, "meta note");
        CHECK(st_meta(&f, "missing") == NULL, "meta missing");
        CHECK(st_find(&f, "__metadata__") == NULL, "metadata is not a tensor");
        struct { const char *name; pg_type type; int nd; int64_t ne[4]; size_t off, nbytes; } exp[] = {
            {"a", PG_TYPE_F32, 2, {3, 2, 1, 1}, 0, 24},
            {"b", PG_TYPE_F16, 1, {4, 1, 1, 1}, 24, 8},
            {"c", PG_TYPE_BF16, 3, {2, 1, 2, 1}, 32, 8},
            {"s", PG_TYPE_I64, 1, {1, 1, 1, 1}, 40, 8},
            {"d", PG_TYPE_F64, 4, {2, 1, 1, 1}, 48, 16},
            {"i8", PG_TYPE_I8, 1, {3, 1, 1, 1}, 64, 3},
            {"i32", PG_TYPE_I32, 1, {2, 1, 1, 1}, 68, 8},
            {"z", PG_TYPE_F32, 2, {4, 0, 1, 1}, 76, 0},
        };
        for (size_t i = 0; i < sizeof exp / sizeof exp[0]; i++) {
            const pg_tensor *t = st_find(&f, exp[i].name);
            CHECK(t != NULL, "tensor %s", exp[i].name);
            if (!t) continue;
            CHECK(t->type == exp[i].type, "%s type %d", t->name, t->type);
            CHECK(t->n_dims == exp[i].nd, "%s n_dims %d", t->name, t->n_dims);
            for (int d = 0; d < 4; d++)
                CHECK(t->ne[d] == exp[i].ne[d], "%s ne[%d] = %lld", t->name, d, (long long)t->ne[d]);
            CHECK(t->nbytes == exp[i].nbytes, "%s nbytes %zu", t->name, t->nbytes);
            CHECK(t->file_offset == data_start + exp[i].off, "%s file_offset", t->name);
            CHECK(t->data == f.map + t->file_offset, "%s data pointer", t->name);
            CHECK(t->nbytes == 0 || memcmp(t->data, data_ + exp[i].off, t->nbytes) == 0, "%s bytes", t->name);
            CHECK(pg_tensor_nelements(t) * (int64_t)pg_type_info(t->type)->type_size == (int64_t)t->nbytes,
                  "%s nelements", t->name);
        }
        CHECK(st_find(&f, "nope") == NULL, "missing tensor");
        st_close(&f);
        st_close(&f);
    }
    st_close(NULL);
    free(img);
    unlink(path);
}

typedef struct {
    const char *label;
    const char *header;  /* NULL: raw bytes below */
    size_t dlen;         /* data bytes after the header */
    const char *expect;  /* '|'-separated alternatives */
} stcase;

static void expect_fail(const char *label, const uint8_t *img, size_t len, const char *expect) {
    const char *path = tmp_path("bad.safetensors");
    CHECK(write_all(path, img, len) == 0, "write %s", label);
    for (int mem = 0; mem < 2; mem++) {
        st_file f;
        pg_error e = {{0}};
        const char *name = mem ? "mem.safetensors" : path;
        int rc = mem ? st_open_memory(&f, img, len, name, &e) : st_open(&f, path, &e);
        CHECK(rc == -1, "%s (%s): opened a damaged file", label, mem ? "memory" : "file");
        if (rc == 0) {
            st_close(&f);
            continue;
        }
        CHECK(f.path == NULL && f.tensors == NULL && f.meta_keys == NULL, "%s: state left after failure", label);
        st_close(&f);
        CHECK(good_msg(e.msg, name), "%s: message not one line 'PATH: problem': %s", label, e.msg);
        bool found = false;
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s", expect);
        for (char *tok = strtok(tmp, "|"); tok; tok = strtok(NULL, "|"))
            if (strstr(e.msg, tok)) found = true;
        CHECK(found, "%s: message lacks '%s': %s", label, expect, e.msg);
        if (getenv("PG_TEST_VERBOSE") && mem) fprintf(stderr, "  %-28s -> %s\n", label, e.msg);
    }
    unlink(path);
}

static void test_damaged(void) {
#define T(name, extra) "\"" name "\":{" extra "}"
    const stcase cases[] = {
        {"header not JSON", "{\"a\": {\"dtype\": \"F32\",\n \"shape\": [1], ", 4, "not valid JSON|line 2"},
        {"header JSON array", "[1, 2]", 0, "not a JSON object"},
        {"entry not object", "{\"a\": 3}", 0, "not a JSON object"},
        {"duplicate name", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]") ","
                            T("a", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]") "}", 8, "duplicate"},
        {"offsets past end", "{" T("a", "\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]") "}", 8,
         "extend past end of file"},
        {"overlapping", "{" T("a", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]") ","
                         T("b", "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]") "}", 16, "overlap"},
        {"size/shape mismatch", "{" T("a", "\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]") "}", 16,
         "does not match"},
        {"unsupported dtype", "{" T("w.x", "\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]") "}", 4,
         "unsupported dtype F8_E4M3 for tensor w.x"},
        {"bool dtype", "{" T("m", "\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]") "}", 4,
         "unsupported dtype BOOL"},
        {"missing dtype", "{" T("a", "\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, "no dtype"},
        {"dtype not string", "{" T("a", "\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]") "}", 4, "not a string"},
        {"missing shape", "{" T("a", "\"dtype\":\"F32\",\"data_offsets\":[0,4]") "}", 4, "no shape"},
        {"negative dim", "{" T("a", "\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]") "}", 4,
         "non-negative"},
        {"float dim", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]") "}", 4, "non-negative"},
        {"5 dims", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]") "}", 4,
         "5 dimensions"},
        {"dims overflow", "{" T("a", "\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]") "}",
         4, "overflows"},
        {"missing offsets", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1]") "}", 4, "no data_offsets"},
        {"offsets one int", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]") "}", 4,
         "two integers"},
        {"begin > end", "{" T("a", "\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]") "}", 4, "invalid"},
        {"negative begin", "{" T("a", "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]") "}", 4, "invalid"},
        {"metadata not object", "{\"__metadata__\":[1]}", 0, "__metadata__"},
        {"metadata value not string", "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__"},
        {"bad UTF-8 in header", "{\"\xff\":1}", 0, "not valid JSON"},
    };
#undef T
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        uint8_t *img = make_image(cases[i].header, data_, cases[i].dlen, &len);
        expect_fail(cases[i].label, img, len, cases[i].expect);
        free(img);
    }
    /* the JSON error carries line and column */
    {
        size_t len;
        uint8_t *img = make_image("{\"a\": {\"dtype\": \"F32\",\n \"shape\": [1], ", data_, 4, &len);
        st_file f;
        pg_error e;
        CHECK(st_open_memory(&f, img, len, "x.safetensors", &e) != 0 && strstr(e.msg, "line 2, column"), "%s", e.msg);
        free(img);
    }
    /* header length: larger than the file, absurd, file too small */
    uint8_t raw[64];
    memset(raw, ' ', sizeof raw);
    uint64_t hl = 1000;
    memcpy(raw, &hl, 8);
    raw[8] = '{';
    raw[9] = '}';
    expect_fail("header length past file", raw, sizeof raw, "exceeds the file size");
    hl = 1ull << 40;
    memcpy(raw, &hl, 8);
    expect_fail("absurd header length", raw, sizeof raw, "exceeds the limit");
    hl = UINT64_MAX;
    memcpy(raw, &hl, 8);
    expect_fail("header length 2^64-1", raw, sizeof raw, "exceeds the limit");
    expect_fail("file of 5 bytes", raw, 5, "truncated");
    expect_fail("empty file", raw, 0, "truncated");
    hl = 0;
    memcpy(raw, &hl, 8);
    expect_fail("empty header", raw, 8, "not valid JSON");

    /* a valid file truncated at every byte must fail cleanly */
    size_t len;
    uint8_t *img = make_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data_, 8, &len);
    for (size_t cut = 0; cut < len; cut++) {
        st_file f;
        pg_error e = {{0}};
        int rc = st_open_memory(&f, img, cut, "cut.safetensors", &e);
        CHECK(rc != 0 && good_msg(e.msg, "cut.safetensors"), "cut at %zu: %s", cut, e.msg);
        if (rc == 0) st_close(&f);
    }
    free(img);
    unlink(tmp_path("bad.safetensors"));
}

/* ---- model directories ---- */

static char dir_[128];

static const char *dpath(const char *name) {
    static char buf[4][300];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, 300, "%s/%s", dir_, name);
    return p;
}

static void write_text(const char *path, const char *s) { CHECK(write_all(path, s, strlen(s)) == 0, "write %s", path); }

static void clear_dir(void) {
    const char *names[] = {"config.json", "model.safetensors.index.json", "model.safetensors",
                           "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "other.safetensors", "x"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(dpath(names[i]));
}

static const char *SHARD1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                            "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}}";
static const char *SHARD2 = "{\"c\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,12]}}";
static const char *INDEX = "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
                           "\"a\":\"model-00001-of-00002.safetensors\","
                           "\"b\":\"model-00001-of-00002.safetensors\","
                           "\"c\":\"model-00002-of-00002.safetensors\"}}";

static void setup_sharded(void) {
    clear_dir();
    write_text(dpath("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 8}");
    CHECK(write_st(dpath("model-00001-of-00002.safetensors"), SHARD1, data_, 24) == 0, "shard1");
    CHECK(write_st(dpath("model-00002-of-00002.safetensors"), SHARD2, data_ + 100, 12) == 0, "shard2");
    write_text(dpath("model.safetensors.index.json"), INDEX);
}

static void expect_dir_fail(const char *label, const char *expect) {
    hf_dir d;
    pg_error e = {{0}};
    int rc = hf_dir_open(&d, dir_, &e);
    CHECK(rc == -1, "%s: opened", label);
    if (rc == 0) {
        hf_dir_close(&d);
        return;
    }
    CHECK(d.files == NULL && d.tensors == NULL && d.config_json == NULL && d.dir == NULL, "%s: state left", label);
    CHECK(!strchr(e.msg, '\n') && strncmp(e.msg, dir_, strlen(dir_)) == 0, "%s: message: %s", label, e.msg);
    bool found = false;
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s", expect);
    for (char *tok = strtok(tmp, "|"); tok; tok = strtok(NULL, "|"))
        if (strstr(e.msg, tok)) found = true;
    CHECK(found, "%s: message lacks '%s': %s", label, expect, e.msg);
    if (getenv("PG_TEST_VERBOSE")) fprintf(stderr, "  %-28s -> %s\n", label, e.msg);
    hf_dir_close(&d);
}

static void test_hf_dir(void) {
    snprintf(dir_, sizeof dir_, "%s/model", tmpdir_);
    CHECK(mkdir(dir_, 0755) == 0, "mkdir");
    CHECK(!hf_is_dir(dir_), "no config.json yet");
    setup_sharded();
    CHECK(hf_is_dir(dir_), "hf_is_dir");
    CHECK(!hf_is_dir(dpath("config.json")), "a file is not a dir");
    CHECK(!hf_is_dir(dpath("nonexistent")), "nonexistent");

    hf_dir d;
    pg_error e = {{0}};
    int rc = hf_dir_open(&d, dir_, &e);
    CHECK(rc == 0, "open: %s", e.msg);
    if (rc == 0) {
        CHECK(d.n_files == 2 && d.n_tensors == 3, "files %d tensors %llu", d.n_files, (unsigned long long)d.n_tensors);
        CHECK(d.config_json && strstr(d.config_json, "\"model_type\""), "config_json");
        const pg_tensor *a = hf_dir_find(&d, "a"), *c = hf_dir_find(&d, "c");
        CHECK(a && a->file_index == 0 && a->ne[0] == 2 && a->ne[1] == 2 && memcmp(a->data, data_, 16) == 0, "a");
        CHECK(c && c->file_index == 1 && c->type == PG_TYPE_F16 && c->ne[0] == 2 && c->ne[1] == 3 &&
                  memcmp(c->data, data_ + 100, 12) == 0,
              "c");
        CHECK(c && strstr(d.files[c->file_index].path, "model-00002-of-00002.safetensors"), "c's file");
        CHECK(hf_dir_find(&d, "zz") == NULL, "missing");
        hf_dir_close(&d);
        hf_dir_close(&d);
    }

    /* error cases */
    unlink(dpath("model-00002-of-00002.safetensors"));
    expect_dir_fail("shard missing", "does not exist");
    setup_sharded();
    write_text(dpath("model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"../x\"}}");
    expect_dir_fail("index names ../x", "invalid shard");
    write_text(dpath("model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"sub/x.safetensors\"}}");
    expect_dir_fail("index names sub/x", "invalid shard");
    write_text(dpath("model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"..\"}}");
    expect_dir_fail("index names ..", "invalid shard");
    write_text(dpath("model.safetensors.index.json"), "{\"weight_map\":[1]}");
    expect_dir_fail("weight_map not object", "weight_map");
    write_text(dpath("model.safetensors.index.json"), "{\"weight_map\": {\"a\": ");
    expect_dir_fail("index not JSON", "not valid JSON");
    write_text(dpath("model.safetensors.index.json"),
               "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\",\"zz\":\"model-00002-of-00002.safetensors\"}}");
    expect_dir_fail("tensor not in its shard", "not found in shard");
    /* the same tensor in two shards */
    setup_sharded();
    CHECK(write_st(dpath("model-00002-of-00002.safetensors"),
                   "{\"c\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[12,28]}}",
                   data_, 28) == 0,
          "shard2 with a");
    expect_dir_fail("duplicate across shards", "duplicate tensor name 'a'");
    /* a damaged shard: its own message comes through */
    setup_sharded();
    CHECK(write_st(dpath("model-00002-of-00002.safetensors"),
                   "{\"c\":{\"dtype\":\"F8_E5M2\",\"shape\":[3,2],\"data_offsets\":[0,6]}}", data_, 12) == 0, "bad shard");
    expect_dir_fail("damaged shard", "unsupported dtype F8_E5M2 for tensor c");
    /* config.json */
    setup_sharded();
    write_text(dpath("config.json"), "{\"model_type\": \"llama\",\n  \"hidden_size\": }");
    expect_dir_fail("bad config.json", "line 2");
    write_text(dpath("config.json"), "[\"llama\"]");
    expect_dir_fail("config.json not object", "not a JSON object");
    unlink(dpath("config.json"));
    expect_dir_fail("no config.json", "config.json: cannot open");

    /* no index: model.safetensors, else the only *.safetensors */
    clear_dir();
    write_text(dpath("config.json"), "{}");
    expect_dir_fail("no weights", "no .safetensors");
    CHECK(write_st(dpath("other.safetensors"), SHARD2, data_, 12) == 0, "other");
    rc = hf_dir_open(&d, dir_, &e);
    CHECK(rc == 0 && d.n_files == 1 && hf_dir_find(&d, "c"), "single other.safetensors: %s", e.msg);
    if (rc == 0) hf_dir_close(&d);
    CHECK(write_st(dpath("model-00001-of-00002.safetensors"), SHARD1, data_, 24) == 0, "second file");
    expect_dir_fail("two files, no index", "2 .safetensors files");
    CHECK(write_st(dpath("model.safetensors"), SHARD1, data_, 24) == 0, "model.safetensors");
    rc = hf_dir_open(&d, dir_, &e);
    CHECK(rc == 0 && d.n_files == 1 && d.n_tensors == 2 && hf_dir_find(&d, "b") && strstr(d.files[0].path, "/model.safetensors"),
          "model.safetensors preferred: %s", e.msg);
    if (rc == 0) hf_dir_close(&d);

    rc = hf_dir_open(&d, dpath("nonexistent"), &e);
    CHECK(rc != 0 && strstr(e.msg, "cannot open"), "nonexistent dir: %s", e.msg);
    rc = hf_dir_open(&d, dpath("config.json"), &e);
    CHECK(rc != 0 && strstr(e.msg, "not a directory"), "file as dir: %s", e.msg);
    clear_dir();
    rmdir(dir_);
}

/* The checked-in fixtures (if present): every one must open. */
static void test_fixtures(void) {
    const char *dirs[] = {"tests/fixtures/llama", "tests/fixtures/qwen3moe-sharded"};
    int found = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (!hf_is_dir(dirs[i])) continue;
        found++;
        hf_dir d;
        pg_error e = {{0}};
        int rc = hf_dir_open(&d, dirs[i], &e);
        CHECK(rc == 0, "%s: %s", dirs[i], e.msg);
        if (rc == 0) {
            CHECK(d.n_tensors > 0 && d.n_files >= 1, "%s empty", dirs[i]);
            hf_dir_close(&d);
        }
    }
    if (!found) TEST_SKIP("no fixtures under tests/fixtures");
}

int main(void) {
    snprintf(tmpdir_, sizeof tmpdir_, "/tmp/pg_test_st_XXXXXX");
    if (!mkdtemp(tmpdir_)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_parse);
    TEST_RUN(test_damaged);
    TEST_RUN(test_hf_dir);
    TEST_RUN(test_fixtures);
    rmdir(tmpdir_);
    return test_summary("test_safetensors");
}
