/* store.c - the slow tier: pread / O_DIRECT / io_uring / mmap expert reads,
 * an optional link model, and fault injection for tests.
 *
 * Every backend reads the (up to) three ranges of one expert back to back
 * into dst. A read is one "transfer" for the link model and one "read" for
 * fault injection and the counters, whatever the backend does inside.
 *
 * O_DIRECT (direct and uring): offset, length and buffer must be aligned to
 * the logical block size; we use 4096 everywhere. Each range is read as its
 * aligned superset [floor(off), ceil(off + len)) into a thread-local bounce
 * buffer that grows as needed (and is freed when the thread exits), then the
 * wanted bytes are copied into dst. At the end of the file the aligned
 * superset runs past EOF: the kernel returns a short count, which is fine as
 * long as it covers the wanted bytes.
 *
 * io_uring (compiled only with -DPG_HAVE_LIBURING, linked with -luring): one
 * ring per calling thread (lazily created, queue depth 8, destroyed at thread
 * exit), shared by every store that thread reads from; the ranges of one
 * expert are submitted at once and all completions are awaited before the
 * call returns (short completions resubmit the remainder).
 *
 * Fallbacks, recorded in pg_store_kind_used:
 *   uring  -> direct  when built without liburing or no ring can be created
 *                     (io_uring disabled by sysctl/seccomp)
 *   direct -> pread   when open(O_DIRECT) or the first O_DIRECT read fails
 *                     with EINVAL (file systems that refuse O_DIRECT)
 *   (so uring on such a file system ends up as pread)
 *
 * Fault injection is always compiled in: it costs one mutex-protected
 * counter check per pg_store_read (negligible next to a read of MBs), and
 * keeping it in the production build means the tested code is the shipped
 * code. The fault is applied where the real read happens (the read loop sees
 * an EINTR / EIO / short count exactly as from the kernel).
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef PG_HAVE_LIBURING
#include <liburing.h>
#endif

#define PG_ALIGN 4096u
#define PG_URING_DEPTH 8
#define PG_DELAY_FAULT_S 0.100

struct pg_store {
    char *path;
    int fd;  /* buffered */
    int dfd; /* O_DIRECT, -1 when not used */
    pg_store_kind kind_req;
    _Atomic int kind_used;
    atomic_bool direct_ok; /* an O_DIRECT read has succeeded (EINVAL after that is an error) */
    pg_link link;
    const void *map;
    size_t map_size;
    uint64_t file_size;

    pthread_mutex_t link_mu;
    double busy_until; /* CLOCK_MONOTONIC seconds; guarded by link_mu */

    pthread_mutex_t fault_mu;
    pthread_cond_t hang_cv;       /* PG_FAULT_HANG readers wait here */
    pg_fault fault;
    int fault_skip, fault_count; /* guarded by fault_mu */
    uint64_t hang_epoch;          /* bumped by pg_store_release_hangs */

    _Atomic uint64_t bytes_read, reads;
};

/* ---- names and parsing ---- */

static const char *const kind_names_[] = {"pread", "direct", "uring", "mmap", "timed"};

const char *pg_store_kind_name(pg_store_kind k) {
    if ((unsigned)k < sizeof kind_names_ / sizeof kind_names_[0]) return kind_names_[k];
    return "?";
}

int pg_store_kind_parse(const char *s, pg_store_kind *out, pg_error *e) {
    for (int i = 0; i < (int)(sizeof kind_names_ / sizeof *kind_names_); i++) {
        if (s && strcmp(s, kind_names_[i]) == 0) {
            *out = (pg_store_kind)i;
            return 0;
        }
    }
    return pg_fail(e, "unknown store kind '%s' (expected pread, direct, uring, mmap or timed)",
                   s ? s : "(null)");
}

static const struct {
    const char *name;
    double bw, lat;
} links_[] = {
    {"none", 0, 0},
    {"pcie3", 12e9, 10e-6},
    {"pcie4", 25e9, 10e-6},
    {"pcie5", 50e9, 10e-6},
    {"nvme", 7e9, 80e-6},
    {"sata", 0.55e9, 100e-6},
};

