/*
 * convaccel compute kernels (see convaccel_compute.h).
 *
 * General convolutions are lowered to SGEMM (OpenBLAS):
 *   - 1x1, stride 1, unpadded: the input image of a group already is the
 *     [c_in/groups][h*w] right-hand matrix, so it goes to SGEMM as it is;
 *   - anything else: im2col into a bounded scratch buffer, a band of output
 *     rows at a time, then SGEMM on the band.
 * Convolutions with one input channel per group (depthwise) run as a 1-D
 * filter over a padded, phase-split copy of each plane (see "Depthwise"),
 * pooling as direct loops over output rows; the compiler vectorizes both.
 *
 * Everything here is reentrant: scratch memory is malloc'ed per call, and
 * the only global state is the thread count and a pool of worker threads
 * (plain pthreads, under one lock). The pool takes work split over image
 * planes, im2col rows, or slices of a GEMM when it is large enough to pay.
 * OpenBLAS itself is set to one thread (process-wide): independent calls
 * on slices scale better than its own threads on these shapes, and its
 * idle threads would compete with ours for the cores.
 *
 * A plain C file: standard headers and cblas.h only, no QEMU headers.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* sched_getaffinity, CPU_COUNT */
#endif

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "convaccel_compute.h"

/* Upper bound on worker threads per call (sizes the on-stack thread table). */
#define CVC_MAX_THREADS 64

/*
 * Work (multiply-accumulates or element visits) below which one more thread
 * does not pay for handing it over (waking a worker: microseconds).
 */
#define CVC_MIN_WORK_PER_THREAD (128 * 1024)

/* How long idle workers and waiting callers poll before they sleep. */
#define CVC_SPIN_NS 200000

/*
 * CVC_COL_BYTES (header) bounds one im2col tile (4 MiB measured as good as
 * larger ones): a range of output positions times all of the kernel's
 * c_in/groups * kh * kw rows, or, when even CVC_MIN_TILE_COLS positions
 * would not fit, a slice of those rows, accumulated into the output.
 */
#define CVC_MIN_TILE_COLS 16

/* Function clones for newer x86_64 (AVX2, AVX-512), picked at load time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CVC_TARGET_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CVC_TARGET_CLONES
#endif

static atomic_int cvc_threads; /* 0: as many as the process may run on */

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* a * b, or SIZE_MAX if that overflows. */
static size_t mul_sat(size_t a, size_t b)
{
    return b && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

/* malloc(count floats); NULL if the size overflows. */
static float *alloc_floats(size_t count)
{
    return count > SIZE_MAX / sizeof(float) ? NULL
                                            : malloc(count * sizeof(float));
}

/* CPUs this thread may run on (its affinity mask), else the online ones. */
static size_t cvc_usable_cpus(void)
{
    cpu_set_t set;
    long cores;

    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
        return (size_t)CPU_COUNT(&set);
    }
    cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (size_t)cores : 1;
}

int cvc_default_threads(void)
{
    int n = atomic_load_explicit(&cvc_threads, memory_order_relaxed);

    return (int)min_size(n > 0 ? (size_t)n : cvc_usable_cpus(), CVC_MAX_THREADS);
}

void cvc_set_threads(int n)
{
    atomic_store_explicit(&cvc_threads, n > 0 ? n : 0, memory_order_relaxed);
}

/*
 * One call's run: its thread count, and its cancellation (polled between
 * tiles by every thread of the call; once seen, sticky).
 */
struct cvc_run {
    size_t threads;
    const struct cvc_ctl *ctl;
    atomic_int stop;
};

static void run_init(struct cvc_run *run, const struct cvc_ctl *ctl)
{
    run->threads = ctl && ctl->threads ? min_size(ctl->threads, CVC_MAX_THREADS)
                                       : (size_t)cvc_default_threads();
    run->ctl = ctl && ctl->cancelled ? ctl : NULL;
    atomic_init(&run->stop, 0);
}

static bool run_stopped(struct cvc_run *run)
{
    if (atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        return true;
    }
    if (run->ctl && run->ctl->cancelled(run->ctl->opaque)) {
        atomic_store(&run->stop, 1);
        return true;
    }
    return false;
}

static int run_status(struct cvc_run *run)
{
    return atomic_load(&run->stop) ? CVC_CANCELLED : CVC_OK;
}

/* Items of item_work each that make one tile of at most CVC_TILE_WORK. */
static size_t tile_items(size_t item_work)
{
    return item_work >= CVC_TILE_WORK ? 1 : CVC_TILE_WORK / (item_work ? item_work : 1);
}

/* ------------------------------------------------------------------------
 * Threads
 *
 * A process-wide pool of worker threads, created on first need and kept
 * (creating a thread per call costs tens of microseconds, as much as a
 * small layer). Each cvc_parallel() call queues its ranges as tasks, runs
 * the first range itself, then runs any of its tasks that no worker took
 * yet, and waits for the rest. So calls from several threads at once just
 * share the workers, and a call never depends on a worker to finish.
 */

