/*
 * convaccel: the job engine, run on the device's worker thread.
 *
 * A job is checked whole before any layer runs: every descriptor field and
 * every address range, so a bad job touches no memory. Then each layer's
 * tensors are read from guest RAM, computed on the host by the compute
 * library, and the output written back. No lock is held across guest-memory
 * access: writes go in chunks, each only while the job's generation is
 * current, and a reset waits for a chunk in flight (see cva_dma_write), so it
 * stops a job's writes at once.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/rcu.h"
#include "exec/memory.h"
#include "trace.h"
#include "convaccel-job.h"

typedef struct Layer {
    uint32_t op, flags;
    uint32_t n, c_in, h_in, w_in, c_out, h_out, w_out, groups;
    uint32_t kh, kw, stride_h, stride_w, dil_h, dil_w;
    uint32_t pad_top, pad_bottom, pad_left, pad_right;
    uint64_t input, weight, bias, output;
    bool rsvd_nonzero;
    /* derived by convaccel_check_layer() */
    uint64_t in_bytes, w_bytes, b_bytes, out_bytes;
} Layer;

/* A bounce buffer above this is freed at the end of the job. */
#define KEEP_BOUNCE_BYTES (16 << 20)

/* Polled by the compute library between tiles, from its threads. */
static int cva_compute_cancelled(void *opaque)
{
    ComputeCtl *cc = opaque;

    return qatomic_read(&cc->s->generation) != cc->gen ||
           qatomic_read(&cc->s->stopping) || !qatomic_read(&cc->s->vm_running);
}

/* Why the worker should stop now: JOB_ABANDONED, JOB_PAUSED, or JOB_REPORT
 * (carry on). Lock held. */
static JobEnd cva_stop_reason(ConvAccelState *s, uint32_t gen)
{
    if (gen != s->generation || s->stopping) {
        return JOB_ABANDONED;
    }
    return s->vm_running ? JOB_REPORT : JOB_PAUSED;
}


/* Per-layer statistics: what a layer added to the job's counters. */
static void write_layer_stats(ConvAccelState *s, uint32_t gen, uint64_t addr,
                              const JobCounters *before, const JobCounters *after)
{
    uint8_t r[CONVACCEL_STATS_SIZE];

    stq_le_p(r + CONVACCEL_STATS_HOST_NS_OFF, after->host_ns - before->host_ns);
    stq_le_p(r + CONVACCEL_STATS_CYCLES_OFF, after->cycles - before->cycles);
    stq_le_p(r + CONVACCEL_STATS_MACS_OFF, after->macs - before->macs);
    stq_le_p(r + CONVACCEL_STATS_BYTES_OFF,
             after->bytes_read + after->bytes_written -
             before->bytes_read - before->bytes_written);
    cva_dma_write(s, gen, addr, r, sizeof(r));
}

static const char *const convaccel_err_names[CONVACCEL_ERR_COUNT] = {
    [CONVACCEL_ERR_OK] = "ok",
    [CONVACCEL_ERR_MAGIC] = "bad job magic",
    [CONVACCEL_ERR_LAYER_COUNT] = "bad layer count",
    [CONVACCEL_ERR_RESERVED] = "reserved field not zero",
    [CONVACCEL_ERR_OP] = "unknown operation",
    [CONVACCEL_ERR_SHAPE] = "bad shape",
    [CONVACCEL_ERR_KERNEL] = "bad kernel, stride or dilation",
    [CONVACCEL_ERR_PAD] = "bad padding",
    [CONVACCEL_ERR_GROUPS] = "bad groups",
    [CONVACCEL_ERR_TOO_LARGE] = "tensor too large",
    [CONVACCEL_ERR_DMA] = "DMA error",
    [CONVACCEL_ERR_INJECTED] = "injected error",
    [CONVACCEL_ERR_NO_MEMORY] = "out of device memory",
};

const char *cva_err_name(uint32_t code)
{
    return code < CONVACCEL_ERR_COUNT ? convaccel_err_names[code] : "?";
}

void cva_compute_ctl_init(ComputeCtl *cc, ConvAccelState *s, uint32_t gen)
{
    *cc = (ComputeCtl) {
        .ctl = { .threads = s->compute_threads,
                 .cancelled = cva_compute_cancelled, .opaque = cc },
        .s = s, .gen = gen,
    };
}

uint32_t cva_cancel_status(ConvAccelState *s, uint32_t gen)
{
    uint32_t err;

    qemu_mutex_lock(&s->lock);
    err = cva_stop_reason(s, gen) == JOB_ABANDONED ? ERR_ABANDONED : ERR_PAUSED;
    qemu_mutex_unlock(&s->lock);
    return err;
}

/* Is [addr, addr + len) entirely guest RAM (writable RAM if is_write)? */
bool cva_dma_range_ok(ConvAccelState *s, uint64_t addr, uint64_t len,
                         bool is_write)
{
    if (len == 0 || addr + len < addr) {
        return false;
    }
    RCU_READ_LOCK_GUARD();
    while (len) {
        hwaddr xlat, plen = len;
        MemoryRegion *mr = address_space_translate(s->as, addr, &xlat, &plen,
                                                   is_write,
                                                   MEMTXATTRS_UNSPECIFIED);

        /* direct RAM only: the worker never needs the BQL to access it */
        if (!memory_region_is_ram(mr) || memory_region_is_ram_device(mr) ||
            memory_region_is_romd(mr) || (is_write && mr->readonly) ||
            plen == 0) {
            return false;
        }
        addr += plen;
        len -= plen;
    }
    return true;
}

