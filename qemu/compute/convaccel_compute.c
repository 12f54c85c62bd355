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
#include <strings.h>
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

/* A fused activation and its parameters (docs/hardware.md, "Activations"). */
struct act_params {
    unsigned act;       /* enum cvc_act */
    float alpha, beta;  /* LeakyReLU's slope; hard-sigmoid's alpha and beta */
};

static struct act_params act_of(unsigned act, float alpha, float beta)
{
    return (struct act_params) { .act = act, .alpha = alpha, .beta = beta };
}

/* min(max(v, 0), 1), NaN kept (a NaN compares false). */
static inline float clamp01(float v)
{
    v = v < 0.0f ? 0.0f : v;
    return v > 1.0f ? 1.0f : v;
}

/*
 * The activations keep NaN, as PyTorch's do (a NaN compares false; NaN
 * times anything is NaN). Branchless selects, so that they vectorize.
 */
static inline float relu(float v)
{
    return v < 0.0f ? 0.0f : v;
}

static inline float relu6(float v)
{
    v = relu(v);
    return v > 6.0f ? 6.0f : v;
}

CVC_TARGET_CLONES
static void act_row(float *y, size_t len, const struct act_params *a)
{
    float alpha = a->alpha, beta = a->beta;
    size_t i;

    switch (a->act) {
    case CVC_ACT_RELU:
        for (i = 0; i < len; i++) {
            y[i] = relu(y[i]);
        }
        break;
    case CVC_ACT_RELU6:
        for (i = 0; i < len; i++) {
            y[i] = relu6(y[i]);
        }
        break;
    case CVC_ACT_LEAKY_RELU:
        for (i = 0; i < len; i++) {
            y[i] = y[i] < 0.0f ? alpha * y[i] : y[i];
        }
        break;
    case CVC_ACT_SIGMOID:
        for (i = 0; i < len; i++) {
            y[i] = 1.0f / (1.0f + expf(-y[i]));
        }
        break;
    case CVC_ACT_HARD_SIGMOID:
        for (i = 0; i < len; i++) {
            y[i] = clamp01(alpha * y[i] + beta);
        }
        break;
    case CVC_ACT_HARD_SWISH:
        for (i = 0; i < len; i++) {
            y[i] = y[i] * clamp01(alpha * y[i] + beta);
        }
        break;
    default:
        break;
    }
}

/* y[i] = act(x[i]): a copy and the activation in one pass. */
CVC_TARGET_CLONES
static void act_copy_row(float *y, const float *x, size_t len, const struct act_params *a)
{
    size_t i;

    switch (a->act) {
    case CVC_ACT_RELU:
        for (i = 0; i < len; i++) {
            y[i] = relu(x[i]);
        }
        break;
    case CVC_ACT_RELU6:
        for (i = 0; i < len; i++) {
            y[i] = relu6(x[i]);
        }
        break;
    default:
        memcpy(y, x, len * sizeof(float));
        act_row(y, len, a);
        break;
    }
}

/* y[i] = act(y[i] + b): one pass for the common activations. */
CVC_TARGET_CLONES
static void bias_act_row(float *y, size_t len, float b, const struct act_params *a)
{
    size_t i;

    switch (a->act) {
    case CVC_ACT_RELU:
        for (i = 0; i < len; i++) {
            y[i] = relu(y[i] + b);
        }
        break;
    case CVC_ACT_RELU6:
        for (i = 0; i < len; i++) {
            y[i] = relu6(y[i] + b);
        }
        break;
    default:
        for (i = 0; i < len; i++) {
            y[i] += b;
        }
        act_row(y, len, a);
        break;
    }
}