/* Parses "<number><unit>" where unit is one of units[] (exact, case-sensitive
 * but also accepting the all-lowercase spelling). */
static int parse_quantity_(const char *s, size_t n, const char *const *units, const double *scale,
                           int nunits, double *out) {
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf || errno || !isfinite(v) || v < 0) return -1;
    for (int i = 0; i < nunits; i++) {
        if (strcasecmp(end, units[i]) == 0) {
            *out = v * scale[i];
            return 0;
        }
    }
    return -1;
}

pg_store_kind pg_store_default(const pg_link *link) {
    return link->bandwidth > 0 ? PG_STORE_MMAP : PG_STORE_DIRECT;
}

int pg_link_parse(const char *spec, pg_link *out, pg_error *e) {
    if (!spec) spec = "none";
    for (size_t i = 0; i < sizeof links_ / sizeof links_[0]; i++) {
        if (strcmp(spec, links_[i].name) == 0) {
            memset(out, 0, sizeof *out);
            snprintf(out->name, sizeof out->name, "%s", links_[i].name);
            out->bandwidth = links_[i].bw;
            out->latency = links_[i].lat;
            return 0;
        }
    }
    static const char *const bw_units[] = {"GBps", "MBps", "KBps"};
    static const double bw_scale[] = {1e9, 1e6, 1e3};
    static const char *const lat_units[] = {"s", "ms", "us", "ns"};
    static const double lat_scale[] = {1, 1e-3, 1e-6, 1e-9};
    const char *comma = strchr(spec, ',');
    double bw, lat;
    if (!comma || strchr(comma + 1, ',') ||
        parse_quantity_(spec, (size_t)(comma - spec), bw_units, bw_scale, 3, &bw) != 0 ||
        parse_quantity_(comma + 1, strlen(comma + 1), lat_units, lat_scale, 4, &lat) != 0 ||
        !(bw > 0)) {
        return pg_fail(e,
                       "invalid link '%s': expected none, pcie3, pcie4, pcie5, nvme, sata or "
                       "BANDWIDTH,LATENCY such as 12GBps,20us (GBps/MBps/KBps; s/ms/us/ns; "
                       "bandwidth > 0)",
                       spec);
    }
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", spec);
    out->bandwidth = bw;
    out->latency = lat;
    return 0;
}

/* ---- time ---- */