bool cva_dma_read(ConvAccelState *s, uint64_t addr, void *buf, uint64_t len)
{
    return cva_dma_range_ok(s, addr, len, false) &&
           address_space_read(s->as, addr, MEMTXATTRS_UNSPECIFIED, buf,
                              len) == MEMTX_OK;
}

/* Guest-memory writes go in chunks of this, checking for a reset between. */
#define DMA_CHUNK (1 << 20)

/*
 * Write to guest RAM unless a reset has happened since generation gen. The
 * lock is not held across the write (vCPUs reading STATUS would wait behind
 * it); a reset waits for the chunk in flight (dma_writers), so nothing is
 * written after it returns.
 */
bool cva_dma_begin(ConvAccelState *s, uint32_t gen)
{
    qemu_mutex_lock(&s->lock);
    if (gen != s->generation) {
        qemu_mutex_unlock(&s->lock);
        return false;
    }
    s->dma_writers++;
    qemu_mutex_unlock(&s->lock);
    return true;
}

void cva_dma_end(ConvAccelState *s)
{
    qemu_mutex_lock(&s->lock);
    if (--s->dma_writers == 0) {
        qemu_cond_broadcast(&s->cond);
    }
    qemu_mutex_unlock(&s->lock);
}

bool cva_dma_write(ConvAccelState *s, uint32_t gen, uint64_t addr,
                      const void *buf, uint64_t len)
{
    const uint8_t *p = buf;

    if (!cva_dma_range_ok(s, addr, len, true)) {
        return false;
    }
    while (len) {
        uint64_t n = MIN(len, DMA_CHUNK);
        bool ok;

        qemu_mutex_lock(&s->lock);
        if (gen != s->generation) {
            qemu_mutex_unlock(&s->lock);
            return false;
        }
        s->dma_writers++;
        qemu_mutex_unlock(&s->lock);

        ok = address_space_write(s->as, addr, MEMTXATTRS_UNSPECIFIED, p, n) ==
             MEMTX_OK;

        qemu_mutex_lock(&s->lock);
        if (--s->dma_writers == 0) {
            qemu_cond_broadcast(&s->cond);
        }
        qemu_mutex_unlock(&s->lock);
        if (!ok) {
            return false;
        }
        addr += n;
        p += n;
        len -= n;
    }
    return true;
}

static void parse_layer(const uint8_t *d, Layer *l)
{
    memset(l, 0, sizeof(*l));
    l->op = ldl_le_p(d + CONVACCEL_LAYER_OP_OFF);
    l->flags = ldl_le_p(d + CONVACCEL_LAYER_FLAGS_OFF);
    l->n = ldl_le_p(d + CONVACCEL_LAYER_N_OFF);
    l->c_in = ldl_le_p(d + CONVACCEL_LAYER_C_IN_OFF);
    l->h_in = ldl_le_p(d + CONVACCEL_LAYER_H_IN_OFF);
    l->w_in = ldl_le_p(d + CONVACCEL_LAYER_W_IN_OFF);
    l->c_out = ldl_le_p(d + CONVACCEL_LAYER_C_OUT_OFF);
    l->h_out = ldl_le_p(d + CONVACCEL_LAYER_H_OUT_OFF);
    l->w_out = ldl_le_p(d + CONVACCEL_LAYER_W_OUT_OFF);
    l->groups = ldl_le_p(d + CONVACCEL_LAYER_GROUPS_OFF);
    l->kh = ldl_le_p(d + CONVACCEL_LAYER_KH_OFF);
    l->kw = ldl_le_p(d + CONVACCEL_LAYER_KW_OFF);
    l->stride_h = ldl_le_p(d + CONVACCEL_LAYER_STRIDE_H_OFF);
    l->stride_w = ldl_le_p(d + CONVACCEL_LAYER_STRIDE_W_OFF);
    l->dil_h = ldl_le_p(d + CONVACCEL_LAYER_DIL_H_OFF);
    l->dil_w = ldl_le_p(d + CONVACCEL_LAYER_DIL_W_OFF);
    l->pad_top = ldl_le_p(d + CONVACCEL_LAYER_PAD_TOP_OFF);
    l->pad_bottom = ldl_le_p(d + CONVACCEL_LAYER_PAD_BOTTOM_OFF);
    l->pad_left = ldl_le_p(d + CONVACCEL_LAYER_PAD_LEFT_OFF);
    l->pad_right = ldl_le_p(d + CONVACCEL_LAYER_PAD_RIGHT_OFF);
    l->input = ldq_le_p(d + CONVACCEL_LAYER_INPUT_OFF);
    l->weight = ldq_le_p(d + CONVACCEL_LAYER_WEIGHT_OFF);
    l->bias = ldq_le_p(d + CONVACCEL_LAYER_BIAS_OFF);
    l->output = ldq_le_p(d + CONVACCEL_LAYER_OUTPUT_OFF);
    l->rsvd_nonzero = ldq_le_p(d + CONVACCEL_LAYER_RSVD_OFF) ||
                      ldq_le_p(d + CONVACCEL_LAYER_RSVD_OFF + 8);
}