/* y[r][c] = act(y[r][c] + bias[r]) over rows x cols, row pitch ld. */
static void epilogue(float *y, size_t rows, size_t cols, size_t ld,
                     const float *bias, const struct act_params *act)
{
    size_t r;

    if (!bias && act->act == CVC_ACT_NONE) {
        return;
    }
    for (r = 0; r < rows; r++) {
        if (bias) {
            bias_act_row(y + r * ld, cols, bias[r], act);
        } else {
            act_row(y + r * ld, cols, act);
        }
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

/*
 * The most output one SGEMM call writes when an epilogue (bias,
 * activation) follows it: the epilogue then finds C in the L2 cache instead
 * of reading a whole layer's output back from memory.
 */
#define GEMM_EPILOGUE_BYTES (256u << 10)

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
    struct act_params act;
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
    size_t item_bytes = (g->split_rows ? g->n : g->m * GEMM_COLS) * sizeof(float);
    size_t i0, i1;

    if (g->epilogue && (g->bias || g->act.act != CVC_ACT_NONE)) {
        size_t fit = GEMM_EPILOGUE_BYTES / item_bytes;

        step = min_size(step, fit ? fit : 1);
    }

    for (i0 = begin; i0 < end && !run_stopped(g->run); i0 = i1) {
        i1 = min_size(end, i0 + step);
        if (g->split_rows) {
            float *c = g->c + i0 * g->ldc;

            sgemm(i1 - i0, g->n, g->k, g->a + i0 * g->lda, g->lda, g->b, g->ldb,
                  c, g->ldc, g->accumulate);
            if (g->epilogue) {
                epilogue(c, i1 - i0, g->n, g->ldc, g->bias ? g->bias + i0 : NULL,
                         &g->act);
            }
        } else {
            size_t c0 = i0 * GEMM_COLS, c1 = min_size(i1 * GEMM_COLS, g->n);

            sgemm(g->m, c1 - c0, g->k, g->a, g->lda, g->b + c0, g->ldb,
                  g->c + c0, g->ldc, g->accumulate);
            if (g->epilogue) {
                epilogue(g->c + c0, g->m, c1 - c0, g->ldc, g->bias, &g->act);
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

const char *cvc_blas_core(void)
{
#ifdef OPENBLAS_VERSION
    return openblas_get_corename();
#else
    return "not OpenBLAS";
#endif
}

/*
 * OpenBLAS's kernels for CPUs without AVX2 and FMA. Its detection falls
 * back to Prescott on CPU models it does not know (newer ones, some
 * virtual CPUs), whatever their vector units.
 */
static const char *const blas_old_cores[] = {
    "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Sandybridge",
    "Atom", "Katmai", "Coppermine", "Northwood", "Banias", "Opteron",
    "Barcelona", "Bobcat", "Bulldozer", "Piledriver", "Steamroller",
    "Excavator",
};

const char *cvc_blas_better_core(void)
{
#if defined(OPENBLAS_VERSION) && defined(__GNUC__) && defined(__x86_64__)
    const char *core = openblas_get_corename();
    bool old = false;
    size_t i;

    if (getenv("OPENBLAS_CORETYPE") || !core) {
        return NULL;
    }
    for (i = 0; i < sizeof(blas_old_cores) / sizeof(blas_old_cores[0]); i++) {
        old |= strcasecmp(core, blas_old_cores[i]) == 0;
    }
    __builtin_cpu_init();
    if (!old || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        return NULL;
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
        return "SkylakeX";
    }
    return "Haswell";
#else
    return NULL;
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
                .bias = bias ? bias + g * cout_g : NULL,
                .act = act_of(p->act, p->act_alpha, p->act_beta),
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
static inline __attribute__((always_inline)) void
dw_scatter_row(const struct dw_job *j, const float *restrict xr, float *restrict row0)
{
    const struct cvc_conv *p = j->p;
    size_t sw = p->stride_w, pl = p->pad_left, len = j->phase_len;
    size_t n = sw * j->cols > pl ? min_size(p->w_in, sw * j->cols - pl) : 0;
    size_t iw, i;

    if (sw == 1) {
        memcpy(row0 + pl, xr, n * sizeof(float));
    } else if (sw == 2) {
        /* Even input columns go to column phase pl % 2, odd ones to the other. */
        float *restrict even = row0 + pl % 2 * len + pl / 2;
        float *restrict odd = row0 + (pl + 1) % 2 * len + (pl + 1) / 2;

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
    struct act_params act = act_of(p->act, p->act_alpha, p->act_beta);
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
            act_copy_row(y + oh * p->w_out, flat + oh * j->cols, p->w_out, &act);
        }
    }
    free(scratch);
}

/*
 * The phase-plane geometry of a depthwise convolution into job (see above),
 * for 4-byte elements. Returns CVC_OK with job->toff allocated, 1 when the
 * planes would exceed CVC_PLANE_BYTES (go by im2col), or CVC_NO_MEMORY.
 */
static int dw_plan(const struct cvc_conv *p, struct dw_job *job)
{
    size_t sh = p->stride_h, sw = p->stride_w;
    size_t row_shift = (size_t)(p->kh - 1) * p->dil_h / sh;
    size_t col_shift = (size_t)(p->kw - 1) * p->dil_w / sw;
    size_t ki, kj;

    job->rows = p->h_out + row_shift;
    job->cols = p->w_out + col_shift;
    /* The last vector may read up to VEC_LEN - 1 entries past the rows. */
    job->phase_len = mul_sat(job->rows, job->cols) + col_shift + VEC_LEN;
    job->stride_len = mul_sat(sh * sw, job->phase_len);
    job->flat_len = mul_sat(p->h_out, job->cols);
    if (job->phase_len < VEC_LEN || job->stride_len > SIZE_MAX / 2 ||
        job->flat_len > SIZE_MAX / 2) {
        return CVC_NO_MEMORY;  /* sizes overflowed: no such memory anyway */
    }
    job->flat_len = (job->flat_len + VEC_LEN - 1) / VEC_LEN * VEC_LEN;
    /* Each thread holds one plane's scratch: too large planes go by im2col. */
    if (job->stride_len + job->flat_len > CVC_PLANE_BYTES / sizeof(float)) {
        return 1;
    }
    job->toff = malloc((size_t)p->kh * p->kw * sizeof(*job->toff));
    if (!job->toff) {
        return CVC_NO_MEMORY;
    }
    for (ki = 0; ki < p->kh; ki++) {
        for (kj = 0; kj < p->kw; kj++) {
            size_t r = ki * p->dil_h, c = kj * p->dil_w;  /* at q = 0 */

            job->toff[ki * p->kw + kj] =
                (r % sh * sw + c % sw) * job->phase_len +
                r / sh * job->cols + c / sw;
        }
    }
    atomic_init(&job->failed, 0);
    return CVC_OK;
}

static int conv_depthwise(struct cvc_run *run, const struct cvc_conv *p,
                          const float *in, const float *w, const float *bias,
                          float *out)
{
    struct dw_job job = {
        .run = run, .p = p, .in = in, .w = w, .bias = bias, .out = out,
    };
    int rc = dw_plan(p, &job);

    if (rc == 1) {
        return conv_gemm(run, p, in, w, bias, out);
    }
    if (rc) {
        return rc;
    }
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
    } else if (stride == 2) {   /* a constant stride: vectorized loads */
        for (ow = lo; ow < hi; ow++) {
            yr[ow] += xr[(ptrdiff_t)(ow * 2) + off];
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
    } else if (stride == 2) {   /* a constant stride: vectorized loads */
        for (ow = lo; ow < hi; ow++) {
            yr[ow] = max_nan(yr[ow], xr[(ptrdiff_t)(ow * 2) + off]);
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
    struct act_params act = act_of(p->act, 0.0f, 0.0f);
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
        act_row(y, 1, &act);
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
        act_row(yr, p->w_out, &act);
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

/* ------------------------------------------------------------------------
 * Fully connected, float32: one SGEMM for the batch
 *
 * out (n x c_out) = in (n x c_in) * w^T, w row-major [c_out][c_in]. The
 * threads take slices of the output channels, so each weight row is read
 * once for all n images.
 */

struct fc_job {
    struct cvc_run *run;
    const struct cvc_fc *p;
    const float *in, *w, *bias;
    float *out;
};

/* Output channels [begin, end), a tile of about CVC_TILE_WORK at a time. */
static void fc_part(void *opaque, size_t begin, size_t end)
{
    const struct fc_job *j = opaque;
    const struct cvc_fc *p = j->p;
    struct act_params act = act_of(p->act, p->act_alpha, p->act_beta);
    size_t step = tile_items((size_t)p->n * p->c_in);
    size_t c0, c1, i, c;

    for (c0 = begin; c0 < end && !run_stopped(j->run); c0 = c1) {
        c1 = min_size(end, c0 + step);
        if (p->n == 1) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(c1 - c0), (int)p->c_in,
                        1.0f, j->w + c0 * p->c_in, (int)p->c_in, j->in, 1,
                        0.0f, j->out + c0, 1);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p->n,
                        (int)(c1 - c0), (int)p->c_in, 1.0f, j->in, (int)p->c_in,
                        j->w + c0 * p->c_in, (int)p->c_in, 0.0f, j->out + c0,
                        (int)p->c_out);
        }
        for (i = 0; i < p->n; i++) {
            float *y = j->out + i * p->c_out + c0;

            if (j->bias) {
                for (c = 0; c < c1 - c0; c++) {
                    y[c] += j->bias[c0 + c];
                }
            }
            act_row(y, c1 - c0, &act);
        }
    }
}

int cvc_fc(const struct cvc_fc *p, const float *in, const float *w,
           const float *bias, float *out)
{
    static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
    struct cvc_run run;
    struct fc_job job = { .run = &run, .p = p, .in = in, .w = w, .bias = bias,
                          .out = out };

    if (p->n > INT_MAX || p->c_in > INT_MAX || p->c_out > INT_MAX) {
        return CVC_NO_MEMORY;
    }
    pthread_once(&blas_once, openblas_single_threaded);
    run_init(&run, p->ctl);
    cvc_parallel(&run, fc_part, &job, p->c_out, (size_t)p->n * p->c_in);
    return run_status(&run);
}

/* ------------------------------------------------------------------------
 * int8: instruction set selection
 *
 * Three implementations of the same int8 GEMM micro-kernel (below), on the
 * same data layouts: AVX-512 VNNI (vpdpbusd), AVX2 (vpmaddwd) and plain C.
 * Each computes the same int32 sums modulo 2^32, so they agree bit for bit.
 */
#if defined(__GNUC__) && defined(__x86_64__)
#define CVC_X86 1
#include <immintrin.h>
#define CVC_AVX2 __attribute__((target("avx2")))
#define CVC_VNNI \
    __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512vnni")))
#else
#define CVC_X86 0
#endif

static atomic_int cvc_isa_cap; /* enum cvc_isa set by cvc_set_isa, 0: none */

/* The best ISA this CPU (and its OS) runs, capped by $CVC_ISA. */
static int isa_detect(void)
{
    static atomic_int detected;
    int isa = atomic_load_explicit(&detected, memory_order_relaxed);
    const char *env;

    if (isa) {
        return isa;
    }
    isa = CVC_ISA_PORTABLE;
#if CVC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        isa = CVC_ISA_AVX2;
    }
    if (isa == CVC_ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni")) {
        isa = CVC_ISA_AVX512_VNNI;
    }
#endif
    env = getenv("CVC_ISA");
    if (env && strcmp(env, "portable") == 0) {
        isa = CVC_ISA_PORTABLE;
    } else if (env && strcmp(env, "avx2") == 0 && isa > CVC_ISA_AVX2) {
        isa = CVC_ISA_AVX2;
    }
    atomic_store_explicit(&detected, isa, memory_order_relaxed);
    return isa;
}

int cvc_isa(void)
{
    int cap = atomic_load_explicit(&cvc_isa_cap, memory_order_relaxed);
    int isa = isa_detect();

    return cap && cap < isa ? cap : isa;
}

int cvc_set_isa(int isa)
{
    atomic_store_explicit(&cvc_isa_cap,
                          isa >= CVC_ISA_PORTABLE && isa <= CVC_ISA_AVX512_VNNI ? isa : 0,
                          memory_order_relaxed);
    return cvc_isa();
}

/* ------------------------------------------------------------------------
 * int8: requantization, the epilogue of every int8 layer
 *
 * rescale(v, M, S) = (v * M + 2^(S-1)) >> S in 64 bits: |v| <= 2^31 and
 * 0 <= M < 2^31 give |v * M| < 2^62, so nothing overflows.
 */

static inline int8_t requant_one(int32_t acc, int32_t m, int32_t s,
                                 const struct cvc_quant *q)
{
    int64_t v = ((int64_t)acc * m + ((int64_t)1 << (s - 1))) >> s;

    v += q->zp_out;
    v = v < q->act_min ? q->act_min : v > q->act_max ? q->act_max : v;
    return (int8_t)v;
}

/* Wrapping int32 addition (the accumulators' two's complement). */
static inline int32_t add_wrap(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

#if CVC_X86
/*
 * 8 outputs at a time. AVX2 has no 64-bit arithmetic shift: with
 * t = v * M + 2^(S-1) in (-2^62, 2^62 + 2^61), t + 2^62 is in [0, 2^64), a
 * logical shift of it gives (t >> S) + 2^(62-S) exactly (2^62 is a multiple
 * of 2^S), and the clamp is done in 64 bits before narrowing.
 */
CVC_AVX2
static size_t requant_avx2(const int32_t *acc, size_t n, int32_t add,
                           int32_t m, int32_t s, const struct cvc_quant *q,
                           int8_t *y)
{
    const __m256i vadd = _mm256_set1_epi32(add);
    const __m256i vm = _mm256_set1_epi64x(m);
    const __m256i vrnd = _mm256_set1_epi64x(((int64_t)1 << (s - 1)) +
                                            ((int64_t)1 << 62));
    const __m128i cnt = _mm_cvtsi32_si128(s);
    const __m256i voff = _mm256_set1_epi64x(((int64_t)1 << (62 - s)) - q->zp_out);
    const __m256i vlo = _mm256_set1_epi64x(q->act_min);
    const __m256i vhi = _mm256_set1_epi64x(q->act_max);
    const __m256i bytes = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                           -1, -1, -1, -1, 0, 4, 8, 12, -1, -1, -1, -1,
                                           -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i gather = _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1);
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        __m256i v = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(acc + i)), vadd);
        __m256i half[2];
        int k;

        half[0] = v;                            /* elements 0, 2, 4, 6 */
        half[1] = _mm256_srli_epi64(v, 32);     /* elements 1, 3, 5, 7 */
        for (k = 0; k < 2; k++) {
            __m256i t = _mm256_add_epi64(_mm256_mul_epi32(half[k], vm), vrnd);

            t = _mm256_sub_epi64(_mm256_srl_epi64(t, cnt), voff);
            t = _mm256_blendv_epi8(t, vlo, _mm256_cmpgt_epi64(vlo, t));
            half[k] = _mm256_blendv_epi8(t, vhi, _mm256_cmpgt_epi64(t, vhi));
        }
        v = _mm256_blend_epi32(half[0], _mm256_slli_epi64(half[1], 32), 0xaa);
        v = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, bytes), gather);
        _mm_storel_epi64((__m128i *)(y + i), _mm256_castsi256_si128(v));
    }
    return i;
}