typedef void cvc_range_fn(void *ctx, size_t begin, size_t end);

struct cvc_batch {
    atomic_size_t pending;      /* queued or running tasks; changed under
                                 * the lock, polled without it */
};

struct cvc_task {
    cvc_range_fn *fn;
    void *ctx;
    size_t begin, end;
    struct cvc_batch *batch;
    struct cvc_task *next;      /* in the queue */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;        /* tasks were queued */
    pthread_cond_t done;        /* a task finished */
    struct cvc_task *queue;
    atomic_size_t queued;       /* tasks in the queue, for spinning readers */
    size_t workers;
} cvc_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static uint64_t cvc_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Poll cond() for up to CVC_SPIN_NS, yielding the CPU between polls (so a
 * spinning thread gives way to any runnable one). Waking a sleeping thread
 * costs tens of microseconds on a virtual machine, as much as a small
 * layer; layers come in quick succession, so a short spin pays.
 */
static bool cvc_spin(bool (*cond)(void *), void *opaque)
{
    uint64_t start = cvc_now_ns();

    do {
        if (cond(opaque)) {
            return true;
        }
        sched_yield();
    } while (cvc_now_ns() - start < CVC_SPIN_NS);
    return cond(opaque);
}

static bool cvc_have_queued(void *opaque)
{
    (void)opaque;
    return atomic_load_explicit(&cvc_pool.queued, memory_order_relaxed) != 0;
}

/* Called with the lock held; returns with it held. */
static void cvc_run_task(struct cvc_task *t)
{
    struct cvc_batch *batch = t->batch;

    pthread_mutex_unlock(&cvc_pool.lock);
    t->fn(t->ctx, t->begin, t->end);
    pthread_mutex_lock(&cvc_pool.lock);
    /* t and batch live on the caller's stack: gone once pending is 0. */
    if (--batch->pending == 0) {
        pthread_cond_broadcast(&cvc_pool.done);
    }
}

static void *cvc_worker_main(void *opaque)
{
    (void)opaque;
    pthread_mutex_lock(&cvc_pool.lock);
    for (;;) {
        struct cvc_task *t = cvc_pool.queue;

        if (!t) {
            pthread_mutex_unlock(&cvc_pool.lock);
            cvc_spin(cvc_have_queued, NULL);
            pthread_mutex_lock(&cvc_pool.lock);
            if (!cvc_pool.queue) {
                pthread_cond_wait(&cvc_pool.wake, &cvc_pool.lock);
            }
            continue;
        }
        cvc_pool.queue = t->next;
        atomic_fetch_sub(&cvc_pool.queued, 1);
        cvc_run_task(t);
    }
    return NULL;
}