/* Output size along one axis, or 0 if the kernel does not fit. */
uint64_t cva_out_size(uint32_t in, uint32_t pad_a, uint32_t pad_b,
                         uint32_t k, uint32_t stride, uint32_t dil)
{
    uint64_t padded = (uint64_t)in + pad_a + pad_b;
    uint64_t span = (uint64_t)dil * (k - 1) + 1;

    return padded < span ? 0 : (padded - span) / stride + 1;
}

#define FAIL(code, ...) CVA_FAIL(index, code, __VA_ARGS__)

bool cva_in_range(uint32_t v, uint32_t lo, uint32_t hi)
{
    return v >= lo && v <= hi;
}

/*
 * Is [addr, addr + len) (guest RAM) one contiguous host range? Then the job
 * reads it in place (cva_dma_view), else from a copy.
 */
uint32_t cva_check_sizes(const CvaGeom *g, uint32_t index)
{
    if (!cva_in_range(g->n, 1, CONVACCEL_MAX_DIM_VALUE) ||
        !cva_in_range(g->h_in, 1, CONVACCEL_MAX_DIM_VALUE) ||
        !cva_in_range(g->w_in, 1, CONVACCEL_MAX_DIM_VALUE) ||
        !cva_in_range(g->h_out, 1, CONVACCEL_MAX_DIM_VALUE) ||
        !cva_in_range(g->w_out, 1, CONVACCEL_MAX_DIM_VALUE) ||
        !cva_in_range(g->c_in, 1, CONVACCEL_MAX_CHANNELS_VALUE) ||
        !cva_in_range(g->c_out, 1, CONVACCEL_MAX_CHANNELS_VALUE)) {
        FAIL(CONVACCEL_ERR_SHAPE, "a size is 0 or above its limit");
    }
    return 0;
}

uint32_t cva_check_window(const CvaGeom *g, uint32_t pad_bottom, uint32_t pad_right,
                          bool conv, uint32_t index)
{
    const uint32_t maxk = CONVACCEL_MAX_KERNEL_VALUE;

    if (!cva_in_range(g->kh, 1, maxk) || !cva_in_range(g->kw, 1, maxk) ||
        !cva_in_range(g->stride_h, 1, maxk) || !cva_in_range(g->stride_w, 1, maxk) ||
        !cva_in_range(g->dil_h, 1, maxk) || !cva_in_range(g->dil_w, 1, maxk)) {
        FAIL(CONVACCEL_ERR_KERNEL, "kernel %ux%u stride %ux%u dilation %ux%u",
             g->kh, g->kw, g->stride_h, g->stride_w, g->dil_h, g->dil_w);
    }
    if (!conv && (g->dil_h != 1 || g->dil_w != 1)) {
        FAIL(CONVACCEL_ERR_KERNEL, "pooling has no dilation");
    }
    if (MAX(MAX(g->pad_top, pad_bottom), MAX(g->pad_left, pad_right)) >
        CONVACCEL_MAX_PAD_VALUE) {
        FAIL(CONVACCEL_ERR_PAD, "padding above %d", CONVACCEL_MAX_PAD_VALUE);
    }
    if (!conv && (g->pad_top >= g->kh || pad_bottom >= g->kh ||
                  g->pad_left >= g->kw || pad_right >= g->kw)) {
        FAIL(CONVACCEL_ERR_PAD, "pooling padding must be below the kernel size");
    }
    if (conv) {
        if (g->groups == 0 || g->c_in % g->groups || g->c_out % g->groups) {
            FAIL(CONVACCEL_ERR_GROUPS, "groups %u for %u -> %u channels",
                 g->groups, g->c_in, g->c_out);
        }
    } else if (g->groups != 1 || g->c_out != g->c_in) {
        FAIL(CONVACCEL_ERR_SHAPE, "pooling needs groups 1 and c_out == c_in");
    }
    if (cva_out_size(g->h_in, g->pad_top, pad_bottom, g->kh, g->stride_h,
                     g->dil_h) != g->h_out ||
        cva_out_size(g->w_in, g->pad_left, pad_right, g->kw, g->stride_w,
                     g->dil_w) != g->w_out) {
        FAIL(CONVACCEL_ERR_SHAPE, "output %ux%u does not follow from the input "
             "%ux%u and the kernel", g->h_out, g->w_out, g->h_in, g->w_in);
    }
    return 0;
}

bool cva_dma_contiguous(ConvAccelState *s, uint64_t addr, uint64_t len)
{
    hwaddr xlat, plen = len;

    RCU_READ_LOCK_GUARD();
    address_space_translate(s->as, addr, &xlat, &plen, false,
                            MEMTXATTRS_UNSPECIFIED);
    return plen == len;
}

/* Host memory a checked layer needs beyond guest RAM and compute scratch. */
static uint64_t layer_host_bytes(ConvAccelState *s, const Layer *l)
{
    uint64_t bytes = l->out_bytes;

    bytes += cva_dma_contiguous(s, l->input, l->in_bytes) ? 0 : l->in_bytes;
    if (l->w_bytes && !cva_dma_contiguous(s, l->weight, l->w_bytes)) {
        bytes += l->w_bytes;
    }
    if (l->b_bytes && !cva_dma_contiguous(s, l->bias, l->b_bytes)) {
        bytes += l->b_bytes;
    }
    return bytes;
}

