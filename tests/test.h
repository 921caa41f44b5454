/* test.h - a minimal test harness: CHECK records a failure and goes on.
 *
 * Each tests/test_*.c is its own program; main() calls the test functions
 * through TEST_RUN and returns test_summary(), which prints one line per
 * binary: "name: N checks, N failed" (tests/run.sh parses it). A whole test
 * that cannot run (missing shared data) calls TEST_SKIP with the reason. */
#ifndef PG_TEST_H
#define PG_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int test_checks_, test_failed_, test_skipped_;
static const char *test_current_ = "";

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        test_checks_++;                                                           \
        if (!(cond)) {                                                            \
            test_failed_++;                                                       \
            fprintf(stderr, "FAIL %s (%s:%d): %s: ", test_current_, __FILE__,     \
                    __LINE__, #cond);                                             \
            fprintf(stderr, __VA_ARGS__);                                         \
            fprintf(stderr, "\n");                                                \
        }                                                                         \
    } while (0)

#define TEST_RUN(fn)                                                              \
    do {                                                                          \
        test_current_ = #fn;                                                      \
        int before_ = test_failed_, skipped_ = test_skipped_;                      \
        fn();                                                                     \
        if (test_skipped_ == skipped_)                                            \
            fprintf(stderr, "%s %s\n", test_failed_ == before_ ? "ok  " : "FAIL", #fn); \
    } while (0)

#define TEST_SKIP(...)                                                            \
    do {                                                                          \
        test_skipped_++;                                                          \
        fprintf(stderr, "SKIP %s: ", test_current_);                              \
        fprintf(stderr, __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                    \
        return;                                                                   \
    } while (0)

/* Test inputs: a xorshift generator, deterministic; a program that wants
 * other inputs sets test_rng_state first (some read PG_TEST_SEED). */
static uint64_t test_rng_state __attribute__((unused)) = 0x9e3779b97f4a7c15ull;
static inline uint64_t test_rng_u64(void) {
    uint64_t x = test_rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return test_rng_state = x;
}
/* uniform in [-1, 1) */
static inline float test_rnd(void) { return (float)((double)(test_rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* Directory of the shared read-only data (models, tokenizers, corpora). */
static inline const char *test_shared_data(void) {
    const char *d = getenv("PREGATE_SHARED_DATA");
    return d ? d : "../shared/data";
}

static inline int test_summary(const char *name) {
    printf("RESULT %s checks=%d failed=%d skipped=%d\n", name, test_checks_, test_failed_,
           test_skipped_);
    return test_failed_ ? 1 : 0;
}

#endif