/* Grow the pool to n workers (as far as possible); lock held. */
static void cvc_pool_grow(size_t n)
{
    sigset_t all, old;
    pthread_attr_t attr;
    pthread_t tid;

    if (cvc_pool.workers >= n || pthread_attr_init(&attr)) {
        return;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Workers must not take the host process's signals (QEMU's or others'). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (cvc_pool.workers < n &&
           pthread_create(&tid, &attr, cvc_worker_main, NULL) == 0) {
        cvc_pool.workers++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

static bool cvc_batch_done(void *opaque)
{
    struct cvc_batch *batch = opaque;

    return atomic_load(&batch->pending) == 0;
}

/* Unqueue one of batch's tasks that no worker has taken yet; lock held. */
static struct cvc_task *cvc_take_own(struct cvc_batch *batch)
{
    struct cvc_task **link;

    for (link = &cvc_pool.queue; *link; link = &(*link)->next) {
        if ((*link)->batch == batch) {
            struct cvc_task *t = *link;

            *link = t->next;
            atomic_fetch_sub(&cvc_pool.queued, 1);
            return t;
        }
    }
    return NULL;
}

/*
 * Run fn over the items [0, count), split into one contiguous range per
 * thread; item_work estimates the work of one item, to decide how many
 * threads pay. The calling thread takes part. This never fails.
 */
static void cvc_parallel(struct cvc_run *run, cvc_range_fn *fn, void *ctx,
                         size_t count, size_t item_work)
{
    struct cvc_task task[CVC_MAX_THREADS];
    struct cvc_batch batch;
    size_t nt = min_size(run->threads, count);
    size_t i;

    nt = min_size(nt, mul_sat(count, item_work) / CVC_MIN_WORK_PER_THREAD);
    if (nt <= 1) {
        fn(ctx, 0, count);
        return;
    }

    for (i = 0; i < nt; i++) {
        task[i] = (struct cvc_task) {
            .fn = fn, .ctx = ctx, .batch = &batch,
            .begin = count * i / nt, .end = count * (i + 1) / nt,
        };
    }
    batch.pending = nt - 1;

    pthread_mutex_lock(&cvc_pool.lock);
    cvc_pool_grow(nt - 1);
    for (i = nt - 1; i >= 1; i--) {
        task[i].next = cvc_pool.queue;
        cvc_pool.queue = &task[i];
        atomic_fetch_add(&cvc_pool.queued, 1);
        pthread_cond_signal(&cvc_pool.wake);
    }
    pthread_mutex_unlock(&cvc_pool.lock);

    fn(ctx, task[0].begin, task[0].end);

    pthread_mutex_lock(&cvc_pool.lock);
    for (;;) {
        struct cvc_task *t = cvc_take_own(&batch);

        if (!t) {
            break;
        }
        cvc_run_task(t);
    }
    if (batch.pending) {
        pthread_mutex_unlock(&cvc_pool.lock);
        cvc_spin(cvc_batch_done, &batch);
        pthread_mutex_lock(&cvc_pool.lock);
    }
    while (batch.pending) {
        pthread_cond_wait(&cvc_pool.done, &cvc_pool.lock);
    }
    pthread_mutex_unlock(&cvc_pool.lock);
}

/* ------------------------------------------------------------------------
 * Shared index math and epilogues
 */

/*
 * A window tap reads input column ow * stride + off for output column ow
 * (off = tap * dilation - pad, possibly negative). Returns in [*lo, *hi)
 * the output columns whose read lies inside [0, size); empty if lo >= hi.
 */
static void tap_range(ptrdiff_t off, size_t stride, size_t size, size_t n_out,
                      size_t *lo, size_t *hi)
{
    ptrdiff_t s = (ptrdiff_t)stride;
    ptrdiff_t last = (ptrdiff_t)size - 1 - off;  /* need ow * s <= last */
    ptrdiff_t first = off < 0 ? (-off + s - 1) / s : 0;

    *lo = min_size((size_t)first, n_out);
    *hi = last < 0 ? 0 : min_size((size_t)(last / s) + 1, n_out);
    if (*hi < *lo) {
        *hi = *lo;
    }
}

/* Input row read for output row oh and kernel row ki; -1 if in the padding. */
static ptrdiff_t tap_row(size_t oh, size_t ki, size_t stride, size_t dil,
                         size_t pad, size_t size)
{
    ptrdiff_t ih = (ptrdiff_t)(oh * stride + ki * dil) - (ptrdiff_t)pad;

    return ih >= 0 && ih < (ptrdiff_t)size ? ih : -1;
}

/* The activations keep NaN, as PyTorch's do (a NaN compares false). */
static void act_row(float *y, size_t len, unsigned act)
{
    size_t i;

    if (act == CVC_ACT_RELU) {
        for (i = 0; i < len; i++) {
            y[i] = y[i] < 0.0f ? 0.0f : y[i];
        }
    } else if (act == CVC_ACT_RELU6) {
        for (i = 0; i < len; i++) {
            float v = y[i] < 0.0f ? 0.0f : y[i];
            y[i] = v > 6.0f ? 6.0f : v;
        }
    }
}

/* y[r][c] = act(y[r][c] + bias[r]) over rows x cols, row pitch ld. */
static void epilogue(float *y, size_t rows, size_t cols, size_t ld,
                     const float *bias, unsigned act)
{
    size_t r, i;

    if (!bias && act == CVC_ACT_NONE) {
        return;
    }
    for (r = 0; r < rows; r++) {
        float *row = y + r * ld;

        if (bias) {
            float b = bias[r];
            for (i = 0; i < cols; i++) {
                row[i] += b;
            }
        }
        act_row(row, cols, act);
    }
}

/* ------------------------------------------------------------------------
 * General convolution: (im2col +) SGEMM
 */

struct im2col_job {
    const struct cvc_conv *p;
    const float *x;     /* first input channel of the group, one image */
    float *col;         /* [rows of the tile][q1 - q0] */
    size_t r0;          /* the tile's first im2col row */
    size_t q0, q1;      /* its output positions, flat: oh * w_out + ow */
};

/*
 * Columns [a, b) of output row oh of im2col row (ki, tap offset off, valid
 * output columns [lo, hi)) into d[0 .. b - a).
 */
static void im2col_part(const struct cvc_conv *p, const float *xc, size_t ki,
                        ptrdiff_t off, size_t lo, size_t hi, size_t oh,
                        size_t a, size_t b, float *d)
{
    ptrdiff_t ih = tap_row(oh, ki, p->stride_h, p->dil_h, p->pad_top, p->h_in);
    size_t l = lo < a ? a : lo > b ? b : lo;
    size_t h = hi < l ? l : hi > b ? b : hi;
    const float *src;
    size_t ow;

    if (ih < 0 || l >= h) {
        memset(d, 0, (b - a) * sizeof(float));
        return;
    }
    src = xc + (size_t)ih * p->w_in;
    memset(d, 0, (l - a) * sizeof(float));
    if (p->stride_w == 1) {
        memcpy(d + (l - a), src + l + off, (h - l) * sizeof(float));
    } else if (p->stride_w == 2) {
        for (ow = l; ow < h; ow++) {
            d[ow - a] = src[(ptrdiff_t)(2 * ow) + off];
        }
    } else {
        for (ow = l; ow < h; ow++) {
            d[ow - a] = src[(ptrdiff_t)(ow * p->stride_w) + off];
        }
    }
    memset(d + (h - a), 0, (b - h) * sizeof(float));
}

/*
 * One im2col row per (c, ki, kj), in the weights' order, so that
 * col row r pairs with weight column r: r = (c * kh + ki) * kw + kj.
 * Items are the tile's rows, r - r0.
 */
CVC_TARGET_CLONES
static void im2col_rows(void *opaque, size_t begin, size_t end)
{
    const struct im2col_job *j = opaque;
    const struct cvc_conv *p = j->p;
    size_t taps = (size_t)p->kh * p->kw;
    size_t plane = (size_t)p->h_in * p->w_in;
    size_t cols = j->q1 - j->q0;
    size_t i, q;

    for (i = begin; i < end; i++) {
        size_t r = j->r0 + i;
        size_t c = r / taps, ki = r % taps / p->kw, kj = r % p->kw;
        ptrdiff_t off = (ptrdiff_t)(kj * p->dil_w) - (ptrdiff_t)p->pad_left;
        const float *xc = j->x + c * plane;
        float *dst = j->col + i * cols;
        size_t lo, hi;

        tap_range(off, p->stride_w, p->w_in, p->w_out, &lo, &hi);
        for (q = j->q0; q < j->q1;) {
            size_t oh = q / p->w_out, a = q % p->w_out;
            size_t b = min_size(p->w_out, a + (j->q1 - q));

            im2col_part(p, xc, ki, off, lo, hi, oh, a, b, dst + (q - j->q0));
            q += b - a;
        }
    }
}

/*
 * C[m][n] = A[m][k] * B[k][n] (+ C if accumulate), all row-major with row
 * pitches lda, ldb, ldc. OpenBLAS runs single-threaded here: cvc_gemm splits
 * the work itself.
 */
static void sgemm(size_t m, size_t n, size_t k, const float *a, size_t lda,
                  const float *b, size_t ldb, float *c, size_t ldc,
                  bool accumulate)
{
    float beta = accumulate ? 1.0f : 0.0f;

    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)k, 1.0f,
                    a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb,
                beta, c, (int)ldc);
}