/*
 * 16 outputs at a time with AVX-512, which has the 64-bit arithmetic shift,
 * min and max (the arithmetic of requant_one, lane by lane). GCC 12's
 * AVX-512 intrinsics start from _mm512_undefined_*(), which its
 * -Wmaybe-uninitialized takes for a read of an uninitialized variable
 * (GCC bug 105593, fixed in GCC 13): silenced for this function only.
 */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
CVC_VNNI
static size_t requant_avx512(const int32_t *acc, size_t n, int32_t add,
                             int32_t m, int32_t s, const struct cvc_quant *q,
                             int8_t *y)
{
    const __m512i vadd = _mm512_set1_epi32(add);
    const __m512i vm = _mm512_set1_epi64(m);
    const __m512i vrnd = _mm512_set1_epi64((int64_t)1 << (s - 1));
    const __m128i cnt = _mm_cvtsi32_si128(s);
    const __m512i vzp = _mm512_set1_epi64(q->zp_out);
    const __m512i vlo = _mm512_set1_epi64(q->act_min);
    const __m512i vhi = _mm512_set1_epi64(q->act_max);
    size_t i;

    for (i = 0; i + 16 <= n; i += 16) {
        __m512i v = _mm512_add_epi32(_mm512_loadu_si512((const void *)(acc + i)), vadd);
        __m128i b[2];
        int k;

        for (k = 0; k < 2; k++) {
            /* k = 0: elements 0, 2, ..., 14; k = 1: 1, 3, ..., 15 */
            __m512i t = _mm512_mul_epi32(k ? _mm512_srli_epi64(v, 32) : v, vm);

            t = _mm512_sra_epi64(_mm512_add_epi64(t, vrnd), cnt);
            t = _mm512_add_epi64(t, vzp);
            t = _mm512_min_epi64(_mm512_max_epi64(t, vlo), vhi);
            b[k] = _mm512_mask_cvtepi64_epi8(_mm_setzero_si128(), 0xff, t);
        }
        _mm_storeu_si128((__m128i *)(y + i), _mm_unpacklo_epi8(b[0], b[1]));
    }
    return i;
}
#pragma GCC diagnostic pop
#endif

/*
 * y[i * ystride] = the int8 result of accumulator acc[i] + add, i < n, for
 * one output channel with rescale record (m, s).
 */
static void requant_row(const int32_t *acc, size_t n, int32_t add, int32_t m,
                        int32_t s, const struct cvc_quant *q, int isa,
                        int8_t *y, size_t ystride)
{
    int8_t tmp[64];
    size_t i0, i;

    for (i0 = 0; i0 < n; i0 += sizeof(tmp)) {
        size_t len = min_size(sizeof(tmp), n - i0);
        int8_t *d = ystride == 1 ? y + i0 : tmp;

        i = 0;
#if CVC_X86
        if (isa >= CVC_ISA_AVX512_VNNI) {
            i = requant_avx512(acc + i0, len, add, m, s, q, d);
        }
        if (isa >= CVC_ISA_AVX2) {
            i += requant_avx2(acc + i0 + i, len - i, add, m, s, q, d + i);
        }
#else
        (void)isa;
#endif
        for (; i < len; i++) {
            d[i] = requant_one(add_wrap(acc[i0 + i], add), m, s, q);
        }
        if (q->lut) {
            for (i = 0; i < len; i++) {
                d[i] = q->lut[d[i] + 128];
            }
        }
        if (ystride != 1) {
            for (i = 0; i < len; i++) {
                y[(i0 + i) * ystride] = tmp[i];
            }
        }
    }
}

/*
 * In float32 throughout, which gives the spec's result: r = rint(x / qscale)
 * is an integer; when |r| < 2^24, r + zp_out is exact, and when it is
 * larger the sum stays far outside [-128, 127] and clamps the same. One
 * loop that vectorizes (roundps, compare and blend).
 */