/* Work of a layer: multiply-accumulates, or pooling window taps. */
static uint64_t layer_work(const Layer *l)
{
    uint64_t positions = (uint64_t)l->n * l->h_out * l->w_out * l->kh * l->kw;

    if (l->op == CONVACCEL_LAYER_OP_CONV) {
        return positions * l->c_out * (l->c_in / l->groups);
    }
    return positions * l->c_in;
}

/*
 * Validate one layer completely; 0 or a CONVACCEL_ERR_* code. *work sums
 * the work of the job's layers so far.
 */
static uint32_t check_layer(ConvAccelState *s, Layer *l, uint32_t index,
                            uint64_t *work)
{
    const uint64_t max_bytes = (uint64_t)CONVACCEL_MAX_TENSOR_MB_VALUE << 20;
    bool conv = l->op == CONVACCEL_LAYER_OP_CONV;
    uint32_t act = (l->flags & CONVACCEL_LAYER_ACT_MASK) >> CONVACCEL_LAYER_ACT_SHIFT;
    const CvaGeom g = {
        .n = l->n, .c_in = l->c_in, .h_in = l->h_in, .w_in = l->w_in,
        .c_out = l->c_out, .h_out = l->h_out, .w_out = l->w_out, .groups = l->groups,
        .kh = l->kh, .kw = l->kw, .stride_h = l->stride_h, .stride_w = l->stride_w,
        .dil_h = l->dil_h, .dil_w = l->dil_w, .pad_top = l->pad_top, .pad_left = l->pad_left,
    };
    uint32_t err;

    if (!conv && l->op != CONVACCEL_LAYER_OP_MAXPOOL && l->op != CONVACCEL_LAYER_OP_AVGPOOL) {
        FAIL(CONVACCEL_ERR_OP, "op %u", l->op);
    }
    if ((l->flags & ~CONVACCEL_LAYER_FLAGS_VALID) || act > CONVACCEL_LAYER_ACT_RELU6 ||
        l->rsvd_nonzero) {
        FAIL(CONVACCEL_ERR_RESERVED, "flags 0x%x or reserved words", l->flags);
    }
    if (!conv && ((l->flags & CONVACCEL_LAYER_FLAG_BIAS) || l->weight || l->bias)) {
        FAIL(CONVACCEL_ERR_RESERVED, "pooling takes no weight or bias");
    }
    if (conv && !(l->flags & CONVACCEL_LAYER_FLAG_BIAS) && l->bias) {
        FAIL(CONVACCEL_ERR_RESERVED, "bias address without the BIAS flag");
    }
    err = cva_check_sizes(&g, index);
    if (!err) {
        err = cva_check_window(&g, l->pad_bottom, l->pad_right, conv, index);
    }
    if (err) {
        return err;
    }

    l->in_bytes = (uint64_t)l->n * l->c_in * l->h_in * l->w_in * 4;
    l->out_bytes = (uint64_t)l->n * l->c_out * l->h_out * l->w_out * 4;
    if (conv) {
        l->w_bytes = (uint64_t)l->c_out * (l->c_in / l->groups) * l->kh * l->kw * 4;
        l->b_bytes = (l->flags & CONVACCEL_LAYER_FLAG_BIAS) ? (uint64_t)l->c_out * 4 : 0;
    }
    if (l->in_bytes > max_bytes || l->out_bytes > max_bytes ||
        l->w_bytes > max_bytes) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "a tensor is above %d MiB",
             CONVACCEL_MAX_TENSOR_MB_VALUE);
    }
    *work += layer_work(l);     /* below 2^64: every factor is bounded */
    if (*work > MAX_JOB_WORK) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "the job's work reaches %" PRIu64
             " MACs here, above MAX_JOB_GMACS (%u x 2^30)", *work,
             CONVACCEL_MAX_JOB_GMACS_VALUE);
    }
    if ((l->input | l->output | l->weight | l->bias) % sizeof(float)) {
        FAIL(CONVACCEL_ERR_DMA, "a tensor address is not 4-byte aligned");
    }
    if (!cva_dma_range_ok(s, l->input, l->in_bytes, false) ||
        !cva_dma_range_ok(s, l->output, l->out_bytes, true) ||
        (l->w_bytes && !cva_dma_range_ok(s, l->weight, l->w_bytes, false)) ||
        (l->b_bytes && !cva_dma_range_ok(s, l->bias, l->b_bytes, false))) {
        FAIL(CONVACCEL_ERR_DMA, "a tensor address range is not guest RAM");
    }
    if (layer_host_bytes(s, l) > MAX_HOST_BYTES) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "its output and the copies of its inputs "
             "that are not contiguous in host memory are above %d MiB",
             CONVACCEL_MAX_HOST_MB);
    }
    return CONVACCEL_ERR_OK;
}

#undef FAIL

static struct cvc_conv to_conv(const Layer *l, const struct cvc_ctl *ctl)
{
    return (struct cvc_conv) {
        .ctl = ctl,
        .n = l->n, .c_in = l->c_in, .h_in = l->h_in, .w_in = l->w_in,
        .c_out = l->c_out, .h_out = l->h_out, .w_out = l->w_out,
        .kh = l->kh, .kw = l->kw, .stride_h = l->stride_h,
        .stride_w = l->stride_w, .dil_h = l->dil_h, .dil_w = l->dil_w,
        .pad_top = l->pad_top, .pad_left = l->pad_left, .groups = l->groups,
        .act = (l->flags & CONVACCEL_LAYER_ACT_MASK) >> CONVACCEL_LAYER_ACT_SHIFT,
    };
}