/* Output columns per work item when the columns are split across threads. */
#define GEMM_COLS 16

/* C (+)= A * B, then act(C + bias) with bias per row of C; see cvc_gemm(). */
struct gemm_job {
    struct cvc_run *run;
    size_t m, n, k;
    const float *a, *b;
    size_t lda, ldb;
    float *c;
    size_t ldc;
    bool accumulate;    /* add to C (a later slice of k) */
    bool epilogue;      /* the last slice of k: bias and activation */
    const float *bias;
    unsigned act;
    bool split_rows;
};

/*
 * Items [begin, end): rows of C, or GEMM_COLS-column slices of C, done a
 * tile of about CVC_TILE_WORK at a time, polling for cancellation between.
 */
static void gemm_part(void *opaque, size_t begin, size_t end)
{
    const struct gemm_job *g = opaque;
    size_t step = tile_items(g->split_rows ? g->n * g->k : g->m * g->k * GEMM_COLS);
    size_t i0, i1;

    for (i0 = begin; i0 < end && !run_stopped(g->run); i0 = i1) {
        i1 = min_size(end, i0 + step);
        if (g->split_rows) {
            float *c = g->c + i0 * g->ldc;

            sgemm(i1 - i0, g->n, g->k, g->a + i0 * g->lda, g->lda, g->b, g->ldb,
                  c, g->ldc, g->accumulate);
            if (g->epilogue) {
                epilogue(c, i1 - i0, g->n, g->ldc, g->bias ? g->bias + i0 : NULL,
                         g->act);
            }
        } else {
            size_t c0 = i0 * GEMM_COLS, c1 = min_size(i1 * GEMM_COLS, g->n);

            sgemm(g->m, c1 - c0, g->k, g->a, g->lda, g->b + c0, g->ldb,
                  g->c + c0, g->ldc, g->accumulate);
            if (g->epilogue) {
                epilogue(g->c + c0, g->m, c1 - c0, g->ldc, g->bias, g->act);
            }
        }
    }
}

/*
 * The GEMM and its epilogue, split across threads by rows or by columns of
 * C. OpenBLAS's own threads scale poorly on these shapes (a wide but short
 * B, or a tall A); independent single-threaded calls on slices scale well.
 * Each thread packs all of the operand it does not slice, so slice the
 * dimension that leaves the smaller one whole: rows (A) when B is smaller.
 */