static double now_s_(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_until_(double t) {
    struct timespec ts;
    double sec = floor(t);
    ts.tv_sec = (time_t)sec;
    ts.tv_nsec = (long)((t - sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    if (ts.tv_nsec < 0) ts.tv_nsec = 0;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* ---- thread-local state: bounce buffer and io_uring ring ---- */

typedef struct {
    void *bounce;
    size_t bounce_cap;
#ifdef PG_HAVE_LIBURING
    struct io_uring ring;
    int ring_state; /* 0 = not tried, 1 = ready, -1 = creation failed */
#endif
} tls_state_;

static pthread_key_t tls_key_;
static pthread_once_t tls_once_ = PTHREAD_ONCE_INIT;

static void tls_free_(void *p) {
    tls_state_ *t = p;
    if (!t) return;
    free(t->bounce);
#ifdef PG_HAVE_LIBURING
    if (t->ring_state == 1) io_uring_queue_exit(&t->ring);
#endif
    free(t);
}

static void tls_init_key_(void) { PG_ASSERT(pthread_key_create(&tls_key_, tls_free_) == 0); }

static tls_state_ *tls_get_(void) {
    pthread_once(&tls_once_, tls_init_key_);
    tls_state_ *t = pthread_getspecific(tls_key_);
    if (!t) {
        t = xcalloc(1, sizeof *t);
        PG_ASSERT(pthread_setspecific(tls_key_, t) == 0);
    }
    return t;
}

static void *tls_bounce_(size_t n) {
    tls_state_ *t = tls_get_();
    if (t->bounce_cap < n) {
        free(t->bounce);
        size_t cap = t->bounce_cap ? t->bounce_cap : (size_t)1 << 20;
        while (cap < n) cap *= 2;
        t->bounce = xmalloc_aligned(PG_ALIGN, cap);
        t->bounce_cap = cap;
    }
    return t->bounce;
}

/* ---- fault injection ---- */

/* The fault state of one pg_store_read, consumed by the read loops. */
typedef struct {
    pg_fault fault;
    bool fired; /* EINTR: the one interruption happened; SHORT_READ: the short count was returned */
} fault_state_;

static pg_fault take_fault_(pg_store *s) {
    pg_fault f = PG_FAULT_NONE;
    pthread_mutex_lock(&s->fault_mu);
    if (s->fault != PG_FAULT_NONE) {
        if (s->fault_skip > 0) {
            s->fault_skip--;
        } else if (s->fault_count > 0) {
            f = s->fault;
            if (--s->fault_count == 0) s->fault = PG_FAULT_NONE;
        }
    }
    pthread_mutex_unlock(&s->fault_mu);
    return f;
}

void pg_store_inject(pg_store *s, pg_fault fault, int skip, int count) {
    pthread_mutex_lock(&s->fault_mu);
    s->fault = count > 0 ? fault : PG_FAULT_NONE;
    s->fault_skip = skip > 0 ? skip : 0;
    s->fault_count = count > 0 ? count : 0;
    pthread_mutex_unlock(&s->fault_mu);
}

void pg_store_release_hangs(pg_store *s) {
    pthread_mutex_lock(&s->fault_mu);
    s->hang_epoch++;
    pthread_cond_broadcast(&s->hang_cv);
    pthread_mutex_unlock(&s->fault_mu);
}

/* A stalled device: blocks until released (or PG_HANG_MAX_S, so that a
 * forgotten release cannot hang a test run forever), then reads normally. */
static void hang_(pg_store *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)PG_HANG_MAX_S;
    pthread_mutex_lock(&s->fault_mu);
    uint64_t epoch = s->hang_epoch;
    while (s->hang_epoch == epoch) {
        if (pthread_cond_timedwait(&s->hang_cv, &s->fault_mu, &ts) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&s->fault_mu);
}

/* pread(2) as the kernel would answer it under the injected fault. `want`
 * (<= n) is how many of the n bytes the caller cannot do without: a short
 * read stops before those. */
static ssize_t pread_f_(int fd, void *buf, size_t n, size_t want, uint64_t off, fault_state_ *fs) {
    switch (fs->fault) {
    case PG_FAULT_EINTR:
        if (!fs->fired) {
            fs->fired = true;
            errno = EINTR;
            return -1;
        }
        break;
    case PG_FAULT_EIO:
        errno = EIO;
        return -1;
    case PG_FAULT_SHORT_READ: {
        if (fs->fired || want < 2) return 0; /* the end of file comes early */
        fs->fired = true;
        /* the real read (O_DIRECT wants its aligned length), reported short */
        ssize_t r = pread(fd, buf, n, (off_t)off);
        return r > (ssize_t)(want / 2) ? (ssize_t)(want / 2) : r;
    }
    default:
        break;
    }
    return pread(fd, buf, n, (off_t)off);
}

/* ---- read loops ---- */

static int read_fail_(const pg_store *s, size_t n, uint64_t off, pg_error *e, const char *why) {
    return pg_fail(e, "%s: read of %zu bytes at offset %" PRIu64 " failed: %s", s->path, n, off,
                   why);
}

static int short_fail_(const pg_store *s, size_t n, uint64_t off, size_t got, pg_error *e) {
    char why[128];
    snprintf(why, sizeof why, "short read (got %zu of %zu bytes: premature end of file)", got, n);
    return read_fail_(s, n, off, e, why);
}

/* Buffered: reads exactly n bytes at off into dst. */
static int read_full_(const pg_store *s, int fd, void *dst, size_t n, uint64_t off,
                      fault_state_ *fs, pg_error *e) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread_f_(fd, (char *)dst + got, n - got, n - got, off + got, fs);
        if (r < 0) {
            if (errno == EINTR) continue;
            return read_fail_(s, n, off, e, strerror(errno));
        }
        if (r == 0) return short_fail_(s, n, off, got, e);
        got += (size_t)r;
    }
    return 0;
}

/* The O_DIRECT read of one range failed with EINVAL before any O_DIRECT read
 * worked: the caller falls back to buffered reads. */
#define DIRECT_EINVAL 1

/* O_DIRECT: reads [off, off + n) via aligned chunks of the bounce buffer. */
static int read_direct_(pg_store *s, void *dst, size_t n, uint64_t off, fault_state_ *fs,
                        pg_error *e) {
    const size_t chunk_max = (size_t)16 << 20; /* bounds the bounce buffer */
    uint64_t end = off + n;
    uint64_t a0 = off & ~(uint64_t)(PG_ALIGN - 1);
    uint64_t a1 = (end + PG_ALIGN - 1) & ~(uint64_t)(PG_ALIGN - 1);
    size_t cap = (size_t)(a1 - a0) < chunk_max ? (size_t)(a1 - a0) : chunk_max;
    char *bounce = tls_bounce_(cap);
    uint64_t pos = a0; /* aligned file position of the next chunk */
    size_t copied = 0;
    while (pos < end) {
        size_t len = (size_t)(a1 - pos) < cap ? (size_t)(a1 - pos) : cap;
        /* bytes of this chunk we need: up to the end of the wanted range */
        size_t need = (size_t)((end < pos + len ? end : pos + len) - pos);
        size_t got = 0;
        while (got < need) {
            ssize_t r = pread_f_(s->dfd, bounce + got, len - got, need - got, pos + got, fs);
            if (r < 0) {
                if (errno == EINTR) continue;
                if (errno == EINVAL && !atomic_load(&s->direct_ok)) return DIRECT_EINVAL;
                return read_fail_(s, n, off, e, strerror(errno));
            }
            got += (size_t)r;
            /* 0, or an unaligned count short of what we need: the end of the file */
            if (got < need && (r == 0 || got % PG_ALIGN)) {
                uint64_t from = pos > off ? pos : off;
                size_t have = pos + got > from ? (size_t)(pos + got - from) : 0;
                return short_fail_(s, n, off, copied + have, e);
            }
        }
        atomic_store(&s->direct_ok, true);
        uint64_t from = pos > off ? pos : off; /* first wanted byte in this chunk */
        size_t take = (size_t)(pos + need - from);
        memcpy((char *)dst + (from - off), bounce + (from - pos), take);
        copied += take;
        pos += len;
    }
    return 0;
}

/* Real disk (no link model): drop what was just read from the page cache, so
 * that the experts really live in the slow tier instead of silently in RAM
 * (what a model bigger than RAM gets). Advice only: failures are ignored. */
static void dontneed_(const pg_store *s, const pg_expert_loc *loc) {
    for (int i = 0; i < 3; i++)
        if (loc->size[i])
            posix_fadvise(s->fd, (off_t)loc->offset[i], (off_t)loc->size[i], POSIX_FADV_DONTNEED);
}

static int read_pread_all_(pg_store *s, const pg_expert_loc *loc, char *dst, fault_state_ *fs,
                           pg_error *e) {
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        if (!loc->size[i]) continue;
        if (read_full_(s, s->fd, dst + at, loc->size[i], loc->offset[i], fs, e) != 0) return -1;
        at += loc->size[i];
    }
    if (s->link.bandwidth <= 0) dontneed_(s, loc);
    return 0;
}

static void fall_back_to_pread_(pg_store *s) {
    atomic_store(&s->kind_used, PG_STORE_PREAD);
}

static int read_direct_all_(pg_store *s, const pg_expert_loc *loc, char *dst, fault_state_ *fs,
                            pg_error *e) {
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        if (!loc->size[i]) continue;
        int r = read_direct_(s, dst + at, loc->size[i], loc->offset[i], fs, e);
        if (r == DIRECT_EINVAL) {
            fall_back_to_pread_(s);
            return read_pread_all_(s, loc, dst, fs, e);
        }
        if (r != 0) return -1;
        at += loc->size[i];
    }
    return 0;
}