CVC_TARGET_CLONES
void cvc_quantize_s8(const float *x, size_t n, float qscale,
                     const struct cvc_quant *q, int8_t *out)
{
    float zp = (float)q->zp_out, lo = (float)q->act_min, hi = (float)q->act_max;
    size_t i;

    for (i = 0; i < n; i++) {
        float r = rintf(x[i] / qscale);

        r = r == r ? r + zp : zp;           /* NaN: the zero point */
        r = r < lo ? lo : r > hi ? hi : r;
        out[i] = (int8_t)(int32_t)r;
    }
    if (q->lut) {
        for (i = 0; i < n; i++) {
            out[i] = q->lut[out[i] + 128];
        }
    }
}

/* ------------------------------------------------------------------------
 * int8 GEMM
 *
 * acc[c][q] = sum_k w[c][k] * u[k][q] with u = x + 128 in 0..255 (the
 * activation's bits with the sign bit flipped), as vpdpbusd wants (u8 x s8).
 * Since x - zp = u - (128 + zp),
 *   bias[c] + sum_k (x - zp) w = acc[c][q] + bias[c] - (128 + zp) * sum_k w[c][k],
 * an identity in the integers, so also modulo 2^32: the per-channel term
 * (bias - (128 + zp) * wsum, "corr") computed with wrapping arithmetic
 * makes the sum exactly the spec's wrapping int32 accumulator. Padding
 * reads u = zp + 128 (x - zp = 0). k runs over K = c_in/groups * kh * kw,
 * padded to Kp = 4 * KQ with zero weights (any u then adds 0).
 *
 * Layouts:
 * - weights: rows of Kp, S8_MB rows per block (c_out of a group padded to a
 *   multiple of S8_MB with zero rows); int8 for VNNI and portable, int16
 *   for AVX2 (vpmaddwd multiplies int16);
 * - columns ("col", the im2col tile): chunks of S8_NC output positions;
 *   chunk j holds, for each k quad kk of the slice, S8_NC positions times
 *   4 bytes u[4 kk .. 4 kk + 3][q]: one 256-byte line per quad, which is 4
 *   zmm or 8 ymm registers of positions, each lane a quad.
 * The micro-kernel computes an S8_MB x S8_NC block of acc over a slice of
 * quads, into int32 (or adding to it).
 */
#define S8_MB 4
#define S8_NC 64
#define S8_LINE (4 * S8_NC)     /* bytes per quad in a column chunk */

static inline int32_t load_s32(const void *p)
{
    int32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

static inline int64_t load_s64(const void *p)
{
    int64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* Portable: plain loops, uint32 sums (wrapping, as the vector adds). */
CVC_TARGET_CLONES
static void kern_portable(const int8_t *w, size_t lda, const uint8_t *b,
                          size_t kq, int32_t *c, size_t ldc, bool accumulate)
{
    size_t r, kk, j, t;

    for (r = 0; r < S8_MB; r++) {
        uint32_t s[S8_NC];
        const int8_t *wr = w + r * lda;

        for (j = 0; j < S8_NC; j++) {
            s[j] = accumulate ? (uint32_t)c[r * ldc + j] : 0;
        }
        for (kk = 0; kk < kq; kk++) {
            const uint8_t *bl = b + kk * S8_LINE;

            for (j = 0; j < S8_NC; j++) {
                for (t = 0; t < 4; t++) {
                    s[j] += (uint32_t)((int32_t)bl[4 * j + t] * wr[4 * kk + t]);
                }
            }
        }
        for (j = 0; j < S8_NC; j++) {
            c[r * ldc + j] = (int32_t)s[j];
        }
    }
}

#if CVC_X86
/*
 * AVX2: u8 widened to int16 (vpmovzxbw), weights stored as int16; vpmaddwd
 * sums pairs of int16 products into int32, exactly (|u * w| <= 255 * 128).
 * Per 8 positions, lo holds positions 0-3 and hi 4-7, each position's quad
 * as 4 int16; vpmaddwd of a quad with the channel's 4 weights gives two
 * int32 (k0 k1, k2 k3) per position, added up at the end (vphaddd).
 */
CVC_AVX2
static void kern_avx2(const int16_t *w, size_t lda, const uint8_t *b,
                      size_t kq, int32_t *c, size_t ldc, bool accumulate)
{
    size_t j, kk;
    int r;

    for (j = 0; j < S8_NC; j += 8) {
        __m256i a[S8_MB][2];
        const uint8_t *bl = b + 4 * j;

        for (r = 0; r < S8_MB; r++) {
            a[r][0] = a[r][1] = _mm256_setzero_si256();
        }
        for (kk = 0; kk < kq; kk++, bl += S8_LINE) {
            __m256i lo = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)bl));
            __m256i hi = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(bl + 16)));

            for (r = 0; r < S8_MB; r++) {
                __m256i wq = _mm256_set1_epi64x(load_s64(w + r * lda + 4 * kk));

                a[r][0] = _mm256_add_epi32(a[r][0], _mm256_madd_epi16(lo, wq));
                a[r][1] = _mm256_add_epi32(a[r][1], _mm256_madd_epi16(hi, wq));
            }
        }
        for (r = 0; r < S8_MB; r++) {
            /* hadd: positions 0 1 4 5 | 2 3 6 7; the permute puts them in order */
            __m256i v = _mm256_permute4x64_epi64(_mm256_hadd_epi32(a[r][0], a[r][1]), 0xd8);
            __m256i *dst = (__m256i *)(c + r * ldc + j);

            if (accumulate) {
                v = _mm256_add_epi32(v, _mm256_loadu_si256(dst));
            }
            _mm256_storeu_si256(dst, v);
        }
    }
}

/*
 * AVX-512 VNNI: vpdpbusd adds, per int32 lane, the four products of the
 * lane's u8 quad (a position) with the broadcast s8 quad of a channel's
 * weights, wrapping. 4 channels x 64 positions: 16 accumulators.
 */
CVC_VNNI
static void kern_vnni(const int8_t *w, size_t lda, const uint8_t *b,
                      size_t kq, int32_t *c, size_t ldc, bool accumulate)
{
    __m512i a[S8_MB][4];
    size_t kk;
    int r, v;

    for (r = 0; r < S8_MB; r++) {
        for (v = 0; v < 4; v++) {
            a[r][v] = _mm512_setzero_si512();
        }
    }
    for (kk = 0; kk < kq; kk++, b += S8_LINE) {
        __m512i u[4];

        for (v = 0; v < 4; v++) {
            u[v] = _mm512_loadu_si512((const void *)(b + 64 * v));
        }
        for (r = 0; r < S8_MB; r++) {
            __m512i wq = _mm512_set1_epi32(load_s32(w + r * lda + 4 * kk));

            for (v = 0; v < 4; v++) {
                a[r][v] = _mm512_dpbusd_epi32(a[r][v], u[v], wq);
            }
        }
    }
    for (r = 0; r < S8_MB; r++) {
        for (v = 0; v < 4; v++) {
            int32_t *dst = c + r * ldc + 16 * v;
            __m512i x = a[r][v];

            if (accumulate) {
                x = _mm512_add_epi32(x, _mm512_loadu_si512((const void *)dst));
            }
            _mm512_storeu_si512((void *)dst, x);
        }
    }
}
#endif

/* Weights packed for the micro-kernel (see "int8 GEMM"), for all groups. */
struct s8_weights {
    int isa;
    size_t k, kq, kp;       /* K, its quads, Kp = 4 * kq */
    size_t mg;              /* rows per group: c_out / groups, padded */
    void *rows;             /* [groups][mg][kp], int8 or int16 */
    bool borrowed;          /* rows is the caller's w (already in this layout) */
    int32_t *corr;          /* [c_out]: bias - (128 + zp_in) * sum of the row */
};

static size_t s8_elem(int isa)
{
    return isa == CVC_ISA_AVX2 ? sizeof(int16_t) : sizeof(int8_t);
}