static void cvc_gemm(struct gemm_job *g)
{
    g->split_rows = g->n < g->m;
    if (g->split_rows) {
        cvc_parallel(g->run, gemm_part, g, g->m, g->n * g->k);
    } else {
        cvc_parallel(g->run, gemm_part, g, (g->n + GEMM_COLS - 1) / GEMM_COLS,
                     g->m * g->k * GEMM_COLS);
    }
}

static bool is_pointwise(const struct cvc_conv *p)
{
    return p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
           p->pad_top == 0 && p->pad_left == 0 &&
           p->h_out == p->h_in && p->w_out == p->w_in;
}

static void openblas_single_threaded(void)
{
#ifdef OPENBLAS_VERSION
    openblas_set_num_threads(1);
#endif
}

static int conv_gemm(struct cvc_run *run, const struct cvc_conv *p,
                     const float *in, const float *w, const float *bias,
                     float *out)
{
    static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
    const size_t budget = CVC_COL_BYTES / sizeof(float);
    size_t cin_g = p->c_in / p->groups, cout_g = p->c_out / p->groups;
    size_t k = cin_g * p->kh * p->kw;
    size_t plane_in = (size_t)p->h_in * p->w_in;
    size_t plane_out = (size_t)p->h_out * p->w_out;
    size_t tile_cols = plane_out, tile_rows = k;
    float *col = NULL;
    size_t n, g, q0, r0;

    /* BLAS takes int sizes: shapes beyond them (tens of GB) are refused. */
    if (k > INT_MAX || cout_g > INT_MAX || plane_out > INT_MAX) {
        return CVC_NO_MEMORY;
    }
    pthread_once(&blas_once, openblas_single_threaded);
    if (!is_pointwise(p)) {
        /* a tile: tile_rows x tile_cols floats, at most the budget */
        tile_cols = min_size(plane_out, budget / k);
        if (tile_cols < min_size(plane_out, CVC_MIN_TILE_COLS)) {
            tile_cols = min_size(plane_out, CVC_MIN_TILE_COLS);
            tile_rows = budget / tile_cols;
        }
        col = alloc_floats(tile_rows * tile_cols);
        if (!col) {
            return CVC_NO_MEMORY;
        }
    }

    for (n = 0; n < p->n && !run_stopped(run); n++) {
        for (g = 0; g < p->groups && !run_stopped(run); g++) {
            const float *x = in + (n * p->c_in + g * cin_g) * plane_in;
            float *y = out + (n * p->c_out + g * cout_g) * plane_out;
            struct gemm_job job = {
                .run = run, .m = cout_g, .n = plane_out, .k = k,
                .a = w + g * cout_g * k, .lda = k, .b = x, .ldb = plane_out,
                .c = y, .ldc = plane_out, .epilogue = true,
                .bias = bias ? bias + g * cout_g : NULL, .act = p->act,
            };

            if (!col) {
                cvc_gemm(&job);
                continue;
            }
            for (q0 = 0; q0 < plane_out && !run_stopped(run); q0 += tile_cols) {
                for (r0 = 0; r0 < k && !run_stopped(run); r0 += tile_rows) {
                    struct im2col_job ij = {
                        .p = p, .x = x, .col = col, .r0 = r0,
                        .q0 = q0, .q1 = min_size(plane_out, q0 + tile_cols),
                    };

                    job.n = job.ldb = ij.q1 - ij.q0;
                    job.k = min_size(tile_rows, k - r0);
                    job.a = w + g * cout_g * k + r0;
                    job.b = col;
                    job.c = y + q0;
                    job.accumulate = r0 > 0;
                    job.epilogue = r0 + job.k == k;
                    cvc_parallel(run, im2col_rows, &ij, job.k, job.n);
                    cvc_gemm(&job);
                }
            }
        }
    }
    free(col);
    return run_status(run);
}

/* ------------------------------------------------------------------------
 * Depthwise convolution: one input channel per group
 *
 * Each input plane is copied into a zero-padded scratch image that is split
 * into stride_h * stride_w phase planes: padded pixel (r, c) goes to phase
 * plane (r % sh, c % sw) at (r / sh, c / sw). Every phase plane has L
 * columns, and output pixel (oh, ow) gets flat index q = oh * L + ow. Tap
 * (ki, kj) reads padded pixel (sh * oh + ki * dh, sw * ow + kj * dw), which is
 * entry q + (ki * dh / sh) * L + kj * dw / sw of phase plane
 * ((ki * dh) % sh, (kj * dw) % sw): a fixed offset from q for each tap.
 *
 * So the whole plane is one long 1-D filter, out[q] = b + sum_t w_t *
 * scratch[toff_t + q], with unit stride and no bounds checks whatever the
 * stride, dilation or padding. The columns ow >= w_out of each row are
 * computed too (L - w_out of them: the kernel's overhang) and dropped.
 */

/*
 * A block of outputs as GNU C vectors, so that the accumulators stay in
 * registers across the taps (4 SSE, 2 AVX or 1 AVX-512 register each).
 * aligned(4): the taps' loads are unaligned.
 */