static struct cvc_pool to_pool(const Layer *l, const struct cvc_ctl *ctl)
{
    return (struct cvc_pool) {
        .ctl = ctl,
        .n = l->n, .c = l->c_in, .h_in = l->h_in, .w_in = l->w_in,
        .h_out = l->h_out, .w_out = l->w_out, .kh = l->kh, .kw = l->kw,
        .stride_h = l->stride_h, .stride_w = l->stride_w,
        .pad_top = l->pad_top, .pad_left = l->pad_left,
        .act = (l->flags & CONVACCEL_LAYER_ACT_MASK) >> CONVACCEL_LAYER_ACT_SHIFT,
    };
}

/* Modelled cycles of one layer on the hypothetical silicon (docs/hardware.md). */
uint64_t cva_model_cycles(ConvAccelState *s, const ModelLayer *m)
{
    const uint64_t a = s->model_array;
    uint64_t positions = m->n * m->h_out * m->w_out * m->kh * m->kw;
    uint64_t compute, dma = DIV_ROUND_UP(m->bytes, s->model_dma_bytes);

    if (m->op == CONVACCEL_LAYER_OP_CONV || m->op == CONVACCEL_LAYER_OP_FC) {
        uint64_t cin_g = m->c_in / m->groups, cout_g = m->c_out / m->groups;

        if (m->groups > 1 && cin_g == 1 && cout_g == 1) {
            compute = positions * DIV_ROUND_UP(m->c_in, a);     /* depthwise */
        } else {
            compute = positions * m->groups * DIV_ROUND_UP(cin_g, a) *
                      DIV_ROUND_UP(cout_g, a);
        }
        if (m->int8) {
            compute = DIV_ROUND_UP(compute, s->model_int8_factor);
        }
    } else {
        uint64_t taps = m->kh * m->kw;

        if (m->op == CONVACCEL_LAYER_OP_GLOBAL_AVGPOOL ||
            m->op == CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL) {
            taps = m->h_in * m->w_in;
        }
        compute = DIV_ROUND_UP(m->n * m->c_out * m->h_out * m->w_out * taps,
                               s->model_pool_lanes);
    }
    return MAX(compute, dma) + s->model_layer_cycles;
}

static uint64_t model_cycles(ConvAccelState *s, const Layer *l)
{
    ModelLayer m = {
        .op = l->op, .n = l->n, .c_in = l->c_in, .c_out = l->c_out,
        .h_in = l->h_in, .w_in = l->w_in, .h_out = l->h_out, .w_out = l->w_out,
        .kh = l->kh, .kw = l->kw, .groups = l->groups,
        .bytes = l->in_bytes + l->w_bytes + l->b_bytes + l->out_bytes,
    };

    return cva_model_cycles(s, &m);
}

/* [addr, addr + len) mapped whole (one host range), or NULL. */
static void *map_whole(ConvAccelState *s, uint64_t addr, uint64_t len,
                       bool is_write)
{
    hwaddr plen = len;
    void *p = address_space_map(s->as, addr, &plen, is_write,
                                MEMTXATTRS_UNSPECIFIED);

    if (p && plen != len) {
        address_space_unmap(s->as, p, plen, is_write, 0);
        p = NULL;
    }
    return p;
}

/*
 * Inputs are read in place (or copied, cva_dma_view). Outputs are computed
 * in place when they can be, else go through a bounce buffer (cva_out_get).
 */
uint32_t cva_dma_view(ConvAccelState *s, uint64_t addr, uint64_t len,
                         DmaView *v)
{
    v->len = len;
    v->ptr = map_whole(s, addr, len, false);
    if (v->ptr) {
        v->mapped = true;
        return CONVACCEL_ERR_OK;
    }
    v->mapped = false;
    v->ptr = g_try_malloc(len);
    if (!v->ptr) {
        return CONVACCEL_ERR_NO_MEMORY;
    }
    return cva_dma_read(s, addr, v->ptr, len) ? CONVACCEL_ERR_OK : CONVACCEL_ERR_DMA;
}

void cva_dma_view_release(ConvAccelState *s, DmaView *v)
{
    if (v->mapped) {
        address_space_unmap(s->as, v->ptr, v->len, false, 0);
    } else {
        g_free(v->ptr);
    }
    v->ptr = NULL;
}

/* The output bounce buffer, kept between layers (only the worker uses it). */
void *cva_scratch_out(ConvAccelState *s, uint64_t bytes)
{
    if (bytes > s->scratch_size) {
        g_free(s->scratch_buf);
        s->scratch_buf = g_try_malloc(bytes);
        s->scratch_size = s->scratch_buf ? bytes : 0;
    }
    return s->scratch_buf;
}

static bool cva_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return blen && a < b + blen && b < a + alen;
}