static void s8_weights_free(struct s8_weights *pw)
{
    if (!pw->borrowed) {
        free(pw->rows);
    }
    free(pw->corr);
}

static int s8_weights_pack(struct s8_weights *pw, int isa, const int8_t *w,
                           const int32_t *bias, int32_t zp_in, size_t c_out,
                           size_t groups, size_t k)
{
    size_t cout_g = c_out / groups, g, r, i;
    size_t es = s8_elem(isa);

    pw->isa = isa;
    pw->k = k;
    pw->kq = (k + 3) / 4;
    pw->kp = 4 * pw->kq;
    pw->mg = (cout_g + S8_MB - 1) / S8_MB * S8_MB;
    /*
     * int8 rows that need no padding (K a multiple of 4, whole row blocks:
     * most 1x1 layers) are the caller's weights as they are: no copy of
     * megabytes on every call.
     */
    pw->borrowed = es == 1 && pw->kp == k && pw->mg == cout_g;
    pw->rows = pw->borrowed ? (void *)w :
               calloc(mul_sat(mul_sat(groups * pw->mg, pw->kp), es), 1);
    pw->corr = malloc(c_out * sizeof(int32_t));
    if (!pw->rows || !pw->corr) {
        s8_weights_free(pw);
        return CVC_NO_MEMORY;
    }
    for (g = 0; g < groups; g++) {
        for (r = 0; r < cout_g; r++) {
            size_t co = g * cout_g + r, row = g * pw->mg + r;
            const int8_t *src = w + co * k;
            uint32_t sum = 0;

            if (pw->borrowed) {
                /* already in place */
            } else if (es == 1) {
                memcpy((int8_t *)pw->rows + row * pw->kp, src, k);
            } else {
                int16_t *d = (int16_t *)pw->rows + row * pw->kp;

                for (i = 0; i < k; i++) {
                    d[i] = src[i];
                }
            }
            for (i = 0; i < k; i++) {
                sum += (uint32_t)(int32_t)src[i];
            }
            pw->corr[co] = (int32_t)((bias ? (uint32_t)bias[co] : 0u) -
                                     (uint32_t)(128 + zp_in) * sum);
        }
    }
    return CVC_OK;
}

/* The micro-kernel on rows [row, row + S8_MB), quads [kq0, kq0 + kq). */
static void s8_kernel(const struct s8_weights *pw, size_t row, size_t kq0,
                      const uint8_t *b, size_t kq, int32_t *c, size_t ldc,
                      bool accumulate)
{
    size_t at = row * pw->kp + 4 * kq0;

#if CVC_X86
    if (pw->isa == CVC_ISA_AVX512_VNNI) {
        kern_vnni((const int8_t *)pw->rows + at, pw->kp, b, kq, c, ldc, accumulate);
        return;
    }
    if (pw->isa == CVC_ISA_AVX2) {
        kern_avx2((const int16_t *)pw->rows + at, pw->kp, b, kq, c, ldc, accumulate);
        return;
    }
#endif
    kern_portable((const int8_t *)pw->rows + at, pw->kp, b, kq, c, ldc, accumulate);
}

/*
 * The source of the columns: fill(ctx, k, q0, len, dst) writes
 * dst[i] = u[k][q0 + i] (x + 128, or zp + 128 in the padding) for i < len.
 */
typedef void s8_fill_fn(const void *ctx, size_t k, size_t q0, size_t len,
                        uint8_t *dst);

/* One GEMM: rows of one group, over npos positions, and its epilogue. */
struct s8_gemm {
    struct cvc_run *run;
    const struct s8_weights *pw;
    size_t m;               /* real rows (c_out / groups) */
    size_t row0;            /* the group's first packed row */
    s8_fill_fn *fill;
    const void *fill_ctx;
    size_t npos;            /* output positions */
    const struct cvc_quant *q;
    const int32_t *corr;    /* the group's [m] */
    const int32_t *requant; /* the group's [m][2] */
    int8_t *out;            /* position 0 of row 0 */
    size_t out_row, out_pos;/* element strides in out */
    /* the current tile and slice */
    uint8_t *col;
    size_t q0, ncols;       /* positions [q0, q0 + ncols) */
    size_t kq0, kq;         /* quads of the slice */
    int32_t *acc;           /* sliced K: [mg][tile_chunks * S8_NC], else NULL */
    size_t acc_ld;
    bool accumulate, last;
};

/* Quads [begin, end) of the slice into the column tile. */
CVC_TARGET_CLONES
static void s8_fill_quads(void *opaque, size_t begin, size_t end)
{
    const struct s8_gemm *g = opaque;
    size_t chunks = (g->ncols + S8_NC - 1) / S8_NC;
    uint8_t row[4][S8_NC];
    size_t kk, ch, t, i;

    for (kk = begin; kk < end; kk++) {
        for (ch = 0; ch < chunks; ch++) {
            size_t a = ch * S8_NC, len = min_size(S8_NC, g->ncols - a);
            uint32_t *d = (uint32_t *)(g->col + (ch * g->kq + kk) * S8_LINE);

            for (t = 0; t < 4; t++) {
                size_t k = 4 * (g->kq0 + kk) + t;

                if (k < g->pw->k) {
                    g->fill(g->fill_ctx, k, g->q0 + a, len, row[t]);
                    memset(row[t] + len, 0, S8_NC - len);
                } else {
                    memset(row[t], 0, S8_NC);
                }
            }
            for (i = 0; i < S8_NC; i++) {
                d[i] = (uint32_t)row[0][i] | (uint32_t)row[1][i] << 8 |
                       (uint32_t)row[2][i] << 16 | (uint32_t)row[3][i] << 24;
            }
        }
    }
}

/*
 * Items [begin, end) of the tile: item = chunk * row_blocks + block, so
 * that a thread's items share column chunks (they stay in its cache).
 */
static void s8_gemm_items(void *opaque, size_t begin, size_t end)
{
    const struct s8_gemm *g = opaque;
    size_t blocks = g->pw->mg / S8_MB;
    size_t step = tile_items(S8_MB * S8_NC * 4 * g->kq);
    int32_t local[S8_MB * S8_NC];
    size_t i, r;

    for (i = begin; i < end; i++) {
        size_t ch = i / blocks, blk = i % blocks;
        size_t len = min_size(S8_NC, g->ncols - ch * S8_NC);
        int32_t *c = local;
        size_t ldc = S8_NC;

        if ((i - begin) % step == 0 && run_stopped(g->run)) {
            return;
        }
        if (g->acc) {
            c = g->acc + blk * S8_MB * g->acc_ld + ch * S8_NC;
            ldc = g->acc_ld;
        }
        s8_kernel(g->pw, g->row0 + blk * S8_MB, g->kq0,
                  g->col + ch * g->kq * S8_LINE, g->kq, c, ldc, g->accumulate);
        if (!g->last) {
            continue;
        }
        for (r = 0; r < S8_MB && blk * S8_MB + r < g->m; r++) {
            size_t co = blk * S8_MB + r;

            requant_row(c + r * ldc, len, g->corr[co], g->requant[2 * co],
                        g->requant[2 * co + 1], g->q, g->pw->isa,
                        g->out + co * g->out_row + (g->q0 + ch * S8_NC) * g->out_pos,
                        g->out_pos);
        }
    }
}

/*
 * Tiles of positions, each as large as CVC_COL_BYTES of columns and
 * CVC_COL_BYTES of accumulators allow; when not even one chunk of
 * positions fits with all of K, slices of K accumulate into int32 tiles.
 * col and acc are the caller's buffers of those sizes.
 */
struct s8_tiling {
    size_t tile_cols;       /* positions per tile, a multiple of S8_NC */
    size_t slice_kq;        /* quads per slice */
};