typedef float cvc_vec __attribute__((vector_size(64), aligned(4)));
#define VEC_LEN (sizeof(cvc_vec) / sizeof(float))

struct dw_job {
    struct cvc_run *run;
    const struct cvc_conv *p;
    const float *in, *w, *bias;
    float *out;
    size_t rows, cols;      /* of a phase plane: R and L */
    size_t phase_len;       /* floats per phase plane, with slack */
    size_t stride_len;      /* floats in all the phase planes */
    size_t flat_len;        /* h_out * L, rounded up to whole vectors */
    size_t *toff;           /* [kh * kw]: tap offsets into the scratch */
    atomic_int failed;
};

/*
 * Copy input row xr (padded row r = ih + pad_top) into its phase planes.
 * Input column iw is padded column c = iw + pad_left: entry c / sw of
 * column phase c % sw. Columns past the last phase column are never read.
 */
static void dw_scatter_row(const struct dw_job *j, const float *xr,
                           float *row0)
{
    const struct cvc_conv *p = j->p;
    size_t sw = p->stride_w, pl = p->pad_left, len = j->phase_len;
    size_t n = sw * j->cols > pl ? min_size(p->w_in, sw * j->cols - pl) : 0;
    size_t iw, i;

    if (sw == 1) {
        memcpy(row0 + pl, xr, n * sizeof(float));
    } else if (sw == 2) {
        /* Even input columns go to column phase pl % 2, odd ones to the other. */
        float *even = row0 + pl % 2 * len + pl / 2;
        float *odd = row0 + (pl + 1) % 2 * len + (pl + 1) / 2;

        for (i = 0; i < n / 2; i++) {
            even[i] = xr[2 * i];
            odd[i] = xr[2 * i + 1];
        }
        if (n % 2) {
            even[n / 2] = xr[n - 1];
        }
    } else {
        for (iw = 0; iw < n; iw++) {
            row0[(iw + pl) % sw * len + (iw + pl) / sw] = xr[iw];
        }
    }
}

/* The scratch image of input plane x (see above). */
CVC_TARGET_CLONES
static void dw_fill_scratch(const struct dw_job *j, const float *x,
                            float *scratch)
{
    const struct cvc_conv *p = j->p;
    size_t sh = p->stride_h, sw = p->stride_w, ih;

    memset(scratch, 0, j->stride_len * sizeof(float));
    for (ih = 0; ih < p->h_in; ih++) {
        size_t r = ih + p->pad_top;  /* padded row */

        if (r / sh < j->rows) {
            dw_scatter_row(j, x + ih * p->w_in,
                           scratch + r % sh * sw * j->phase_len +
                           r / sh * j->cols);
        }
    }
}

/* dst[q] = b + sum_t tw[t] * src[toff[t] + q] for q < len (whole vectors). */
CVC_TARGET_CLONES
static void dw_filter(float *dst, size_t len, const float *src,
                      const size_t *toff, const float *tw, size_t ntaps,
                      float b)
{
    cvc_vec *out = (cvc_vec *)dst;
    size_t q = 0, t;

    /* Four independent accumulators hide the latency of the adds. */
    for (; q + 4 * VEC_LEN <= len; q += 4 * VEC_LEN, out += 4) {
        cvc_vec a0 = { 0 }, a1, a2, a3;

        a0 += b;
        a1 = a2 = a3 = a0;
        for (t = 0; t < ntaps; t++) {
            const cvc_vec *s = (const cvc_vec *)(src + toff[t] + q);

            a0 += tw[t] * s[0];
            a1 += tw[t] * s[1];
            a2 += tw[t] * s[2];
            a3 += tw[t] * s[3];
        }
        out[0] = a0;
        out[1] = a1;
        out[2] = a2;
        out[3] = a3;
    }
    for (; q < len; q += VEC_LEN, out++) {
        cvc_vec a0 = { 0 };

        a0 += b;
        for (t = 0; t < ntaps; t++) {
            a0 += tw[t] * *(const cvc_vec *)(src + toff[t] + q);
        }
        *out = a0;
    }
}