uint32_t cva_out_get(ConvAccelState *s, uint32_t gen, uint64_t addr,
                     uint64_t len, const CvaRange *reads, unsigned n_reads,
                     OutBuf *o)
{
    bool disjoint = true;
    unsigned i;

    *o = (OutBuf) { .addr = addr, .len = len };
    for (i = 0; i < n_reads; i++) {
        disjoint &= !cva_overlap(addr, len, reads[i].addr, reads[i].len);
    }
    if (disjoint && cva_dma_range_ok(s, addr, len, true) &&
        cva_dma_begin(s, gen)) {
        o->ptr = map_whole(s, addr, len, true);
        if (o->ptr) {
            o->mapped = true;
            return CONVACCEL_ERR_OK;
        }
        cva_dma_end(s);
    }
    o->ptr = cva_scratch_out(s, len);
    return o->ptr ? CONVACCEL_ERR_OK : CONVACCEL_ERR_NO_MEMORY;
}

bool cva_out_put(ConvAccelState *s, uint32_t gen, OutBuf *o, bool write)
{
    bool ok = true;

    if (o->mapped) {
        /* the whole range is dirty: a stopped compute may have written some */
        address_space_unmap(s->as, o->ptr, o->len, true, o->len);
        cva_dma_end(s);
    } else if (write && o->ptr) {
        ok = cva_dma_write(s, gen, o->addr, o->ptr, o->len);
    }
    o->ptr = NULL;
    o->mapped = false;
    return ok;
}

/* Run one checked layer: read, compute, write. 0 or a CONVACCEL_ERR_* code. */
static uint32_t run_layer(ConvAccelState *s, uint32_t gen, const Layer *l,
                          JobCounters *c)
{
    ComputeCtl cc;
    DmaView in = { 0 }, w = { 0 }, b = { 0 };
    const CvaRange reads[] = {
        { l->input, l->in_bytes }, { l->weight, l->w_bytes },
        { l->bias, l->b_bytes },
    };
    OutBuf o;
    uint32_t err = cva_out_get(s, gen, l->output, l->out_bytes, reads,
                               ARRAY_SIZE(reads), &o);
    float *out = o.ptr;
    int64_t t0;
    int ret;

    cva_compute_ctl_init(&cc, s, gen);
    if (!err) {
        err = cva_dma_view(s, l->input, l->in_bytes, &in);
    }
    if (!err && l->w_bytes) {
        err = cva_dma_view(s, l->weight, l->w_bytes, &w);
    }
    if (!err && l->b_bytes) {
        err = cva_dma_view(s, l->bias, l->b_bytes, &b);
    }
    if (err) {
        goto out;
    }
    t0 = get_clock();
    if (l->op == CONVACCEL_LAYER_OP_CONV) {
        struct cvc_conv p = to_conv(l, &cc.ctl);

        ret = cvc_conv2d(&p, in.ptr, w.ptr, b.ptr, out);
        c->macs += cvc_conv_macs(&p);
    } else {
        struct cvc_pool p = to_pool(l, &cc.ctl);

        ret = l->op == CONVACCEL_LAYER_OP_MAXPOOL ? cvc_maxpool2d(&p, in.ptr, out) :
                                                    cvc_avgpool2d(&p, in.ptr, out);
    }
    c->host_ns += get_clock() - t0;
    if (ret == CVC_CANCELLED) {
        err = cva_cancel_status(s, gen);
    } else if (ret) {
        err = CONVACCEL_ERR_NO_MEMORY;
    } else if (!cva_out_put(s, gen, &o, true)) {
        err = CONVACCEL_ERR_DMA;
    } else {
        c->bytes_read += l->in_bytes + l->w_bytes + l->b_bytes;
        c->bytes_written += l->out_bytes;
        c->cycles += model_cycles(s, l);
    }
out:
    cva_out_put(s, gen, &o, false);
    cva_dma_view_release(s, &in);
    cva_dma_view_release(s, &w);
    cva_dma_view_release(s, &b);
    return err;
}

/*
 * The job at queue index qi waits out its FAULT_DELAY: JOB_REPORT when it
 * is over. A VM stop pauses it (the queue entry keeps what is left of the
 * delay); a reset abandons it.
 */
static JobEnd job_delay(ConvAccelState *s, uint32_t gen, uint32_t qi,
                        uint32_t delay_us)
{
    int64_t deadline = get_clock() + (int64_t)delay_us * SCALE_US;
    JobEnd end;

    qemu_mutex_lock(&s->lock);
    while ((end = cva_stop_reason(s, gen)) == JOB_REPORT) {
        int64_t left = deadline - get_clock();

        if (left <= 0) {
            s->queue[qi].delay_us = 0;
            break;
        }
        qemu_cond_timedwait(&s->cond, &s->lock, MAX(1, left / SCALE_MS));
    }
    if (end == JOB_PAUSED) {
        s->queue[qi].delay_us = DIV_ROUND_UP(MAX(deadline - get_clock(), 0),
                                             SCALE_US);
    }
    qemu_mutex_unlock(&s->lock);
    return end;
}

/* The hang fault: wait for a reset. The worker's state is saved meanwhile. */
static JobEnd job_hang(ConvAccelState *s, uint32_t gen)
{
    qemu_mutex_lock(&s->lock);
    s->parked = true;
    qemu_cond_broadcast(&s->cond);
    while (gen == s->generation && !s->stopping) {
        qemu_cond_wait(&s->cond, &s->lock);
    }
    qemu_mutex_unlock(&s->lock);
    return JOB_ABANDONED;
}