static struct s8_tiling s8_plan(const struct s8_weights *pw, size_t npos)
{
    size_t npos_c = (npos + S8_NC - 1) / S8_NC * S8_NC;
    size_t chunks = CVC_COL_BYTES / (pw->kp * S8_NC);
    struct s8_tiling t;

    if (chunks >= 1) {
        t.tile_cols = min_size(npos_c, chunks * S8_NC);
        t.slice_kq = pw->kq;
    } else {
        t.tile_cols = S8_NC;
        t.slice_kq = CVC_COL_BYTES / S8_LINE;
    }
    return t;
}

static void s8_gemm_run(struct s8_gemm *g, const struct s8_tiling *t)
{
    size_t blocks = g->pw->mg / S8_MB;

    for (g->q0 = 0; g->q0 < g->npos && !run_stopped(g->run); g->q0 += t->tile_cols) {
        g->ncols = min_size(t->tile_cols, g->npos - g->q0);
        for (g->kq0 = 0; g->kq0 < g->pw->kq && !run_stopped(g->run);
             g->kq0 += t->slice_kq) {
            size_t chunks = (g->ncols + S8_NC - 1) / S8_NC;

            g->kq = min_size(t->slice_kq, g->pw->kq - g->kq0);
            g->accumulate = g->kq0 > 0;
            g->last = g->kq0 + g->kq == g->pw->kq;
            cvc_parallel(g->run, s8_fill_quads, g, g->kq, g->ncols * 4);
            cvc_parallel(g->run, s8_gemm_items, g, chunks * blocks,
                         S8_MB * S8_NC * 4 * g->kq);
        }
    }
}

/* Buffers for s8_gemm_run: the column tile and, for sliced K, the accumulators. */
static int s8_buffers(struct s8_gemm *g, const struct s8_tiling *t)
{
    g->col = malloc(t->slice_kq * 4 * t->tile_cols);
    g->acc = NULL;
    g->acc_ld = t->tile_cols;
    if (g->col && t->slice_kq < g->pw->kq) {
        g->acc = malloc(mul_sat(g->pw->mg * sizeof(int32_t), t->tile_cols));
    }
    if (!g->col || (t->slice_kq < g->pw->kq && !g->acc)) {
        free(g->col);
        free(g->acc);
        return CVC_NO_MEMORY;
    }
    return CVC_OK;
}

/* Columns of an int8 convolution: one image and group. */
struct s8_conv_src {
    const struct cvc_conv *p;
    const int8_t *x;        /* the group's first input channel */
    uint8_t pad;            /* zp_in + 128 */
};

/* u[k][q0 .. q0 + len) of im2col row k = (c * kh + ki) * kw + kj. */
static void s8_conv_fill(const void *ctx, size_t k, size_t q0, size_t len,
                         uint8_t *dst)
{
    const struct s8_conv_src *s = ctx;
    const struct cvc_conv *p = s->p;
    size_t taps = (size_t)p->kh * p->kw;
    size_t c = k / taps, ki = k % taps / p->kw, kj = k % p->kw;
    size_t plane = (size_t)p->h_in * p->w_in;
    ptrdiff_t off = (ptrdiff_t)(kj * p->dil_w) - (ptrdiff_t)p->pad_left;
    const int8_t *xc = s->x + c * plane;
    size_t lo, hi, q, i;

    if (taps == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
        p->pad_left == 0 && p->h_out == p->h_in && p->w_out == p->w_in) {
        for (i = 0; i < len; i++) {
            dst[i] = (uint8_t)(xc[q0 + i] ^ 0x80);
        }
        return;
    }
    tap_range(off, p->stride_w, p->w_in, p->w_out, &lo, &hi);
    for (q = q0; q < q0 + len;) {
        size_t oh = q / p->w_out, a = q % p->w_out;
        size_t b = min_size(p->w_out, a + (q0 + len - q));
        ptrdiff_t ih = tap_row(oh, ki, p->stride_h, p->dil_h, p->pad_top, p->h_in);
        size_t l = lo < a ? a : lo > b ? b : lo;
        size_t h = hi < l ? l : hi > b ? b : hi;
        uint8_t *d = dst + (q - q0) - a;    /* d[ow] for ow in [a, b) */

        if (ih < 0 || l >= h) {
            memset(d + a, s->pad, b - a);
        } else {
            const int8_t *src = xc + (size_t)ih * p->w_in + off;
            size_t ow;

            memset(d + a, s->pad, l - a);
            for (ow = l; ow < h; ow++) {
                d[ow] = (uint8_t)(src[(ptrdiff_t)(ow * p->stride_w)] ^ 0x80);
            }
            memset(d + h, s->pad, b - h);
        }
        q += b - a;
    }
}

static int conv_s8_gemm(struct cvc_run *run, const struct cvc_conv *p,
                        const struct cvc_quant *q, const int8_t *in,
                        const int8_t *w, const int32_t *bias, int8_t *out)
{
    size_t cin_g = p->c_in / p->groups, cout_g = p->c_out / p->groups;
    size_t k = cin_g * p->kh * p->kw;
    size_t plane_in = (size_t)p->h_in * p->w_in;
    size_t plane_out = (size_t)p->h_out * p->w_out;
    struct s8_weights pw;
    struct s8_tiling t;
    struct s8_gemm g = {
        .run = run, .pw = &pw, .m = cout_g, .fill = s8_conv_fill,
        .npos = plane_out, .q = q, .out_row = plane_out, .out_pos = 1,
    };
    size_t n, gr;
    int rc;

    rc = s8_weights_pack(&pw, cvc_isa(), w, bias, q->zp_in, p->c_out, p->groups, k);
    if (rc) {
        return rc;
    }
    t = s8_plan(&pw, plane_out);
    rc = s8_buffers(&g, &t);
    for (n = 0; !rc && n < p->n && !run_stopped(run); n++) {
        for (gr = 0; gr < p->groups && !run_stopped(run); gr++) {
            struct s8_conv_src src = {
                .p = p, .x = in + (n * p->c_in + gr * cin_g) * plane_in,
                .pad = (uint8_t)(q->zp_in + 128),
            };

            g.fill_ctx = &src;
            g.row0 = gr * pw.mg;
            g.corr = pw.corr + gr * cout_g;
            g.requant = q->requant + 2 * gr * cout_g;
            g.out = out + (n * p->c_out + gr * cout_g) * plane_out;
            s8_gemm_run(&g, &t);
        }
    }
    if (!rc) {
        free(g.col);
        free(g.acc);
    }
    s8_weights_free(&pw);
    return rc ? rc : run_status(run);
}

/* Columns of an int8 FC: position i is image i. */
struct s8_fc_src {
    const int8_t *in;
    size_t c_in;
};

static void s8_fc_fill(const void *ctx, size_t k, size_t q0, size_t len,
                       uint8_t *dst)
{
    const struct s8_fc_src *s = ctx;
    size_t i;

    for (i = 0; i < len; i++) {
        dst[i] = (uint8_t)(s->in[(q0 + i) * s->c_in + k] ^ 0x80);
    }
}

#if CVC_X86
/*
 * The int8 FC of one image with AVX-512 VNNI, straight from the weights as
 * they lie (no packing: for one image, packing a classifier's weights cost
 * more than using them). Per output row: sum(u * w) with u = x + 128 and
 * sum(w) (vpdpbusd against ones), both wrapping, as the packed path's
 * identity: acc = bias + sum(u * w) - (128 + zp_in) * sum(w) modulo 2^32.
 */
struct fc_gemv_job {
    struct cvc_run *run;
    const struct cvc_fc *p;
    const struct cvc_quant *q;
    const uint8_t *u;       /* x + 128, c_in bytes */
    const int8_t *w;
    const int32_t *bias;
    int8_t *out;
};