/* Planes [begin, end) of the output, plane = n * c_out + co. */
static void depthwise_planes(void *opaque, size_t begin, size_t end)
{
    struct dw_job *j = opaque;
    const struct cvc_conv *p = j->p;
    size_t mult = p->c_out / p->c_in;  /* output channels per input channel */
    size_t taps = (size_t)p->kh * p->kw;
    size_t plane_in = (size_t)p->h_in * p->w_in;
    size_t plane_out = (size_t)p->h_out * p->w_out;
    size_t scratch_len = j->stride_len;
    /* a tile of the flat filter: whole vector blocks, about CVC_TILE_WORK */
    size_t block = 4 * VEC_LEN;
    size_t step = (tile_items(taps) + block - 1) / block * block;
    float *scratch, *flat;
    size_t pl, oh, q;

    scratch = alloc_floats(scratch_len + j->flat_len);
    if (!scratch) {
        atomic_store(&j->failed, 1);
        return;
    }
    flat = scratch + scratch_len;

    for (pl = begin; pl < end && !run_stopped(j->run); pl++) {
        size_t n = pl / p->c_out, co = pl % p->c_out;
        float *y = j->out + pl * plane_out;

        /* Planes sharing an input channel (mult > 1) share the scratch. */
        if (pl == begin || co % mult == 0) {
            dw_fill_scratch(j, j->in + (n * p->c_in + co / mult) * plane_in,
                            scratch);
        }
        for (q = 0; q < j->flat_len; q += step) {
            if (q && run_stopped(j->run)) {
                break;
            }
            dw_filter(flat + q, min_size(step, j->flat_len - q), scratch + q,
                      j->toff, j->w + co * taps, taps,
                      j->bias ? j->bias[co] : 0.0f);
        }
        for (oh = 0; oh < p->h_out; oh++) {
            memcpy(y + oh * p->w_out, flat + oh * j->cols,
                   p->w_out * sizeof(float));
            act_row(y + oh * p->w_out, p->w_out, p->act);
        }
    }
    free(scratch);
}

static int conv_depthwise(struct cvc_run *run, const struct cvc_conv *p,
                          const float *in, const float *w, const float *bias,
                          float *out)
{
    size_t sh = p->stride_h, sw = p->stride_w;
    size_t row_shift = (size_t)(p->kh - 1) * p->dil_h / sh;
    size_t col_shift = (size_t)(p->kw - 1) * p->dil_w / sw;
    struct dw_job job = {
        .run = run, .p = p, .in = in, .w = w, .bias = bias, .out = out,
        .rows = p->h_out + row_shift,
        .cols = p->w_out + col_shift,
    };
    size_t ki, kj;

    /* The last vector may read up to VEC_LEN - 1 entries past the rows. */
    job.phase_len = mul_sat(job.rows, job.cols) + col_shift + VEC_LEN;
    job.stride_len = mul_sat(sh * sw, job.phase_len);
    job.flat_len = mul_sat(p->h_out, job.cols);
    if (job.phase_len < VEC_LEN || job.stride_len > SIZE_MAX / 2 ||
        job.flat_len > SIZE_MAX / 2) {
        return CVC_NO_MEMORY;  /* sizes overflowed: no such memory anyway */
    }
    job.flat_len = (job.flat_len + VEC_LEN - 1) / VEC_LEN * VEC_LEN;
    /* Each thread holds one plane's scratch: too large planes go by im2col. */
    if (job.stride_len + job.flat_len > CVC_PLANE_BYTES / sizeof(float)) {
        return conv_gemm(run, p, in, w, bias, out);
    }
    job.toff = malloc((size_t)p->kh * p->kw * sizeof(*job.toff));
    if (!job.toff) {
        return CVC_NO_MEMORY;
    }
    for (ki = 0; ki < p->kh; ki++) {
        for (kj = 0; kj < p->kw; kj++) {
            size_t r = ki * p->dil_h, c = kj * p->dil_w;  /* at q = 0 */

            job.toff[ki * p->kw + kj] =
                (r % sh * sw + c % sw) * job.phase_len +
                r / sh * job.cols + c / sw;
        }
    }
    atomic_init(&job.failed, 0);
    cvc_parallel(run, depthwise_planes, &job, (size_t)p->n * p->c_out,
                 (size_t)p->h_out * p->w_out * p->kh * p->kw);
    free(job.toff);
    return atomic_load(&job.failed) ? CVC_NO_MEMORY : run_status(run);
}

int cvc_conv2d(const struct cvc_conv *p, const float *in, const float *w,
               const float *bias, float *out)
{
    struct cvc_run run;

    run_init(&run, p->ctl);
    if (p->c_in == p->groups) {
        return conv_depthwise(&run, p, in, w, bias, out);
    }
    return conv_gemm(&run, p, in, w, bias, out);
}

uint64_t cvc_conv_macs(const struct cvc_conv *p)
{
    return (uint64_t)p->n * p->c_out * p->h_out * p->w_out *
           (p->c_in / p->groups) * p->kh * p->kw;
}

/* ------------------------------------------------------------------------
 * Pooling
 */

struct plane_job {
    struct cvc_run *run;
    const struct cvc_pool *p;
    const float *in;
    float *out;
    bool is_max;
};

/* yr[ow] += xr[ow * stride + off] for ow in [lo, hi). */
static void add_strided(float *yr, const float *xr, ptrdiff_t off,
                        size_t stride, size_t lo, size_t hi)
{
    size_t ow;

    if (stride == 1) {
        for (ow = lo; ow < hi; ow++) {
            yr[ow] += xr[(ptrdiff_t)ow + off];
        }
    } else {
        for (ow = lo; ow < hi; ow++) {
            yr[ow] += xr[(ptrdiff_t)(ow * stride) + off];
        }
    }
}