/* Pause: record how far the job got. JOB_PAUSED, or JOB_ABANDONED. */
static JobEnd pause_job(ConvAccelState *s, uint32_t gen, uint32_t tag,
                        uint32_t layers_done, const JobCounters *c)
{
    JobEnd end = JOB_PAUSED;

    trace_convaccel_job_pause(tag, layers_done);
    qemu_mutex_lock(&s->lock);
    if (cva_stop_reason(s, gen) == JOB_ABANDONED) {
        end = JOB_ABANDONED;
    } else {
        s->progress = (ConvAccelProgress) { .layers_done = layers_done, .c = *c };
    }
    qemu_mutex_unlock(&s->lock);
    return end;
}

static void write_result(ConvAccelState *s, uint32_t gen, uint64_t addr,
                         const ConvAccelDone *d, uint32_t layers_done,
                         const JobCounters *c)
{
    uint8_t r[CONVACCEL_RESULT_SIZE] = { 0 };

    stl_le_p(r + CONVACCEL_RESULT_STATUS_OFF, d->status);
    stl_le_p(r + CONVACCEL_RESULT_LAYER_OFF, d->layer);
    stl_le_p(r + CONVACCEL_RESULT_TAG_OFF, d->tag);
    stl_le_p(r + CONVACCEL_RESULT_LAYERS_DONE_OFF, layers_done);
    stq_le_p(r + CONVACCEL_RESULT_MACS_OFF, c->macs);
    stq_le_p(r + CONVACCEL_RESULT_BYTES_READ_OFF, c->bytes_read);
    stq_le_p(r + CONVACCEL_RESULT_BYTES_WRITTEN_OFF, c->bytes_written);
    stq_le_p(r + CONVACCEL_RESULT_HOST_NS_OFF, c->host_ns);
    stq_le_p(r + CONVACCEL_RESULT_CYCLES_OFF, c->cycles);
    if (!cva_dma_write(s, gen, addr, r, sizeof(r))) {
        qemu_log_mask(LOG_GUEST_ERROR, "convaccel: job tag %u: result address "
                      "0x%" PRIx64 " is not guest RAM\n", d->tag, addr);
    }
}

/*
 * Run the job at queue index qi, a copy of which is *jp, or resume it from
 * *from. With JOB_REPORT, *d is its completion; otherwise nothing reports.
 */
