/* test_store.c - the slow tier: every backend reads the right bytes (odd
 * offsets and sizes, ranges touching the end of the file, several threads),
 * link parsing and timing (lower bounds only), fault injection, bad ranges. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "experts/store.h"
#include "test.h"

#define FILE_SIZE ((size_t)3 * 1024 * 1024 + 1237)

static char path_[256];
static unsigned char *data_; /* the file's bytes */
static void *map_;

static uint64_t rng_state_ = 0x9e3779b97f4a7c15ull;
static uint64_t rng_(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static double now_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int make_file_(const char *dir, char *path, size_t pathlen, size_t size,
                      const unsigned char *bytes) {
    snprintf(path, pathlen, "%s/pg_test_store_XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, bytes + done, size - done);
        if (w <= 0) { close(fd); unlink(path); return -1; }
        done += (size_t)w;
    }
    close(fd);
    return 0;
}

static int setup_(void) {
    data_ = malloc(FILE_SIZE);
    for (size_t i = 0; i < FILE_SIZE; i++) data_[i] = (unsigned char)(rng_(&rng_state_) >> 29);
    const char *dir = getenv("TMPDIR");
    if (make_file_(dir ? dir : "/tmp", path_, sizeof path_, FILE_SIZE, data_) != 0) return -1;
    int fd = open(path_, O_RDONLY);
    if (fd < 0) return -1;
    map_ = mmap(NULL, FILE_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    return map_ == MAP_FAILED ? -1 : 0;
}

static pg_expert_loc loc1_(uint64_t off, size_t n) {
    pg_expert_loc l = {{off, 0, 0}, {n, 0, 0}, n};
    return l;
}

static pg_expert_loc loc3_(uint64_t o0, size_t n0, uint64_t o1, size_t n1, uint64_t o2, size_t n2) {
    pg_expert_loc l = {{o0, o1, o2}, {n0, n1, n2}, n0 + n1 + n2};
    return l;
}

/* Reads loc and compares with the file's bytes; returns 0 when equal. */
static int read_check_(pg_store *s, const pg_expert_loc *loc, pg_error *e) {
    unsigned char *buf = malloc(loc->bytes ? loc->bytes : 1);
    int rc = pg_store_read(s, loc, buf, e);
    if (rc == 0) {
        size_t at = 0;
        for (int i = 0; i < 3; i++) {
            if (memcmp(buf + at, data_ + loc->offset[i], loc->size[i]) != 0) {
                snprintf(e->msg, sizeof e->msg, "bytes differ in range %d", i);
                rc = -1;
            }
            at += loc->size[i];
        }
    }
    free(buf);
    return rc;
}

static pg_expert_loc random_loc_(uint64_t *rs) {
    pg_expert_loc l = {{0, 0, 0}, {0, 0, 0}, 0};
    int nr = 1 + (int)(rng_(rs) % 3);
    for (int i = 0; i < nr; i++) {
        size_t n = 1 + (size_t)(rng_(rs) % (300 * 1024));
        uint64_t off = rng_(rs) % (FILE_SIZE - n + 1);
        if (rng_(rs) % 8 == 0) off = FILE_SIZE - n; /* touch the end */
        l.offset[i] = off;
        l.size[i] = n;
        l.bytes += n;
    }
    return l;
}

static pg_store *open_(pg_store_kind k, const pg_link *link, pg_error *e) {
    return pg_store_open(path_, k, link, map_, FILE_SIZE, e);
}

static const pg_store_kind all_kinds_[] = {PG_STORE_PREAD, PG_STORE_DIRECT, PG_STORE_URING,
                                           PG_STORE_MMAP};

static void test_kind_names(void) {
    for (int i = 0; i < 4; i++) {
        pg_store_kind k;
        pg_error e = {{0}};
        CHECK(pg_store_kind_parse(pg_store_kind_name(all_kinds_[i]), &k, &e) == 0 &&
                  k == all_kinds_[i],
              "%s", pg_store_kind_name(all_kinds_[i]));
    }
    pg_store_kind k;
    pg_error e = {{0}};
    CHECK(pg_store_kind_parse("o_direct", &k, &e) == -1 && strstr(e.msg, "o_direct"), "%s", e.msg);
}

static void test_backends_read_right_bytes(void) {
    const uint64_t F = FILE_SIZE;
    const pg_expert_loc fixed[] = {
        loc1_(0, 1),
        loc1_(1, 4095),
        loc1_(4095, 2),
        loc1_(4096, 4096),
        loc1_(12345, 1000003),
        loc1_(0, FILE_SIZE), /* the whole file */
        loc1_(F - 1, 1),
        loc1_(F - 5000, 5000),
        loc1_(F - 4096, 4096),
        loc1_(F - 1237, 1237),
        loc1_(F - 1238, 2),
        loc3_(7, 100001, 200003, 300007, F - 77777, 77777),
        loc3_(F - 10, 10, 0, 0, 33, 3), /* an empty middle range */
        loc3_(4096, 8192, 4096, 8192, 4096, 8192), /* the same range three times */
    };
    for (int ki = 0; ki < 4; ki++) {
        pg_store_kind k = all_kinds_[ki];
        pg_error e = {{0}};
        pg_store *s = open_(k, NULL, &e);
        CHECK(s != NULL, "%s: %s", pg_store_kind_name(k), e.msg);
        if (!s) continue;
        pg_store_kind used = pg_store_kind_used(s);
        fprintf(stderr, "  %s -> %s\n", pg_store_kind_name(k), pg_store_kind_name(used));
#ifdef PG_HAVE_LIBURING
        if (k == PG_STORE_URING)
            CHECK(used == PG_STORE_URING || used == PG_STORE_DIRECT || used == PG_STORE_PREAD, "%d",
                  used);
#else
        if (k == PG_STORE_URING)
            CHECK(used == PG_STORE_DIRECT || used == PG_STORE_PREAD, "%s", pg_store_kind_name(used));
#endif
        if (k == PG_STORE_PREAD || k == PG_STORE_MMAP) CHECK(used == k, "%s", pg_store_kind_name(used));
        uint64_t bytes = 0;
        int nread = 0;
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
            CHECK(read_check_(s, &fixed[i], &e) == 0, "%s fixed #%zu: %s", pg_store_kind_name(k), i,
                  e.msg);
            bytes += fixed[i].bytes;
            nread++;
        }
        uint64_t rs = 12345 + (uint64_t)ki;
        for (int i = 0; i < 150; i++) {
            pg_expert_loc l = random_loc_(&rs);
            CHECK(read_check_(s, &l, &e) == 0, "%s random #%d: %s", pg_store_kind_name(k), i, e.msg);
            bytes += l.bytes;
            nread++;
        }
        CHECK(pg_store_bytes_read(s) == bytes, "%llu vs %llu",
              (unsigned long long)pg_store_bytes_read(s), (unsigned long long)bytes);
        CHECK(pg_store_reads(s) == (uint64_t)nread, "%llu", (unsigned long long)pg_store_reads(s));
        CHECK(strcmp(pg_store_link(s)->name, "none") == 0 && pg_store_link(s)->bandwidth == 0, "%s",
              pg_store_link(s)->name);
        pg_store_close(s);
    }
}

typedef struct {
    pg_store *s;
    uint64_t seed;
    int n, bad;
    char msg[PG_ERR_MAX];
} reader_arg_;

static void *reader_(void *p) {
    reader_arg_ *a = p;
    uint64_t rs = a->seed;
    for (int i = 0; i < a->n; i++) {
        pg_expert_loc l = random_loc_(&rs);
        pg_error e = {{0}};
        if (read_check_(a->s, &l, &e) != 0) {
            if (!a->bad) memcpy(a->msg, e.msg, sizeof a->msg);
            a->bad++;
        }
    }
    return NULL;
}

static void test_threads(void) {
    enum { NT = 6, PER = 60 };
    for (int ki = 0; ki < 4; ki++) {
        pg_store_kind k = all_kinds_[ki];
        pg_error e = {{0}};
        pg_store *s = open_(k, NULL, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        pthread_t th[NT];
        reader_arg_ args[NT];
        for (int t = 0; t < NT; t++) {
            args[t] = (reader_arg_){s, 1000 + (uint64_t)t * 77 + (uint64_t)ki, PER, 0, ""};
            pthread_create(&th[t], NULL, reader_, &args[t]);
        }
        for (int t = 0; t < NT; t++) {
            pthread_join(th[t], NULL);
            CHECK(args[t].bad == 0, "%s thread %d: %d bad: %s", pg_store_kind_name(k), t,
                  args[t].bad, args[t].msg);
        }
        CHECK(pg_store_reads(s) == NT * PER, "%llu", (unsigned long long)pg_store_reads(s));
        pg_store_close(s);
    }
}

static void test_link_parse(void) {
    static const struct {
        const char *spec;
        double bw, lat;
    } ok[] = {
        {"none", 0, 0},
        {"pcie3", 12e9, 10e-6},
        {"pcie4", 25e9, 10e-6},
        {"pcie5", 50e9, 10e-6},
        {"nvme", 7e9, 80e-6},
        {"sata", 0.55e9, 100e-6},
        {"12GBps,20us", 12e9, 20e-6},
        {"800MBps,1ms", 800e6, 1e-3},
        {"25GBps,10us", 25e9, 10e-6},
        {"1.5GBps,500ns", 1.5e9, 500e-9},
        {"100MBps,0us", 100e6, 0},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        pg_link l;
        pg_error e = {{0}};
        int rc = pg_link_parse(ok[i].spec, &l, &e);
        CHECK(rc == 0, "%s: %s", ok[i].spec, e.msg);
        if (rc) continue;
        CHECK(fabs(l.bandwidth - ok[i].bw) <= 1e-9 * ok[i].bw, "%s: bw %g", ok[i].spec, l.bandwidth);
        CHECK(fabs(l.latency - ok[i].lat) <= 1e-15 + 1e-9 * ok[i].lat, "%s: lat %g", ok[i].spec,
              l.latency);
        CHECK(strcmp(l.name, ok[i].spec) == 0, "%s: name %s", ok[i].spec, l.name);
    }
    static const char *const bad[] = {
        "",         "pcie6",        "12GBps",     "12GBps,",    ",20us",      "12,20us",
        "12GBps,20", "GBps,20us",   "0GBps,20us", "-1GBps,1us", "12GBps,-1us", "12GBps,20us,3",
        "12Gbit,20us", "12GBps,20 us", "nanGBps,1us", "infGBps,1us",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pg_link l;
        pg_error e = {{0}};
        int rc = pg_link_parse(bad[i], &l, &e);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        CHECK(rc == -1 && strstr(e.msg, quoted) != NULL, "'%s' -> rc %d: %s", bad[i], rc, e.msg);
    }
}

typedef struct {
    pg_store *s;
    pg_expert_loc l;
    int bad;
    char msg[PG_ERR_MAX];
} one_arg_;

static void *one_read_(void *p) {
    one_arg_ *a = p;
    pg_error e = {{0}};
    if (read_check_(a->s, &a->l, &e) != 0) {
        a->bad = 1;
        memcpy(a->msg, e.msg, sizeof a->msg);
    }
    return NULL;
}

/* Lower bounds only: a loaded machine may take longer, never shorter. */
static void test_link_timing(void) {
    pg_link link;
    pg_error e = {{0}};
    CHECK(pg_link_parse("100MBps,1ms", &link, &e) == 0, "%s", e.msg);
    for (int ki = 0; ki < 4; ki++) {
        pg_store_kind k = all_kinds_[ki];
        pg_store *s = open_(k, &link, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        CHECK(strcmp(pg_store_link(s)->name, "100MBps,1ms") == 0, "%s", pg_store_link(s)->name);
        pg_expert_loc l = loc3_(100, 400000, 500001, 300000, 1000003, 300000); /* 1 MB */
        double t0 = now_();
        CHECK(read_check_(s, &l, &e) == 0, "%s", e.msg);
        double dt = now_() - t0;
        CHECK(dt >= 0.011 - 1e-6, "%s: 1 MB on 100 MB/s + 1 ms took %.4f s", pg_store_kind_name(k),
              dt);

        /* two transfers at once share the link: one after the other */
        enum { NT = 2 };
        pthread_t th[NT];
        one_arg_ oa[NT];
        t0 = now_();
        for (int t = 0; t < NT; t++) {
            oa[t] = (one_arg_){s, loc1_(1000 + (uint64_t)t * 1000000, 1000000), 0, ""};
            pthread_create(&th[t], NULL, one_read_, &oa[t]);
        }
        for (int t = 0; t < NT; t++) {
            pthread_join(th[t], NULL);
            CHECK(!oa[t].bad, "%s", oa[t].msg);
        }
        dt = now_() - t0;
        CHECK(dt >= 0.020, "%s: 2 x 1 MB at once on 100 MB/s took %.4f s", pg_store_kind_name(k),
              dt);
        pg_store_close(s);
    }
}

/* The timed store: a transfer takes the link's time and writes nothing;
 * it refuses to open without a link or a mapping; faults fail reads as
 * from the other stores, and bad ranges are refused before any wait. */
static void test_timed(void) {
    pg_error e = {{0}};
    pg_store_kind k;
    CHECK(pg_store_kind_parse("timed", &k, &e) == 0 && k == PG_STORE_TIMED && !strcmp(pg_store_kind_name(k), "timed"),
          "%s", e.msg);
    CHECK(open_(PG_STORE_TIMED, NULL, &e) == NULL && strstr(e.msg, "link"), "no link: '%s'", e.msg);
    pg_link none, link;
    CHECK(pg_link_parse("none", &none, &e) == 0 && pg_link_parse("100MBps,1ms", &link, &e) == 0, "%s", e.msg);
    CHECK(open_(PG_STORE_TIMED, &none, &e) == NULL && strstr(e.msg, "link"), "link none: '%s'", e.msg);
    CHECK(pg_store_open(path_, PG_STORE_TIMED, &link, NULL, 0, &e) == NULL && strstr(e.msg, "mapping"),
          "no mapping: '%s'", e.msg);
    pg_store *s = open_(PG_STORE_TIMED, &link, &e);
    CHECK(s != NULL && pg_store_kind_used(s) == PG_STORE_TIMED, "%s", e.msg);
    if (!s) return;
    pg_expert_loc l = loc3_(100, 400000, 500001, 300000, 1000003, 300000); /* 1 MB */
    unsigned char *buf = malloc(l.bytes);
    memset(buf, 0xAB, l.bytes);
    double t0 = now_();
    CHECK(pg_store_read(s, &l, buf, &e) == 0, "%s", e.msg);
    double dt = now_() - t0;
    CHECK(dt >= 0.011 - 1e-6, "1 MB on 100 MB/s + 1 ms took %.4f s", dt);
    bool untouched = true;
    for (size_t i = 0; i < l.bytes; i++) untouched &= buf[i] == 0xAB;
    CHECK(untouched, "the timed store wrote into dst");
    CHECK(pg_store_read(s, &l, NULL, &e) == 0 && pg_store_bytes_read(s) == 2 * l.bytes && pg_store_reads(s) == 2,
          "NULL dst: %s; %llu bytes", e.msg, (unsigned long long)pg_store_bytes_read(s));
    pg_store_inject(s, PG_FAULT_EIO, 0, 1);
    CHECK(pg_store_read(s, &l, NULL, &e) != 0 && strstr(e.msg, path_), "EIO: '%s'", e.msg);
    CHECK(pg_store_read(s, &l, NULL, &e) == 0, "after the fault: %s", e.msg);
    pg_expert_loc past = loc1_(FILE_SIZE - 10, 20);
    t0 = now_();
    CHECK(pg_store_read(s, &past, NULL, &e) != 0 && strstr(e.msg, "past the end") && now_() - t0 < 0.001,
          "past the end: '%s'", e.msg);
    free(buf);
    pg_store_close(s);
}

static void test_faults(void) {
    for (int ki = 0; ki < 4; ki++) {
        pg_store_kind k = all_kinds_[ki];
        const char *kn = pg_store_kind_name(k);
        pg_error e = {{0}};
        pg_store *s = open_(k, NULL, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        pg_expert_loc l = loc3_(4097, 70001, 1, 5, FILE_SIZE - 3001, 3001);
        static const struct {
            pg_fault f;
            const char *msg;
        } failing[] = {{PG_FAULT_SHORT_READ, "short read"}, {PG_FAULT_EIO, "Input/output error"}};
        for (int fi = 0; fi < 2; fi++) {
            /* read 1 fine, reads 2 and 3 fail, read 4 fine */
            pg_store_inject(s, failing[fi].f, 1, 2);
            CHECK(read_check_(s, &l, &e) == 0, "%s: skipped read: %s", kn, e.msg);
            for (int r = 0; r < 2; r++) {
                e.msg[0] = 0;
                CHECK(read_check_(s, &l, &e) == -1, "%s: fault %d read %d succeeded", kn, fi, r);
                CHECK(strstr(e.msg, failing[fi].msg) != NULL, "%s: '%s'", kn, e.msg);
                CHECK(strncmp(e.msg, path_, strlen(path_)) == 0 && strstr(e.msg, ": read of ") &&
                          strstr(e.msg, " bytes at offset ") && strstr(e.msg, " failed: ") &&
                          !strchr(e.msg, '\n'),
                      "%s: format: '%s'", kn, e.msg);
            }
            CHECK(read_check_(s, &l, &e) == 0, "%s: read after the faults: %s", kn, e.msg);
        }
        /* EINTR: retried, transparent */
        pg_store_inject(s, PG_FAULT_EINTR, 0, 3);
        for (int r = 0; r < 4; r++)
            CHECK(read_check_(s, &l, &e) == 0, "%s: EINTR read %d: %s", kn, r, e.msg);
        /* DELAY: 100 ms longer, then right */
        pg_store_inject(s, PG_FAULT_DELAY, 0, 1);
        double t0 = now_();
        CHECK(read_check_(s, &l, &e) == 0, "%s: %s", kn, e.msg);
        double dt = now_() - t0;
        CHECK(dt >= 0.100, "%s: delayed read took %.4f s", kn, dt);
        /* a short read on a single small range also fails */
        pg_expert_loc small = loc1_(FILE_SIZE - 2, 2);
        pg_store_inject(s, PG_FAULT_SHORT_READ, 0, 1);
        CHECK(read_check_(s, &small, &e) == -1 && strstr(e.msg, "short read"), "%s: %s", kn, e.msg);
        CHECK(read_check_(s, &small, &e) == 0, "%s: %s", kn, e.msg);
        /* inject with count 0 clears */
        pg_store_inject(s, PG_FAULT_EIO, 0, 0);
        CHECK(read_check_(s, &l, &e) == 0, "%s: %s", kn, e.msg);
        pg_store_close(s);
    }
}

static void test_bad_ranges(void) {
    for (int ki = 0; ki < 4; ki++) {
        pg_store_kind k = all_kinds_[ki];
        const char *kn = pg_store_kind_name(k);
        pg_error e = {{0}};
        pg_store *s = open_(k, NULL, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        const pg_expert_loc bad[] = {
            loc1_(FILE_SIZE - 10, 11),
            loc1_(FILE_SIZE, 1),
            loc1_(FILE_SIZE + 4096, 4096),
            loc3_(0, 100, FILE_SIZE - 1, 2, 0, 1),
            loc1_(UINT64_MAX - 5, 10), /* offset + size overflows */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            e.msg[0] = 0;
            CHECK(read_check_(s, &bad[i], &e) == -1, "%s: bad #%zu read", kn, i);
            CHECK(strstr(e.msg, "past the end of the file") && strncmp(e.msg, path_, strlen(path_)) == 0,
                  "%s: '%s'", kn, e.msg);
        }
        pg_expert_loc wrong_sum = loc1_(0, 10);
        wrong_sum.bytes = 11;
        CHECK(read_check_(s, &wrong_sum, &e) == -1, "%s", kn);
        CHECK(pg_store_reads(s) == 0 && pg_store_bytes_read(s) == 0, "%s: failed reads counted", kn);
        CHECK(read_check_(s, &(pg_expert_loc){{0, 0, 0}, {0, 0, 0}, 0}, &e) == 0, "%s: empty: %s",
              kn, e.msg);
        pg_store_close(s);
    }
}

static void test_open_errors(void) {
    pg_error e = {{0}};
    CHECK(pg_store_open("/nonexistent/pg_store", PG_STORE_PREAD, NULL, NULL, 0, &e) == NULL &&
              strstr(e.msg, "/nonexistent/pg_store") && strstr(e.msg, "No such file"),
          "%s", e.msg);
    CHECK(pg_store_open(path_, PG_STORE_MMAP, NULL, NULL, 0, &e) == NULL && strstr(e.msg, path_),
          "%s", e.msg);
    pg_store_close(NULL);
}

/* tmpfs: O_DIRECT is refused on some kernels (fall back to pread), accepted
 * on newer ones; either way the bytes must be right. */
static void test_tmpfs(void) {
    char p[256];
    size_t n = 300001;
    if (access("/dev/shm", W_OK) != 0 || make_file_("/dev/shm", p, sizeof p, n, data_) != 0)
        TEST_SKIP("no writable /dev/shm");
    for (int ki = 0; ki < 3; ki++) {
        pg_error e = {{0}};
        pg_store *s = pg_store_open(p, all_kinds_[ki], NULL, NULL, 0, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) continue;
        pg_expert_loc l = loc3_(3, 1000, n - 4097, 4097, 8191, 2);
        CHECK(read_check_(s, &l, &e) == 0, "%s: %s", pg_store_kind_name(all_kinds_[ki]), e.msg);
        fprintf(stderr, "  tmpfs: %s -> %s\n", pg_store_kind_name(all_kinds_[ki]),
                pg_store_kind_name(pg_store_kind_used(s)));
        pg_store_close(s);
    }
    unlink(p);
}

int main(void) {
    if (setup_() != 0) {
        fprintf(stderr, "cannot create the test file: %s\n", strerror(errno));
        return 1;
    }
    TEST_RUN(test_kind_names);
    TEST_RUN(test_backends_read_right_bytes);
    TEST_RUN(test_threads);
    TEST_RUN(test_link_parse);
    TEST_RUN(test_link_timing);
    TEST_RUN(test_timed);
    TEST_RUN(test_faults);
    TEST_RUN(test_bad_ranges);
    TEST_RUN(test_open_errors);
    TEST_RUN(test_tmpfs);
    munmap(map_, FILE_SIZE);
    unlink(path_);
    free(data_);
    return test_summary("test_store");
}