/* ---- io_uring ---- */

#ifdef PG_HAVE_LIBURING

static struct io_uring *tls_ring_(void) {
    tls_state_ *t = tls_get_();
    if (t->ring_state == 0) t->ring_state = io_uring_queue_init(PG_URING_DEPTH, &t->ring, 0) == 0 ? 1 : -1;
    return t->ring_state == 1 ? &t->ring : NULL;
}

/* After a failed submit or wait, requests may still be queued or in flight
 * into the bounce buffer: the ring is torn down and the buffer abandoned
 * (leaked, so a late write cannot land in reused memory). The thread then
 * reads with plain O_DIRECT. Never seen in practice. */
static void tls_ring_poison_(void) {
    tls_state_ *t = tls_get_();
    if (t->ring_state == 1) io_uring_queue_exit(&t->ring);
    t->ring_state = -1;
    t->bounce = NULL;
    t->bounce_cap = 0;
}

typedef struct {
    uint64_t off;  /* wanted range */
    size_t n;
    uint64_t a0;   /* aligned start */
    size_t len;    /* aligned length */
    size_t need;   /* bytes from a0 that must arrive: off + n - a0 */
    size_t got;
    char *bounce;  /* a0 lands at bounce[0] */
    char *dst;
} uring_job_;

static void uring_prep_(struct io_uring *ring, int fd, uring_job_ *j, int idx) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    PG_ASSERT(sqe); /* at most 3 in flight on a ring of 8 */
    io_uring_prep_read(sqe, fd, j->bounce + j->got, (unsigned)(j->len - j->got), j->a0 + j->got);
    io_uring_sqe_set_data64(sqe, (uint64_t)idx);
}