static JobEnd run_job(ConvAccelState *s, uint32_t qi, const ConvAccelJob *jp,
                      const ConvAccelProgress *fromp, uint32_t gen,
                      ConvAccelDone *d)
{
    ConvAccelJob job = *jp;
    ConvAccelProgress from = *fromp;
    uint8_t hdr[CONVACCEL_JOB_SIZE];
    g_autofree uint8_t *descs = NULL;
    g_autofree Layer *layers = NULL;
    Layer2 *layers2 = NULL;
    size_t dsize;
    JobCounters c = { .cycles = s->model_job_cycles };
    uint64_t layers_addr, stats_addr, result_addr = 0;
    uint32_t i, flags, count = 0, done = 0, index = CONVACCEL_RESULT_LAYER_JOB;
    uint64_t work = 0;
    JobEnd end;

    *d = (ConvAccelDone) { .layer = CONVACCEL_RESULT_LAYER_JOB,
                           .lost_irq = job.faults & CONVACCEL_FAULT_LOST_IRQ };
    if (job.delay_us && (end = job_delay(s, gen, qi, job.delay_us)) != JOB_REPORT) {
        return end;
    }
    if (job.faults & CONVACCEL_FAULT_HANG) {
        trace_convaccel_job_hang(job.addr);
        return job_hang(s, gen);
    }
    if (!cva_dma_read(s, job.addr, hdr, sizeof(hdr))) {
        qemu_log_mask(LOG_GUEST_ERROR, "convaccel: job descriptor at 0x%"
                      PRIx64 " is not guest RAM\n", job.addr);
        d->status = CONVACCEL_ERR_DMA;
        return JOB_REPORT;
    }
    d->tag = ldl_le_p(hdr + CONVACCEL_JOB_TAG_OFF);
    result_addr = ldq_le_p(hdr + CONVACCEL_JOB_RESULT_OFF);
    count = ldl_le_p(hdr + CONVACCEL_JOB_LAYER_COUNT_OFF);
    layers_addr = ldq_le_p(hdr + CONVACCEL_JOB_LAYERS_OFF);
    flags = ldl_le_p(hdr + CONVACCEL_JOB_FLAGS_OFF);
    stats_addr = ldq_le_p(hdr + CONVACCEL_JOB_STATS_OFF);
    if (from.layers_done) {
        trace_convaccel_job_resume(d->tag, from.layers_done);
        c = from.c;
        done = from.layers_done;
    } else {
        trace_convaccel_job_start(d->tag, job.addr, count);
    }

    if (ldl_le_p(hdr + CONVACCEL_JOB_MAGIC_OFF) != CONVACCEL_JOB_MAGIC) {
        d->status = CONVACCEL_ERR_MAGIC;
    } else if ((flags & ~(CONVACCEL_JOB_FLAG_STATS | CONVACCEL_JOB_FLAG_V2)) ||
               ldq_le_p(hdr + CONVACCEL_JOB_RSVD_OFF)) {
        d->status = CONVACCEL_ERR_RESERVED;
    } else if (!cva_in_range(count, 1, CONVACCEL_MAX_LAYERS_VALUE)) {
        d->status = CONVACCEL_ERR_LAYER_COUNT;
    } else if ((flags & CONVACCEL_JOB_FLAG_STATS) &&
               !cva_dma_range_ok(s, stats_addr, (uint64_t)count * CONVACCEL_STATS_SIZE,
                             true)) {
        d->status = CONVACCEL_ERR_DMA;
    } else if (job.faults & CONVACCEL_FAULT_DMA_ERROR) {
        d->status = CONVACCEL_ERR_DMA;
    } else if (job.inject_error) {
        d->status = CONVACCEL_ERR_INJECTED;
    } else {
        bool v2 = flags & CONVACCEL_JOB_FLAG_V2;

        dsize = v2 ? CONVACCEL_LAYER2_SIZE : CONVACCEL_LAYER_SIZE;
        descs = g_malloc((size_t)count * dsize);
        if (v2) {
            layers2 = cva_v2_layers_new(count);
        } else {
            layers = g_new(Layer, count);
        }
        if (!cva_dma_read(s, layers_addr, descs, (uint64_t)count * dsize)) {
            d->status = CONVACCEL_ERR_DMA;
        }
        /* the whole job is checked before anything runs (again on resume) */
        for (i = 0; i < count && !d->status; i++) {
            if (v2) {
                d->status = cva_v2_check(s, layers2, i, descs + (size_t)i * dsize,
                                         &work);
            } else {
                parse_layer(descs + (size_t)i * dsize, &layers[i]);
                d->status = check_layer(s, &layers[i], i, &work);
            }
            index = i;
        }
        for (i = done; i < count && !d->status; i++) {
            JobCounters before = c;

            index = i;
            d->status = v2 ? cva_v2_run(s, gen, layers2, i, &c) :
                             run_layer(s, gen, &layers[i], &c);
            if (d->status == ERR_ABANDONED) {
                cva_v2_layers_free(layers2, count);
                return JOB_ABANDONED;
            }
            if (d->status == ERR_PAUSED) {
                /* this layer wrote nothing: it runs again on resume */
                cva_v2_layers_free(layers2, count);
                return pause_job(s, gen, d->tag, i, &before);
            }
            done += !d->status;
            if (flags & CONVACCEL_JOB_FLAG_STATS) {
                write_layer_stats(s, gen, stats_addr + (uint64_t)i * CONVACCEL_STATS_SIZE,
                                  &before, &c);
            }
            /* a VM stop pauses the job at the next layer boundary */
            if (!d->status && i + 1 < count && !qatomic_read(&s->vm_running)) {
                cva_v2_layers_free(layers2, count);
                return pause_job(s, gen, d->tag, i + 1, &c);
            }
        }
        cva_v2_layers_free(layers2, count);
    }
    if (d->status) {
        d->layer = index;
        trace_convaccel_job_error(d->tag, index, d->status,
                                  convaccel_err_names[d->status]);
        qemu_log_mask(LOG_GUEST_ERROR, "convaccel: job tag %u failed at %s%u: %s\n",
                      d->tag, index == CONVACCEL_RESULT_LAYER_JOB ? "job " : "layer ",
                      index, convaccel_err_names[d->status]);
    }
    write_result(s, gen, result_addr, d, done, &c);
    trace_convaccel_job_end(d->tag, d->status, c.macs, c.host_ns, c.cycles);
    return JOB_REPORT;
}

/*
 * The worker runs the queue's jobs in order while the VM runs. On a VM stop
 * it parks (convaccel_vm_state_change waits for that): between jobs, in a
 * job's delay, at a layer boundary, or in a layer's compute (which then
 * runs again, from its start, on resume). s->progress and the queue then
 * hold all its state, which migrates.
 */
void *convaccel_worker(void *opaque)
{
    ConvAccelState *s = opaque;

    rcu_register_thread();
    qemu_mutex_lock(&s->lock);
    while (!s->stopping) {
        ConvAccelProgress from;
        ConvAccelDone done;
        ConvAccelJob job;
        uint32_t gen, qi;
        JobEnd end;

        /* the jobs at the head of the queue that are done wait for done_bh */
        if (s->done_count == s->q_count || !s->vm_running) {
            s->parked = true;
            qemu_cond_broadcast(&s->cond);
            qemu_cond_wait(&s->cond, &s->lock);
            continue;
        }
        s->parked = false;
        qi = (s->q_head + s->done_count) % CONVACCEL_QUEUE_DEPTH_VALUE;
        job = s->queue[qi];
        from = s->progress;
        gen = s->generation;
        qemu_mutex_unlock(&s->lock);

        end = run_job(s, qi, &job, &from, gen, &done);
        if (s->scratch_size > KEEP_BOUNCE_BYTES) {
            g_free(s->scratch_buf);         /* idle devices keep no GiB */
            s->scratch_buf = NULL;
            s->scratch_size = 0;
        }

        qemu_mutex_lock(&s->lock);
        if (end == JOB_REPORT && gen == s->generation && !s->stopping) {
            s->done[s->done_count++] = done;
            s->progress = (ConvAccelProgress) { 0 };
            qemu_bh_schedule(s->done_bh);
        }
    }
    s->parked = true;
    qemu_cond_broadcast(&s->cond);
    qemu_mutex_unlock(&s->lock);
    rcu_unregister_thread();
    return NULL;
}