/* The larger of a and b, NaN if either is (PyTorch's max pooling). */
static inline float max_nan(float a, float b)
{
    return b > a || b != b ? b : a;
}

/* yr[ow] = max(yr[ow], xr[ow * stride + off]) for ow in [lo, hi). */
static void max_strided(float *yr, const float *xr, ptrdiff_t off,
                        size_t stride, size_t lo, size_t hi)
{
    size_t ow;

    if (stride == 1) {
        for (ow = lo; ow < hi; ow++) {
            yr[ow] = max_nan(yr[ow], xr[(ptrdiff_t)ow + off]);
        }
    } else {
        for (ow = lo; ow < hi; ow++) {
            yr[ow] = max_nan(yr[ow], xr[(ptrdiff_t)(ow * stride) + off]);
        }
    }
}

/* The plain sum of a contiguous run (global pooling). */
static float sum_run(const float *x, size_t len)
{
    float acc[8] = { 0 };
    float s = 0.0f;
    size_t i, l;

    /* Eight partial sums: vectorizable without reassociation flags. */
    for (i = 0; i + 8 <= len; i += 8) {
        for (l = 0; l < 8; l++) {
            acc[l] += x[i + l];
        }
    }
    for (; i < len; i++) {
        s += x[i];
    }
    for (l = 0; l < 8; l++) {
        s += acc[l];
    }
    return s;
}

static bool is_global(const struct cvc_pool *p)
{
    return p->h_out == 1 && p->w_out == 1 && p->kh == p->h_in &&
           p->kw == p->w_in && p->pad_top == 0 && p->pad_left == 0;
}

/* One output plane of max (is_max) or average pooling. */
CVC_TARGET_CLONES
static void pool_plane(struct cvc_run *run, const struct cvc_pool *p,
                       const float *x, float *y, bool is_max)
{
    float scale = 1.0f / (float)((size_t)p->kh * p->kw);
    size_t oh, ow, ki, kj;

    if (is_global(p)) {
        size_t len = (size_t)p->h_in * p->w_in;

        if (is_max) {
            y[0] = -INFINITY;
            for (ow = 0; ow < len; ow++) {
                y[0] = max_nan(y[0], x[ow]);
            }
        } else {
            y[0] = sum_run(x, len) * scale;
        }
        act_row(y, 1, p->act);
        return;
    }

    for (oh = 0; oh < p->h_out && !run_stopped(run); oh++) {
        float *yr = y + oh * p->w_out;

        for (ow = 0; ow < p->w_out; ow++) {
            yr[ow] = is_max ? -INFINITY : 0.0f;
        }
        for (ki = 0; ki < p->kh; ki++) {
            ptrdiff_t ih = tap_row(oh, ki, p->stride_h, 1, p->pad_top,
                                   p->h_in);
            const float *xr;

            if (ih < 0) {
                continue;
            }
            xr = x + (size_t)ih * p->w_in;
            for (kj = 0; kj < p->kw; kj++) {
                ptrdiff_t off = (ptrdiff_t)kj - (ptrdiff_t)p->pad_left;
                size_t lo, hi;

                tap_range(off, p->stride_w, p->w_in, p->w_out, &lo, &hi);
                if (is_max) {
                    max_strided(yr, xr, off, p->stride_w, lo, hi);
                } else {
                    add_strided(yr, xr, off, p->stride_w, lo, hi);
                }
            }
        }
        if (!is_max) {
            for (ow = 0; ow < p->w_out; ow++) {
                yr[ow] *= scale;
            }
        }
        act_row(yr, p->w_out, p->act);
    }
}

static void pool_planes(void *opaque, size_t begin, size_t end)
{
    const struct plane_job *j = opaque;
    const struct cvc_pool *p = j->p;
    size_t plane_in = (size_t)p->h_in * p->w_in;
    size_t plane_out = (size_t)p->h_out * p->w_out;
    size_t pl;

    for (pl = begin; pl < end && !run_stopped(j->run); pl++) {
        pool_plane(j->run, p, j->in + pl * plane_in, j->out + pl * plane_out,
                   j->is_max);
    }
}

static size_t pool_work(const struct cvc_pool *p)
{
    return (size_t)p->h_out * p->w_out * p->kh * p->kw;
}

static int pool2d(const struct cvc_pool *p, const float *in, float *out,
                  bool is_max)
{
    struct cvc_run run;
    struct plane_job job = {
        .run = &run, .p = p, .in = in, .out = out, .is_max = is_max,
    };

    run_init(&run, p->ctl);
    cvc_parallel(&run, pool_planes, &job, (size_t)p->n * p->c, pool_work(p));
    return run_status(&run);
}

int cvc_maxpool2d(const struct cvc_pool *p, const float *in, float *out)
{
    return pool2d(p, in, out, true);
}

int cvc_avgpool2d(const struct cvc_pool *p, const float *in, float *out)
{
    return pool2d(p, in, out, false);
}
