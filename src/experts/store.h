/* store.h - the slow tier: where every expert's bytes live.
 *
 * An expert of one layer is three byte ranges of the model file (its gate,
 * up and down matrices; in a GGUF they are slices of the three stacked
 * ffn_*_exps tensors). pg_store_read copies the three ranges, back to back,
 * into a fast-tier slot. Backends:
 *
 *   PG_STORE_PREAD   buffered pread (page cache), then posix_fadvise
 *                    DONTNEED on the ranges when reading from disk
 *   PG_STORE_DIRECT  pread with O_DIRECT into aligned bounce buffers
 *                    (falls back to PREAD where the file system refuses)
 *   PG_STORE_URING   io_uring (liburing), the three ranges in flight at once
 *                    (compiled only with liburing; else falls back to DIRECT)
 *   PG_STORE_MMAP    memcpy out of the file mapping (the page cache decides)
 *   PG_STORE_TIMED   no bytes move: a transfer only takes the link's time
 *                    (a link is required), and the fast tier's slots
 *                    address the file mapping. It stands for a copy engine
 *                    (a GPU's DMA over PCIe) whose copies cost the compute
 *                    nothing; on a CPU a memcpy would also take memory
 *                    bandwidth from the compute, which the machine being
 *                    modelled does not pay. Faults are injected as for mmap.
 *
 * A link model (pg_link) makes every transfer last at least
 * latency + bytes / bandwidth of a named link, transfers sharing the link's
 * bandwidth one after another, so that experiments do not depend on this
 * machine's disk: with a link the slow tier stands for host memory behind
 * PCIe, or a fast SSD.
 *
 * Thread safety: pg_store_read may be called from several threads at once.
 */
#ifndef PG_STORE_H
#define PG_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "../util.h"

typedef enum { PG_STORE_PREAD = 0, PG_STORE_DIRECT, PG_STORE_URING, PG_STORE_MMAP, PG_STORE_TIMED } pg_store_kind;

const char *pg_store_kind_name(pg_store_kind k);
/* "pread", "direct", "uring", "mmap", "timed" */
int pg_store_kind_parse(const char *s, pg_store_kind *out, pg_error *e);

typedef struct {
    char name[32];
    double bandwidth; /* bytes per second; 0 = no link model (real I/O only) */
    double latency;   /* seconds per transfer */
} pg_link;

/* "none", "pcie3" (12 GB/s, 10 us), "pcie4" (25 GB/s, 10 us), "pcie5"
 * (50 GB/s, 10 us), "nvme" (7 GB/s, 80 us), "sata" (0.55 GB/s, 100 us), or
 * "BW,LAT" such as "12GBps,20us" (units GBps/MBps, us/ms/ns). */
int pg_link_parse(const char *spec, pg_link *out, pg_error *e);

/* The store to use when none is named: O_DIRECT for real disk reads
 * (link "none": the page cache must not hide the disk); mmap under a link
 * model, whose slow tier stands for host memory (the page cache plays it). */
pg_store_kind pg_store_default(const pg_link *link);

/* Where one expert's bytes are: up to three ranges, copied in order. */
typedef struct {
    uint64_t offset[3];
    size_t size[3];
    size_t bytes; /* sum of sizes */
} pg_expert_loc;

/* Faults a test can inject into reads (see pg_store_inject). */
typedef enum {
    PG_FAULT_NONE = 0,
    PG_FAULT_SHORT_READ, /* the read returns fewer bytes than asked, then end of file */
    PG_FAULT_EIO,        /* the read fails with EIO */
    PG_FAULT_EINTR,      /* the read is interrupted once (must be retried transparently) */
    PG_FAULT_DELAY,      /* the read takes 100 ms longer */
    PG_FAULT_HANG,       /* the read does not complete until pg_store_release_hangs
                            (a stalled device); the cache's timeout must notice */
} pg_fault;

typedef struct pg_store pg_store;

/* Opens path for expert reads. map/map_size: the caller's read-only mapping
 * of the same file (used by PG_STORE_MMAP and PG_STORE_TIMED; may be NULL for
 * the others). PG_STORE_TIMED needs a link with a bandwidth. With it, dst of
 * pg_store_read may be NULL: nothing is written. */
pg_store *pg_store_open(const char *path, pg_store_kind kind, const pg_link *link, const void *map,
                        size_t map_size, pg_error *e);
void pg_store_close(pg_store *s); /* NULL-safe */
pg_store_kind pg_store_kind_used(const pg_store *s); /* after fallbacks */
const pg_link *pg_store_link(const pg_store *s);

/* Reads the expert at loc into dst (loc->bytes bytes). Returns 0, or -1
 * with e set ("PATH: read of expert ... failed: ..."); on failure dst holds
 * nothing usable. Blocks for the link model's time when one is set. */
int pg_store_read(pg_store *s, const pg_expert_loc *loc, void *dst, pg_error *e);

/* Test hook: the next `count` reads after `skip` more reads suffer `fault`. */
void pg_store_inject(pg_store *s, pg_fault fault, int skip, int count);
/* Lets every read held by PG_FAULT_HANG complete (normally, with the right
 * bytes). Also done by pg_store_close, and after PG_HANG_MAX_S at most. */
void pg_store_release_hangs(pg_store *s);
#define PG_HANG_MAX_S 30.0

/* Bytes read and transfers done so far (all threads). */
uint64_t pg_store_bytes_read(const pg_store *s);
uint64_t pg_store_reads(const pg_store *s);

#endif