/* Returns 0, -1 (e set), DIRECT_EINVAL (fall back to pread), or 2 (no ring on
 * this thread: the caller reads with O_DIRECT instead). */
static int read_uring_all_(pg_store *s, const pg_expert_loc *loc, char *dst, fault_state_ *fs,
                           pg_error *e) {
    struct io_uring *ring = tls_ring_();
    if (!ring) return 2;
    uring_job_ jobs[3];
    int nj = 0;
    size_t total = 0, at = 0;
    for (int i = 0; i < 3; i++) {
        if (!loc->size[i]) continue;
        uring_job_ *j = &jobs[nj++];
        j->off = loc->offset[i];
        j->n = loc->size[i];
        j->a0 = j->off & ~(uint64_t)(PG_ALIGN - 1);
        uint64_t a1 = (j->off + j->n + PG_ALIGN - 1) & ~(uint64_t)(PG_ALIGN - 1);
        j->len = (size_t)(a1 - j->a0);
        j->need = (size_t)(j->off + j->n - j->a0);
        j->got = 0;
        j->dst = dst + at;
        at += j->n;
        total += j->len;
    }
    if (nj == 0) return 0;
    char *bounce = tls_bounce_(total);
    size_t bo = 0;
    for (int i = 0; i < nj; i++) {
        jobs[i].bounce = bounce + bo;
        bo += jobs[i].len;
        uring_prep_(ring, s->dfd, &jobs[i], i);
    }
    int inflight = nj, rc = 0;
    bool submit = true;
    while (inflight > 0) {
        if (submit) {
            int r;
            do r = io_uring_submit(ring); while (r == -EINTR);
            if (r < 0) {
                char why[128];
                snprintf(why, sizeof why, "io_uring_submit: %s", strerror(-r));
                tls_ring_poison_();
                return read_fail_(s, loc->bytes, loc->offset[0], e, why);
            }
            submit = false;
        }
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe(ring, &cqe);
        if (r == -EINTR) continue;
        if (r < 0) {
            char why[128];
            snprintf(why, sizeof why, "io_uring_wait_cqe: %s", strerror(-r));
            tls_ring_poison_();
            return read_fail_(s, loc->bytes, loc->offset[0], e, why);
        }
        int idx = (int)io_uring_cqe_get_data64(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(ring, cqe);
        inflight--;
        uring_job_ *j = &jobs[idx];
        /* the injected fault, as the kernel would report it */
        if (fs->fault == PG_FAULT_EINTR && !fs->fired) {
            fs->fired = true;
            res = -EINTR;
        } else if (fs->fault == PG_FAULT_EIO) {
            res = -EIO;
        } else if (fs->fault == PG_FAULT_SHORT_READ && res > 0) {
            size_t want = j->need - j->got;
            if (fs->fired || want < 2) res = 0;
            else { fs->fired = true; if ((size_t)res > want / 2) res = (int)(want / 2); }
        }
        if (rc != 0) continue; /* draining after a failure */
        if (res == -EINTR || res == -EAGAIN) {
            uring_prep_(ring, s->dfd, j, idx);
            inflight++;
            submit = true;
            continue;
        }
        if (res < 0) {
            if (res == -EINVAL && !atomic_load(&s->direct_ok)) rc = DIRECT_EINVAL;
            else rc = read_fail_(s, j->n, j->off, e, strerror(-res));
            continue;
        }
        if (res == 0) {
            size_t have = j->got > j->off - j->a0 ? j->got - (size_t)(j->off - j->a0) : 0;
            rc = short_fail_(s, j->n, j->off, have, e);
            continue;
        }
        j->got += (size_t)res;
        if (j->got >= j->need) continue; /* done */
        if (j->got % PG_ALIGN) { /* an unaligned short count: the end of the file */
            size_t have = j->got > j->off - j->a0 ? j->got - (size_t)(j->off - j->a0) : 0;
            rc = short_fail_(s, j->n, j->off, have, e);
            continue;
        }
        uring_prep_(ring, s->dfd, j, idx); /* a short completion: read the rest */
        inflight++;
        submit = true;
    }
    if (rc != 0) return rc;
    atomic_store(&s->direct_ok, true);
    for (int i = 0; i < nj; i++)
        memcpy(jobs[i].dst, jobs[i].bounce + (jobs[i].off - jobs[i].a0), jobs[i].n);
    return 0;
}
#endif

/* ---- open / close ---- */

pg_store *pg_store_open(const char *path, pg_store_kind kind, const pg_link *link, const void *map,
                        size_t map_size, pg_error *e) {
    if ((unsigned)kind > PG_STORE_TIMED) {
        pg_fail(e, "%s: unknown store kind %d", path, (int)kind);
        return NULL;
    }
    if ((kind == PG_STORE_MMAP || kind == PG_STORE_TIMED) && !map) {
        pg_fail(e, "%s: the %s store needs the file's mapping", path, kind_names_[kind]);
        return NULL;
    }
    if (kind == PG_STORE_TIMED && !(link && link->bandwidth > 0)) {
        pg_fail(e, "%s: the timed store moves no bytes, only the time of a link: give it one (--link pcie4, ...)",
                path);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pg_fail(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        pg_fail(e, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    pg_store *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    s->fd = fd;
    s->dfd = -1;
    s->kind_req = kind;
    s->file_size = (uint64_t)st.st_size;
    s->map = map;
    s->map_size = map_size;
    if (link) s->link = *link;
    else snprintf(s->link.name, sizeof s->link.name, "none");
    pthread_mutex_init(&s->link_mu, NULL);
    pthread_mutex_init(&s->fault_mu, NULL);
    pthread_cond_init(&s->hang_cv, NULL);
    atomic_init(&s->bytes_read, 0);
    atomic_init(&s->reads, 0);
    atomic_init(&s->direct_ok, false);

    pg_store_kind used = kind;
#ifndef PG_HAVE_LIBURING
    if (used == PG_STORE_URING) used = PG_STORE_DIRECT;
#else
    if (used == PG_STORE_URING && !tls_ring_()) used = PG_STORE_DIRECT;
#endif
    if (used == PG_STORE_DIRECT || used == PG_STORE_URING) {
        s->dfd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECT);
        if (s->dfd < 0) {
            if (errno != EINVAL) {
                pg_fail(e, "%s: cannot open with O_DIRECT: %s", path, strerror(errno));
                pg_store_close(s);
                return NULL;
            }
            used = PG_STORE_PREAD; /* the file system refuses O_DIRECT */
        }
    }
    atomic_init(&s->kind_used, (int)used);
    return s;
}

void pg_store_close(pg_store *s) {
    if (!s) return;
    pg_store_release_hangs(s);
    if (s->fd >= 0) close(s->fd);
    if (s->dfd >= 0) close(s->dfd);
    pthread_mutex_destroy(&s->link_mu);
    pthread_cond_destroy(&s->hang_cv);
    pthread_mutex_destroy(&s->fault_mu);
    free(s->path);
    free(s);
}

pg_store_kind pg_store_kind_used(const pg_store *s) {
    return (pg_store_kind)atomic_load(&((pg_store *)s)->kind_used);
}

const pg_link *pg_store_link(const pg_store *s) { return &s->link; }

uint64_t pg_store_bytes_read(const pg_store *s) {
    return atomic_load(&((pg_store *)s)->bytes_read);
}

uint64_t pg_store_reads(const pg_store *s) { return atomic_load(&((pg_store *)s)->reads); }

/* ---- the read ---- */

int pg_store_read(pg_store *s, const pg_expert_loc *loc, void *dst, pg_error *e) {
    /* bounds (and overflow) checks before any I/O */
    size_t sum = 0;
    uint64_t limit = s->kind_req == PG_STORE_MMAP || s->kind_req == PG_STORE_TIMED ? (uint64_t)s->map_size
                                                                                   : s->file_size;
    for (int i = 0; i < 3; i++) {
        uint64_t off = loc->offset[i];
        size_t n = loc->size[i];
        if (!n) continue;
        if (off > limit || n > limit - off) {
            char why[96];
            snprintf(why, sizeof why, "range past the end of the file (%" PRIu64 " bytes)", limit);
            return read_fail_(s, n, off, e, why);
        }
        sum += n;
    }
    if (sum != loc->bytes) {
        return pg_fail(e, "%s: read of expert failed: sizes add up to %zu bytes, not %zu", s->path,
                       sum, loc->bytes);
    }

    double completion = 0;
    if (s->link.bandwidth > 0) {
        double t0 = now_s_(), occupy = (double)sum / s->link.bandwidth;
        pthread_mutex_lock(&s->link_mu);
        double start = t0 > s->busy_until ? t0 : s->busy_until;
        s->busy_until = start + occupy;
        pthread_mutex_unlock(&s->link_mu);
        completion = start + occupy + s->link.latency;
    }

    fault_state_ fs = {take_fault_(s), false};
    if (fs.fault == PG_FAULT_DELAY) {
        sleep_until_(now_s_() + PG_DELAY_FAULT_S);
    } else if (fs.fault == PG_FAULT_HANG) {
        hang_(s);
    }

    int rc;
    char *out = dst;
    switch ((pg_store_kind)atomic_load(&s->kind_used)) {
    case PG_STORE_TIMED:
    case PG_STORE_MMAP: {
        bool copy = s->kind_req == PG_STORE_MMAP;
        size_t at = 0;
        rc = 0;
        for (int i = 0; i < 3 && rc == 0; i++) {
            size_t n = loc->size[i];
            if (!n) continue;
            if (fs.fault == PG_FAULT_EIO) rc = read_fail_(s, n, loc->offset[i], e, strerror(EIO));
            else if (fs.fault == PG_FAULT_SHORT_READ) rc = short_fail_(s, n, loc->offset[i], n / 2, e);
            else if (copy) memcpy(out + at, (const char *)s->map + loc->offset[i], n);
            at += n;
        }
        break;
    }
    case PG_STORE_URING:
#ifdef PG_HAVE_LIBURING
        rc = read_uring_all_(s, loc, out, &fs, e);
        if (rc == DIRECT_EINVAL) {
            fall_back_to_pread_(s);
            rc = read_pread_all_(s, loc, out, &fs, e);
        } else if (rc == 2) { /* no ring on this thread */
            rc = read_direct_all_(s, loc, out, &fs, e);
        }
        break;
#endif
        /* fall through */
    case PG_STORE_DIRECT:
        rc = read_direct_all_(s, loc, out, &fs, e);
        break;
    case PG_STORE_PREAD:
    default:
        rc = read_pread_all_(s, loc, out, &fs, e);
        break;
    }
    if (rc != 0) return -1;

    atomic_fetch_add(&s->bytes_read, (uint64_t)sum);
    atomic_fetch_add(&s->reads, 1);
    if (completion > 0 && completion > now_s_()) sleep_until_(completion);
    return 0;
}