/* The 16 int32 lanes' sum, wrapping like them (modulo 2^32). */
CVC_VNNI
static int32_t lanes_sum(__m512i v)
{
    uint32_t lane[16], sum = 0;
    int i;

    _mm512_storeu_si512((void *)lane, v);
    for (i = 0; i < 16; i++) {
        sum += lane[i];
    }
    return (int32_t)sum;
}

CVC_VNNI
static void fc_gemv_rows(void *opaque, size_t begin, size_t end)
{
    const struct fc_gemv_job *j = opaque;
    size_t k = j->p->c_in, kv = k / 64, co, i;
    __mmask64 tail = (k % 64) ? (~(__mmask64)0 >> (64 - k % 64)) : 0;
    const __m512i ones = _mm512_set1_epi8(1);
    int32_t off = -(128 + j->q->zp_in);

    for (co = begin; co < end && !run_stopped(j->run); co++) {
        const int8_t *wr = j->w + co * k;
        __m512i uw = _mm512_setzero_si512(), sw = _mm512_setzero_si512();
        int32_t acc;

        for (i = 0; i < kv; i++) {
            __m512i wq = _mm512_loadu_si512((const void *)(wr + 64 * i));

            uw = _mm512_dpbusd_epi32(uw, _mm512_loadu_si512((const void *)(j->u + 64 * i)),
                                     wq);
            sw = _mm512_dpbusd_epi32(sw, ones, wq);
        }
        if (tail) {
            __m512i wq = _mm512_maskz_loadu_epi8(tail, wr + 64 * kv);

            uw = _mm512_dpbusd_epi32(uw, _mm512_maskz_loadu_epi8(tail, j->u + 64 * kv),
                                     wq);
            sw = _mm512_dpbusd_epi32(sw, ones, wq);
        }
        acc = add_wrap(lanes_sum(uw), (int32_t)((uint32_t)lanes_sum(sw) * (uint32_t)off));
        acc = add_wrap(acc, j->bias ? j->bias[co] : 0);
        j->out[co] = requant_one(acc, j->q->requant[2 * co],
                                 j->q->requant[2 * co + 1], j->q);
        if (j->q->lut) {
            j->out[co] = j->q->lut[j->out[co] + 128];
        }
    }
}

static int fc_gemv_vnni(struct cvc_run *run, const struct cvc_fc *p,
                        const struct cvc_quant *q, const int8_t *in,
                        const int8_t *w, const int32_t *bias, int8_t *out)
{
    uint8_t *u = malloc(p->c_in);
    struct fc_gemv_job j = {
        .run = run, .p = p, .q = q, .u = u, .w = w, .bias = bias, .out = out,
    };
    size_t i;

    if (!u) {
        return CVC_NO_MEMORY;
    }
    for (i = 0; i < p->c_in; i++) {
        u[i] = (uint8_t)(in[i] + 128);
    }
    cvc_parallel(run, fc_gemv_rows, &j, p->c_out, p->c_in);
    free(u);
    return run_status(run);
}
#endif

int cvc_fc_s8(const struct cvc_fc *p, const struct cvc_quant *q,
              const int8_t *in, const int8_t *w, const int32_t *bias,
              int8_t *out)
{
    struct cvc_run run;
    struct s8_weights pw;
    struct s8_tiling t;
    struct s8_fc_src src = { .in = in, .c_in = p->c_in };
    struct s8_gemm g = {
        .run = &run, .pw = &pw, .m = p->c_out, .fill = s8_fc_fill,
        .fill_ctx = &src, .npos = p->n, .q = q, .out_row = 1,
        .out_pos = p->c_out,
    };
    int rc;

    run_init(&run, p->ctl);
#if CVC_X86
    if (p->n == 1 && cvc_isa() == CVC_ISA_AVX512_VNNI) {
        return fc_gemv_vnni(&run, p, q, in, w, bias, out);
    }
#endif
    rc = s8_weights_pack(&pw, cvc_isa(), w, bias, q->zp_in, p->c_out, 1, p->c_in);
    if (rc) {
        return rc;
    }
    t = s8_plan(&pw, p->n);
    rc = s8_buffers(&g, &t);
    if (!rc) {
        g.corr = pw.corr;
        g.requant = q->requant;
        g.out = out;
        s8_gemm_run(&g, &t);
        free(g.col);
        free(g.acc);
    }
    s8_weights_free(&pw);
    return rc ? rc : run_status(&run);
}

/* ------------------------------------------------------------------------
 * int8 depthwise convolution (one input channel per group)
 *
 * The float path's phase planes (see "Depthwise"), holding x - zp_in as
 * int32 (padding: 0, which is what a padded tap adds), and the same 1-D
 * filter in uint32 vectors: products and sums wrap modulo 2^32 like the
 * spec's int32 accumulator (|x - zp| <= 255, so each product is exact),
 * whatever the order. The bias goes in with the requantization.
 *
 * Faster and as exact: the float filter itself. Each product is an integer
 * of at most 255 * 128 = 32640 in magnitude, so with at most
 * DW8_FLOAT_TAPS taps every partial sum, in any order, is an integer below
 * 2^24: float32 represents it exactly and no addition (or fma) rounds. The
 * sum then converts to int32 exactly. Kernels up to 22x22 qualify (the
 * device allows 16x16); larger ones take the uint32 filter.
 */
#define DW8_FLOAT_TAPS ((1u << 24) / (255u * 128u))
typedef uint32_t cvc_uvec __attribute__((vector_size(64), aligned(4)));

struct dw8_job {
    struct dw_job geo;      /* geometry only: rows, cols, lengths, toff */
    const struct cvc_quant *q;
    const int8_t *in, *w;
    const int32_t *bias;
    int8_t *out;
    int isa;
    bool exact_float;       /* taps <= DW8_FLOAT_TAPS: the float filter */
};

/* Store x - zp at scratch[i], as float or as (wrapping) uint32. */
static inline void dw8_put(void *scratch, size_t i, int32_t v, bool as_float)
{
    if (as_float) {
        ((float *)scratch)[i] = (float)v;
    } else {
        ((uint32_t *)scratch)[i] = (uint32_t)v;
    }
}

/* f[i] = x[i] - zp, i < n. */
CVC_TARGET_CLONES
static void dw8_to_float(const int8_t *restrict x, size_t n, int32_t zp,
                         float *restrict f)
{
    size_t i;

    for (i = 0; i < n; i++) {
        f[i] = (float)(x[i] - zp);
    }
}

/*
 * The scratch image of int8 input plane x: x - zp, 0 in the padding. The
 * float filter at stride 1 or 2 converts the whole plane into tmp (h_in *
 * w_in floats) first and scatters its rows as the float path does: one
 * long loop that vectorizes instead of a short one per row.
 */
CVC_TARGET_CLONES
static void dw8_fill_scratch(const struct dw8_job *j, const int8_t *x,
                             void *scratch, float *tmp)
{
    const struct cvc_conv *p = j->geo.p;
    size_t sh = p->stride_h, sw = p->stride_w, pl = p->pad_left;
    size_t len = j->geo.phase_len, cols = j->geo.cols;
    size_t n = sw * cols > pl ? min_size(p->w_in, sw * cols - pl) : 0;
    int32_t zp = j->q->zp_in;
    bool fl = j->exact_float;
    bool whole = fl && sw <= 2;     /* the plane converted at once */
    size_t ih, iw, ph;

    memset(scratch, 0, j->geo.stride_len * sizeof(uint32_t));  /* 0.0f or 0 */
    if (whole) {
        dw8_to_float(x, (size_t)p->h_in * p->w_in, zp, tmp);
    }
    for (ih = 0; ih < p->h_in; ih++) {
        size_t r = ih + p->pad_top;  /* padded row */
        const int8_t *xr = x + ih * p->w_in;
        size_t row0;

        if (r / sh >= j->geo.rows) {
            continue;
        }
        row0 = r % sh * sw * len + r / sh * cols;
        if (whole) {
            dw_scatter_row(&j->geo, (const float *)tmp + ih * p->w_in,
                           (float *)scratch + row0);
            continue;
        }
        /*
         * Column iw goes to entry (iw + pl) / sw of column phase
         * (iw + pl) % sw: phase by phase, every sw-th column, no division
         * per element (that made stride-2 layers 5x slower than stride 1).
         */
        for (ph = 0; ph < sw; ph++) {
            size_t first = (ph + sw - pl % sw) % sw;
            size_t base = row0 + ph * len + (first + pl) / sw, k;
            float *df = (float *)scratch + base;
            uint32_t *du = (uint32_t *)scratch + base;

            if (sw == 1) {                  /* uint32 (float: whole above) */
                for (iw = 0; iw < n; iw++) {
                    du[iw] = (uint32_t)(xr[iw] - zp);
                }
            } else if (fl) {
                for (iw = first, k = 0; iw < n; iw += sw, k++) {
                    df[k] = (float)(xr[iw] - zp);
                }
            } else {
                for (iw = first, k = 0; iw < n; iw += sw, k++) {
                    du[k] = (uint32_t)(xr[iw] - zp);
                }
            }
        }
    }
}

/* acc[i] = the integer in f[i] (exact, see above). */
CVC_TARGET_CLONES
static void dw8_float_to_int(const float *f, size_t n, int32_t *acc)
{
    size_t i;

    for (i = 0; i < n; i++) {
        acc[i] = (int32_t)f[i];
    }
}

/* dst[q] = sum_t tw[t] * src[toff[t] + q] for q < len (whole vectors), mod 2^32. */
CVC_TARGET_CLONES
static void dw8_filter(uint32_t *dst, size_t len, const uint32_t *src,
                       const size_t *toff, const uint32_t *tw, size_t ntaps)
{
    cvc_uvec *out = (cvc_uvec *)dst;
    size_t q = 0, t;

    for (; q + 2 * VEC_LEN <= len; q += 2 * VEC_LEN, out += 2) {
        cvc_uvec a0 = { 0 }, a1 = { 0 };

        for (t = 0; t < ntaps; t++) {
            const cvc_uvec *s = (const cvc_uvec *)(src + toff[t] + q);

            a0 += tw[t] * s[0];
            a1 += tw[t] * s[1];
        }
        out[0] = a0;
        out[1] = a1;
    }
    for (; q < len; q += VEC_LEN, out++) {
        cvc_uvec a0 = { 0 };

        for (t = 0; t < ntaps; t++) {
            a0 += tw[t] * *(const cvc_uvec *)(src + toff[t] + q);
        }
        *out = a0;
    }
}

/* Planes [begin, end) of the output, plane = n * c_out + co. */
static void dw8_planes(void *opaque, size_t begin, size_t end)
{
    struct dw8_job *j = opaque;
    const struct cvc_conv *p = j->geo.p;
    size_t mult = p->c_out / p->c_in;
    size_t taps = (size_t)p->kh * p->kw;
    size_t plane_in = (size_t)p->h_in * p->w_in;
    size_t plane_out = (size_t)p->h_out * p->w_out;
    size_t step = (tile_items(taps) + 2 * VEC_LEN - 1) / (2 * VEC_LEN) * (2 * VEC_LEN);
    uint32_t *scratch, *flat, *tw;
    int32_t *acc;           /* the plane's accumulators, [h_out][w_out] */
    size_t pl, oh, q, t;

    scratch = malloc((j->geo.stride_len + j->geo.flat_len + taps + plane_out + plane_in) *
                     sizeof(uint32_t));
    if (!scratch) {
        atomic_store(&j->geo.failed, 1);
        return;
    }
    flat = scratch + j->geo.stride_len;
    tw = flat + j->geo.flat_len;
    acc = (int32_t *)(tw + taps);

    for (pl = begin; pl < end && !run_stopped(j->geo.run); pl++) {
        size_t n = pl / p->c_out, co = pl % p->c_out;
        int8_t *y = j->out + pl * plane_out;

        if (pl == begin || co % mult == 0) {
            dw8_fill_scratch(j, j->in + (n * p->c_in + co / mult) * plane_in, scratch,
                             (float *)(acc + plane_out));
        }
        for (t = 0; t < taps; t++) {
            dw8_put(tw, t, j->w[co * taps + t], j->exact_float);
        }
        for (q = 0; q < j->geo.flat_len; q += step) {
            size_t len = min_size(step, j->geo.flat_len - q);

            if (q && run_stopped(j->geo.run)) {
                break;
            }
            if (j->exact_float) {
                dw_filter((float *)flat + q, len, (const float *)scratch + q,
                          j->geo.toff, (const float *)tw, taps, 0.0f);
            } else {
                dw8_filter(flat + q, len, scratch + q, j->geo.toff, tw, taps);
            }
        }
        /* The rows side by side, then one requantization of the whole plane. */
        for (oh = 0; oh < p->h_out; oh++) {
            if (j->exact_float) {
                dw8_float_to_int((const float *)flat + oh * j->geo.cols, p->w_out,
                                 acc + oh * p->w_out);
            } else {
                memcpy(acc + oh * p->w_out, flat + oh * j->geo.cols,
                       p->w_out * sizeof(*acc));
            }
        }
        requant_row(acc, plane_out, j->bias ? j->bias[co] : 0, j->q->requant[2 * co],
                    j->q->requant[2 * co + 1], j->q, j->isa, y, 1);
    }
    free(scratch);
}

static int conv_s8_depthwise(struct cvc_run *run, const struct cvc_conv *p,
                             const struct cvc_quant *q, const int8_t *in,
                             const int8_t *w, const int32_t *bias, int8_t *out)
{
    struct dw8_job job = {
        .geo = { .run = run, .p = p },
        .q = q, .in = in, .w = w, .bias = bias, .out = out, .isa = cvc_isa(),
        .exact_float = (size_t)p->kh * p->kw <= DW8_FLOAT_TAPS,
    };
    int rc = dw_plan(p, &job.geo);

    if (rc == 1) {
        return conv_s8_gemm(run, p, q, in, w, bias, out);
    }
    if (rc) {
        return rc;
    }
    cvc_parallel(run, dw8_planes, &job, (size_t)p->n * p->c_out,
                 (size_t)p->h_out * p->w_out * p->kh * p->kw);
    free(job.geo.toff);
    return atomic_load(&job.geo.failed) ? CVC_NO_MEMORY : run_status(run);
}

int cvc_conv2d_s8(const struct cvc_conv *p, const struct cvc_quant *q,
                  const int8_t *in, const int8_t *w, const int32_t *bias,
                  int8_t *out)
{
    struct cvc_run run;

    if (p->n == 1 && p->groups == 1 && p->kh == 1 && p->kw == 1 && p->h_in == 1 &&
        p->w_in == 1 && p->h_out == 1 && p->w_out == 1 && !p->pad_top && !p->pad_left) {
        /* a classifier written as a 1x1 convolution of a 1x1 plane: an FC */
        struct cvc_fc fp = { .n = 1, .c_in = p->c_in, .c_out = p->c_out, .ctl = p->ctl };

        return cvc_fc_s8(&fp, q, in, w, bias, out);
    }
    run_init(&run, p->ctl);
    if (p->c_in == p->groups) {
        return conv_s8_depthwise(&run, p, q, in, w, bias, out);
    }
    return conv_s8_gemm(&run, p, q, in, w, bias, out);
}
