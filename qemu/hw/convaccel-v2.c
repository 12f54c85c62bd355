/*
 * convaccel: version 2 layer descriptors (JOB_FLAG_V2): parse, check and
 * run them (docs/hardware.md, "Version 2.0").
 *
 * Checking reads a layer's rescale records and lookup table too, so every
 * value the layer uses is known good before any layer of the job runs.
 * Running gathers each input view into a packed NCHW tensor (in place when
 * the view is packed and its RAM contiguous), computes into the packed
 * output bounce buffer, and scatters that into the output view by runs of
 * contiguous elements, between cva_dma_begin/end like every write.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/bswap.h"
#include "qemu/log.h"
#include "qemu/cutils.h"
#include <math.h>
#include "qemu/timer.h"
#include "qemu/rcu.h"
#include "exec/memory.h"
#include "convaccel-job.h"
#include "convaccel-ops.h"

enum { AX_N, AX_C, AX_H, AX_W, AXES };

typedef struct View2 {
    uint64_t addr;
    uint32_t dtype, rsvd;
    uint32_t stride[AXES];
    /* derived by check_view() */
    uint32_t dim[AXES];
    uint32_t esize;
    uint64_t elems;         /* of the packed tensor */
    uint64_t extent;        /* bytes from addr to the last element's end */
    bool packed;            /* the view is the packed tensor */
} View2;

struct Layer2 {
    uint32_t op, flags, act;
    uint32_t alpha_bits, beta_bits, qscale_bits;
    float alpha, beta, qscale;
    CvaGeom g;
    uint32_t pad_bottom, pad_right, rsvd0;
    uint64_t rsvd1;
    View2 in0, in1, out;
    uint64_t weight, bias, requant, lut_addr;
    int32_t zp_in0, zp_in1, zp_out, act_min, act_max;
    /* derived by cva_v2_check() */
    bool uses_in1, s8;      /* s8: the layer's arithmetic is int8 */
    uint64_t w_bytes, b_bytes, rq_count, work, macs;
    CvaRescale *rq;         /* rq_count records, read during the check */
    int8_t lut[CONVACCEL_LUT_SIZE];
    bool has_lut;
};

Layer2 *cva_v2_layers_new(uint32_t count)
{
    return g_new0(Layer2, count);
}

void cva_v2_layers_free(Layer2 *layers, uint32_t count)
{
    if (!layers) {
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        g_free(layers[i].rq);
    }
    g_free(layers);
}

static float f32_of(uint32_t bits)
{
    float f;

    memcpy(&f, &bits, sizeof(f));
    return f;
}

static void parse_view(const uint8_t *d, View2 *v)
{
    memset(v, 0, sizeof(*v));
    v->addr = ldq_le_p(d + CONVACCEL_VIEW_ADDR_OFF);
    v->dtype = ldl_le_p(d + CONVACCEL_VIEW_DTYPE_OFF);
    v->rsvd = ldl_le_p(d + CONVACCEL_VIEW_RSVD_OFF);
    v->stride[AX_N] = ldl_le_p(d + CONVACCEL_VIEW_STRIDE_N_OFF);
    v->stride[AX_C] = ldl_le_p(d + CONVACCEL_VIEW_STRIDE_C_OFF);
    v->stride[AX_H] = ldl_le_p(d + CONVACCEL_VIEW_STRIDE_H_OFF);
    v->stride[AX_W] = ldl_le_p(d + CONVACCEL_VIEW_STRIDE_W_OFF);
}

static bool view_is_zero(const uint8_t *d)
{
    return buffer_is_zero(d, CONVACCEL_VIEW_SIZE);
}

static void parse_layer2(const uint8_t *d, Layer2 *l)
{
    l->op = ldl_le_p(d + CONVACCEL_LAYER2_OP_OFF);
    l->flags = ldl_le_p(d + CONVACCEL_LAYER2_FLAGS_OFF);
    l->act = ldl_le_p(d + CONVACCEL_LAYER2_ACT_OFF);
    l->alpha_bits = ldl_le_p(d + CONVACCEL_LAYER2_ACT_ALPHA_OFF);
    l->beta_bits = ldl_le_p(d + CONVACCEL_LAYER2_ACT_BETA_OFF);
    l->alpha = f32_of(l->alpha_bits);
    l->beta = f32_of(l->beta_bits);
    l->g = (CvaGeom) {
        .n = ldl_le_p(d + CONVACCEL_LAYER2_N_OFF),
        .c_in = ldl_le_p(d + CONVACCEL_LAYER2_C_IN_OFF),
        .h_in = ldl_le_p(d + CONVACCEL_LAYER2_H_IN_OFF),
        .w_in = ldl_le_p(d + CONVACCEL_LAYER2_W_IN_OFF),
        .c_out = ldl_le_p(d + CONVACCEL_LAYER2_C_OUT_OFF),
        .h_out = ldl_le_p(d + CONVACCEL_LAYER2_H_OUT_OFF),
        .w_out = ldl_le_p(d + CONVACCEL_LAYER2_W_OUT_OFF),
        .groups = ldl_le_p(d + CONVACCEL_LAYER2_GROUPS_OFF),
        .kh = ldl_le_p(d + CONVACCEL_LAYER2_KH_OFF),
        .kw = ldl_le_p(d + CONVACCEL_LAYER2_KW_OFF),
        .stride_h = ldl_le_p(d + CONVACCEL_LAYER2_STRIDE_H_OFF),
        .stride_w = ldl_le_p(d + CONVACCEL_LAYER2_STRIDE_W_OFF),
        .dil_h = ldl_le_p(d + CONVACCEL_LAYER2_DIL_H_OFF),
        .dil_w = ldl_le_p(d + CONVACCEL_LAYER2_DIL_W_OFF),
        .pad_top = ldl_le_p(d + CONVACCEL_LAYER2_PAD_TOP_OFF),
        .pad_left = ldl_le_p(d + CONVACCEL_LAYER2_PAD_LEFT_OFF),
    };
    l->pad_bottom = ldl_le_p(d + CONVACCEL_LAYER2_PAD_BOTTOM_OFF);
    l->pad_right = ldl_le_p(d + CONVACCEL_LAYER2_PAD_RIGHT_OFF);
    l->rsvd0 = ldl_le_p(d + CONVACCEL_LAYER2_RSVD0_OFF);
    parse_view(d + CONVACCEL_LAYER2_IN0_OFF, &l->in0);
    parse_view(d + CONVACCEL_LAYER2_IN1_OFF, &l->in1);
    parse_view(d + CONVACCEL_LAYER2_OUT_OFF, &l->out);
    l->weight = ldq_le_p(d + CONVACCEL_LAYER2_WEIGHT_OFF);
    l->bias = ldq_le_p(d + CONVACCEL_LAYER2_BIAS_OFF);
    l->requant = ldq_le_p(d + CONVACCEL_LAYER2_REQUANT_OFF);
    l->lut_addr = ldq_le_p(d + CONVACCEL_LAYER2_LUT_OFF);
    l->zp_in0 = (int32_t)ldl_le_p(d + CONVACCEL_LAYER2_ZP_IN0_OFF);
    l->zp_in1 = (int32_t)ldl_le_p(d + CONVACCEL_LAYER2_ZP_IN1_OFF);
    l->zp_out = (int32_t)ldl_le_p(d + CONVACCEL_LAYER2_ZP_OUT_OFF);
    l->act_min = (int32_t)ldl_le_p(d + CONVACCEL_LAYER2_ACT_MIN_OFF);
    l->act_max = (int32_t)ldl_le_p(d + CONVACCEL_LAYER2_ACT_MAX_OFF);
    l->qscale_bits = ldl_le_p(d + CONVACCEL_LAYER2_QSCALE_OFF);
    l->qscale = f32_of(l->qscale_bits);
    l->rsvd1 = ldq_le_p(d + CONVACCEL_LAYER2_RSVD1_OFF);
}

static bool is_op(const Layer2 *l, uint32_t op)
{
    return l->op == op;
}

/* Ops whose geometry is v1's: a kernel window, strides, padding. */
static bool windowed(const Layer2 *l)
{
    return l->op <= CONVACCEL_LAYER_OP_AVGPOOL;
}

static bool global_pool(const Layer2 *l)
{
    return l->op == CONVACCEL_LAYER_OP_GLOBAL_AVGPOOL ||
           l->op == CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL;
}

static bool max_pool(const Layer2 *l)
{
    return l->op == CONVACCEL_LAYER_OP_MAXPOOL ||
           l->op == CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL;
}

/* Rescale records an int8 layer reads at requant. */
static uint64_t rescale_count(const Layer2 *l)
{
    switch (l->op) {
    case CONVACCEL_LAYER_OP_CONV:
    case CONVACCEL_LAYER_OP_FC:
    case CONVACCEL_LAYER_OP_SCALE_SHIFT:
        return l->g.c_out;
    case CONVACCEL_LAYER_OP_ADD:
        return 3;
    case CONVACCEL_LAYER_OP_MAXPOOL:
    case CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL:
    case CONVACCEL_LAYER_OP_QUANTIZE:
        return 0;
    default:
        return 1;
    }
}

/*
 * Derive a view's geometry and check it: SHAPE for an output view that maps
 * two elements to one address, TOO_LARGE for an extent or a tensor above
 * MAX_TENSOR_MB. 0 or the status.
 */
static uint32_t check_view(View2 *v, uint32_t n, uint32_t c, uint32_t h,
                           uint32_t w, bool is_out, const char **why)
{
    uint64_t last = 0;
    int order[AXES] = { AX_N, AX_C, AX_H, AX_W };

    v->dim[AX_N] = n;
    v->dim[AX_C] = c;
    v->dim[AX_H] = h;
    v->dim[AX_W] = w;
    v->esize = v->dtype == CONVACCEL_DTYPE_S8 ? 1 : 4;
    v->elems = cva_elems(n, c, h, w);
    v->packed = true;
    for (int a = 0; a < AXES; a++) {
        uint64_t packed_stride = 1;

        for (int b = a + 1; b < AXES; b++) {
            packed_stride *= v->dim[b];
        }
        last += (uint64_t)(v->dim[a] - 1) * v->stride[a];   /* < 2^45 each */
        if (v->dim[a] > 1 && v->stride[a] != packed_stride) {
            v->packed = false;
        }
    }
    v->extent = (last + 1) * v->esize;
    if (is_out) {
        /* injective iff, sorting the axes that have extent by stride, each
         * stride is above the extent of the axes inside it */
        uint64_t inner = 0;

        for (int a = 1; a < AXES; a++) {
            for (int b = a; b > 0 && v->stride[order[b]] < v->stride[order[b - 1]]; b--) {
                int t = order[b];

                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        }
        for (int a = 0; a < AXES; a++) {
            int ax = order[a];

            if (v->dim[ax] == 1) {
                continue;
            }
            if (v->stride[ax] <= inner) {
                *why = "the output view maps two elements to one address";
                return CONVACCEL_ERR_SHAPE;
            }
            inner += (uint64_t)(v->dim[ax] - 1) * v->stride[ax];
        }
    }
    if (v->extent > MAX_TENSOR_BYTES || v->elems * v->esize > MAX_TENSOR_BYTES) {
        *why = "a view's extent or tensor is above MAX_TENSOR_MB";
        return CONVACCEL_ERR_TOO_LARGE;
    }
    return CONVACCEL_ERR_OK;
}

#define FAIL(code, ...) CVA_FAIL(index, code, __VA_ARGS__)

static bool in_s8(uint32_t zp)
{
    return (int32_t)zp >= -128 && (int32_t)zp <= 127;
}

/* The checks of docs/hardware.md's "V2 validation" that need no memory. */
static uint32_t check_fields(ConvAccelState *s, Layer2 *l, uint32_t index,
                             const uint8_t *d)
{
    CvaGeom *g = &l->g;
    bool conv = is_op(l, CONVACCEL_LAYER_OP_CONV), fc = is_op(l, CONVACCEL_LAYER_OP_FC);
    bool sshift = is_op(l, CONVACCEL_LAYER_OP_SCALE_SHIFT);
    bool quant = is_op(l, CONVACCEL_LAYER_OP_QUANTIZE);
    bool dequant = is_op(l, CONVACCEL_LAYER_OP_DEQUANTIZE);
    bool bias_flag = l->flags & CONVACCEL_LAYER2_FLAG_BIAS;
    bool bcast = l->flags & CONVACCEL_LAYER2_FLAG_BCAST;
    bool in0_s8, out_s8, needs_w, needs_b, uses_alpha, uses_beta;
    uint64_t rq;
    const char *why = NULL;
    uint32_t err;

    if (!cva_in_range(l->op, 1, CONVACCEL_LAYER_OP_COUNT - 1)) {
        FAIL(CONVACCEL_ERR_OP, "op %u", l->op);
    }
    l->uses_in1 = is_op(l, CONVACCEL_LAYER_OP_ADD) || is_op(l, CONVACCEL_LAYER_OP_MUL);
    if (l->rsvd0 || l->rsvd1 || l->in0.rsvd || l->out.rsvd ||
        (l->uses_in1 && l->in1.rsvd)) {
        FAIL(CONVACCEL_ERR_RESERVED, "a reserved word is not 0");
    }
    if (l->flags & ~(CONVACCEL_LAYER2_FLAG_BIAS | CONVACCEL_LAYER2_FLAG_BCAST)) {
        FAIL(CONVACCEL_ERR_RESERVED, "unknown flags 0x%x", l->flags);
    }
    if (bias_flag && !conv && !fc) {
        FAIL(CONVACCEL_ERR_RESERVED, "BIAS on an op that takes none");
    }
    if (bcast && !is_op(l, CONVACCEL_LAYER_OP_MUL)) {
        FAIL(CONVACCEL_ERR_RESERVED, "BCAST on an op other than MUL");
    }
    if (l->act >= CONVACCEL_LAYER_ACT_COUNT) {
        FAIL(CONVACCEL_ERR_RESERVED, "activation %u", l->act);
    }
    if (!l->uses_in1 && !view_is_zero(d + CONVACCEL_LAYER2_IN1_OFF)) {
        FAIL(CONVACCEL_ERR_RESERVED, "an in1 view on an op that takes none");
    }

    /* data types */
    if (l->in0.dtype >= CONVACCEL_DTYPE_COUNT || l->out.dtype >= CONVACCEL_DTYPE_COUNT ||
        (l->uses_in1 && l->in1.dtype >= CONVACCEL_DTYPE_COUNT)) {
        FAIL(CONVACCEL_ERR_SHAPE, "unknown data type");
    }
    in0_s8 = l->in0.dtype == CONVACCEL_DTYPE_S8;
    out_s8 = l->out.dtype == CONVACCEL_DTYPE_S8;
    if (quant ? in0_s8 || !out_s8 :
        dequant ? !in0_s8 || out_s8 :
        in0_s8 != out_s8 || (l->uses_in1 && l->in1.dtype != l->in0.dtype)) {
        FAIL(CONVACCEL_ERR_SHAPE, "operand data types %u, %u -> %u do not fit the op",
             l->in0.dtype, l->in1.dtype, l->out.dtype);
    }
    l->s8 = in0_s8 && out_s8;

    /* fields the op and data types use, and only those */
    if (l->act && out_s8) {
        FAIL(CONVACCEL_ERR_RESERVED, "activation %u with an int8 output "
             "(int8 activations are the clamp and the lookup table)", l->act);
    }
    uses_alpha = l->act == CONVACCEL_LAYER_ACT_LEAKY ||
                 l->act == CONVACCEL_LAYER_ACT_HSIGMOID ||
                 l->act == CONVACCEL_LAYER_ACT_HSWISH;
    uses_beta = l->act == CONVACCEL_LAYER_ACT_HSIGMOID ||
                l->act == CONVACCEL_LAYER_ACT_HSWISH;
    if ((!uses_alpha && l->alpha_bits) || (!uses_beta && l->beta_bits)) {
        FAIL(CONVACCEL_ERR_RESERVED, "act_alpha/act_beta the activation does not use");
    }
    needs_w = conv || fc || sshift;
    needs_b = ((conv || fc) && bias_flag) || sshift;
    if (needs_w != (l->weight != 0)) {
        FAIL(CONVACCEL_ERR_RESERVED, needs_w ? "no weight address" :
             "a weight address on an op that takes none");
    }
    if (needs_b != (l->bias != 0)) {
        FAIL(CONVACCEL_ERR_RESERVED, needs_b ? "no bias address" :
             "a bias address on an op (or without the flag) that takes none");
    }
    rq = out_s8 && !quant ? rescale_count(l) : 0;
    if ((rq != 0) != (l->requant != 0)) {
        FAIL(CONVACCEL_ERR_RESERVED, rq ? "no requant address" :
             "a requant address the op does not use");
    }
    l->rq_count = rq;
    if (l->lut_addr && !out_s8) {
        FAIL(CONVACCEL_ERR_RESERVED, "a lookup table with a float32 output");
    }
    if (l->uses_in1 && !l->in1.addr) {
        FAIL(CONVACCEL_ERR_RESERVED, "no in1 address");
    }
    if ((!in0_s8 && l->zp_in0) || ((!l->uses_in1 || !in0_s8) && l->zp_in1) ||
        (!out_s8 && (l->zp_out || l->act_min || l->act_max))) {
        FAIL(CONVACCEL_ERR_RESERVED, "a zero point or clamp the data types do not use");
    }
    if ((quant || dequant) != (l->qscale_bits != 0)) {
        FAIL(CONVACCEL_ERR_RESERVED, quant || dequant ? "qscale is 0" :
             "a qscale on an op other than QUANTIZE, DEQUANTIZE");
    }

    /* values */
    if (!in_s8(l->zp_in0) || !in_s8(l->zp_in1) || !in_s8(l->zp_out)) {
        FAIL(CONVACCEL_ERR_SHAPE, "a zero point outside -128..127");
    }
    if (out_s8 && (!in_s8(l->act_min) || !in_s8(l->act_max) || l->act_min > l->act_max)) {
        FAIL(CONVACCEL_ERR_SHAPE, "clamp %d..%d", l->act_min, l->act_max);
    }
    if ((quant || dequant) && !(isfinite(l->qscale) && l->qscale > 0)) {
        FAIL(CONVACCEL_ERR_SHAPE, "qscale %g is not finite and positive", l->qscale);
    }
    if (l->s8 && max_pool(l) && l->zp_out != l->zp_in0) {
        FAIL(CONVACCEL_ERR_SHAPE, "int8 max pooling keeps in0's zero point");
    }

    /* geometry */
    err = cva_check_sizes(g, index);
    if (!err && windowed(l)) {
        err = cva_check_window(g, l->pad_bottom, l->pad_right, conv, index);
    }
    if (err) {
        return err;
    }
    if (!windowed(l)) {
        bool same = g->h_out == g->h_in && g->w_out == g->w_in;

        if (g->kh != 1 || g->kw != 1 || g->stride_h != 1 || g->stride_w != 1 ||
            g->dil_h != 1 || g->dil_w != 1) {
            FAIL(CONVACCEL_ERR_KERNEL, "kernel, stride and dilation must be 1");
        }
        if (g->pad_top || l->pad_bottom || g->pad_left || l->pad_right) {
            FAIL(CONVACCEL_ERR_PAD, "the op takes no padding");
        }
        if (g->groups != 1) {
            FAIL(CONVACCEL_ERR_SHAPE, "groups must be 1");
        }
        if (fc ? g->h_in != 1 || g->w_in != 1 || g->h_out != 1 || g->w_out != 1 :
            global_pool(l) ? g->c_out != g->c_in || g->h_out != 1 || g->w_out != 1 :
            g->c_out != g->c_in || !same) {
            FAIL(CONVACCEL_ERR_SHAPE, "shape %ux%ux%u -> %ux%ux%u does not fit the op",
                 g->c_in, g->h_in, g->w_in, g->c_out, g->h_out, g->w_out);
        }
    }

    /* views */
    err = check_view(&l->in0, g->n, g->c_in, g->h_in, g->w_in, false, &why);
    if (!err && l->uses_in1) {
        err = bcast ? check_view(&l->in1, g->n, g->c_in, 1, 1, false, &why) :
                      check_view(&l->in1, g->n, g->c_in, g->h_in, g->w_in, false, &why);
    }
    if (!err) {
        err = check_view(&l->out, g->n, g->c_out, g->h_out, g->w_out, true, &why);
    }
    if (err) {
        FAIL(err, "%s", why);
    }
    if (conv || fc) {
        l->w_bytes = (uint64_t)g->c_out * (g->c_in / (conv ? g->groups : 1)) *
                     g->kh * g->kw * (l->s8 ? 1 : 4);
        l->b_bytes = bias_flag ? (uint64_t)g->c_out * 4 : 0;
        l->macs = cva_elems(g->n, g->c_out, g->h_out, g->w_out) *
                  (g->c_in / g->groups) * g->kh * g->kw;
        l->work = l->macs;
    } else {
        l->w_bytes = sshift ? (uint64_t)g->c_out * (l->s8 ? 1 : 4) : 0;
        l->b_bytes = sshift ? (uint64_t)g->c_out * 4 : 0;
        l->macs = 0;
        l->work = cva_elems(g->n, g->c_out, g->h_out, g->w_out) *
                  (global_pool(l) ? (uint64_t)g->h_in * g->w_in :
                   (uint64_t)g->kh * g->kw);
    }
    if (l->w_bytes > MAX_TENSOR_BYTES) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "the weights are above %d MiB",
             CONVACCEL_MAX_TENSOR_MB_VALUE);
    }
    return CONVACCEL_ERR_OK;
}

/* Host memory the layer needs beyond guest RAM and compute scratch. */
static uint64_t host_bytes(ConvAccelState *s, const Layer2 *l)
{
    const View2 *ins[2] = { &l->in0, l->uses_in1 ? &l->in1 : NULL };
    uint64_t bytes = l->out.elems * l->out.esize;

    for (int i = 0; i < 2; i++) {
        const View2 *v = ins[i];

        if (v) {
            bytes += cva_dma_contiguous(s, v->addr, v->extent) ? 0 : v->extent;
            bytes += v->packed ? 0 : v->elems * v->esize;
        }
    }
    if (l->w_bytes && !cva_dma_contiguous(s, l->weight, l->w_bytes)) {
        bytes += l->w_bytes;
    }
    if (l->b_bytes && !cva_dma_contiguous(s, l->bias, l->b_bytes)) {
        bytes += l->b_bytes;
    }
    return bytes;
}

uint32_t cva_v2_check(ConvAccelState *s, Layer2 *layers, uint32_t index,
                      const uint8_t *d, uint64_t *work)
{
    Layer2 *l = &layers[index];
    uint64_t rq_bytes;
    uint32_t err;

    parse_layer2(d, l);
    err = check_fields(s, l, index, d);
    if (err) {
        return err;
    }
    *work += l->work;       /* below 2^64: every factor is bounded */
    if (*work > MAX_JOB_WORK) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "the job's work reaches %" PRIu64
             " MACs here, above MAX_JOB_GMACS (%u x 2^30)", *work,
             CONVACCEL_MAX_JOB_GMACS_VALUE);
    }
    if (l->in0.addr % l->in0.esize || l->out.addr % l->out.esize ||
        (l->uses_in1 && l->in1.addr % l->in1.esize) ||
        l->weight % (l->s8 ? 1 : 4) || l->bias % 4 || l->requant % 4) {
        FAIL(CONVACCEL_ERR_DMA, "an address is not aligned to its element size");
    }
    rq_bytes = l->rq_count * CONVACCEL_RESCALE_SIZE;
    if (!cva_dma_range_ok(s, l->in0.addr, l->in0.extent, false) ||
        (l->uses_in1 && !cva_dma_range_ok(s, l->in1.addr, l->in1.extent, false)) ||
        !cva_dma_range_ok(s, l->out.addr, l->out.extent, true) ||
        (l->w_bytes && !cva_dma_range_ok(s, l->weight, l->w_bytes, false)) ||
        (l->b_bytes && !cva_dma_range_ok(s, l->bias, l->b_bytes, false)) ||
        (rq_bytes && !cva_dma_range_ok(s, l->requant, rq_bytes, false)) ||
        (l->lut_addr && !cva_dma_range_ok(s, l->lut_addr, CONVACCEL_LUT_SIZE, false))) {
        FAIL(CONVACCEL_ERR_DMA, "a tensor or table range is not guest RAM");
    }
    if (host_bytes(s, l) > MAX_HOST_BYTES) {
        FAIL(CONVACCEL_ERR_TOO_LARGE, "its output and the copies of its inputs "
             "(strided or not contiguous in host memory) are above %d MiB",
             CONVACCEL_MAX_HOST_MB);
    }
    /* the tables, read now: their values are checked before any layer runs */
    g_free(l->rq);
    l->rq = NULL;
    if (rq_bytes) {
        g_autofree uint8_t *raw = g_try_malloc(rq_bytes);

        l->rq = g_try_new(CvaRescale, l->rq_count);
        if (!raw || !l->rq) {
            FAIL(CONVACCEL_ERR_NO_MEMORY, "no memory for %" PRIu64
                 " rescale records", l->rq_count);
        }
        if (!cva_dma_read(s, l->requant, raw, rq_bytes)) {
            FAIL(CONVACCEL_ERR_DMA, "the rescale records cannot be read");
        }
        for (uint64_t i = 0; i < l->rq_count; i++) {
            l->rq[i].m = (int32_t)ldl_le_p(raw + i * CONVACCEL_RESCALE_SIZE);
            l->rq[i].s = (int32_t)ldl_le_p(raw + i * CONVACCEL_RESCALE_SIZE + 4);
            if (l->rq[i].m < 0 ||
                !cva_in_range(l->rq[i].s, CONVACCEL_RESCALE_SHIFT_MIN,
                              CONVACCEL_RESCALE_SHIFT_MAX)) {
                FAIL(CONVACCEL_ERR_DMA, "rescale record %" PRIu64 " (M %d, S %d) "
                     "has S outside 1..62 or M < 0", i, l->rq[i].m, l->rq[i].s);
            }
        }
    }
    l->has_lut = l->lut_addr != 0;
    if (l->has_lut && !cva_dma_read(s, l->lut_addr, l->lut, sizeof(l->lut))) {
        FAIL(CONVACCEL_ERR_DMA, "the lookup table cannot be read");
    }
    return CONVACCEL_ERR_OK;
}

#undef FAIL

/*
 * Runs of a view: its elements in packed NCHW order come in runs of
 * run_elems consecutive elements that are consecutive in memory too.
 */
static uint64_t view_run(const View2 *v)
{
    uint64_t run = 1;

    for (int a = AXES - 1; a >= 0; a--) {
        if (v->dim[a] > 1 && v->stride[a] != run) {
            break;
        }
        run *= v->dim[a];
    }
    return run;
}

/* Element offset (in elements from addr) of packed element index i. */
static uint64_t view_offset(const View2 *v, uint64_t i)
{
    uint64_t off = 0;

    for (int a = AXES - 1; a >= 0; a--) {
        off += (i % v->dim[a]) * v->stride[a];
        i /= v->dim[a];
    }
    return off;
}

/* An input view as a packed tensor: in place, or gathered into a copy. */
typedef struct Input {
    DmaView raw;            /* the view's extent */
    void *packed;           /* raw.ptr, or the gathered copy */
    bool copied;
} Input;

static uint32_t input_get(ConvAccelState *s, const View2 *v, Input *in)
{
    uint32_t err = cva_dma_view(s, v->addr, v->extent, &in->raw);
    uint64_t run, bytes = v->elems * v->esize;

    if (err) {
        return err;
    }
    if (v->packed) {
        in->packed = in->raw.ptr;
        return CONVACCEL_ERR_OK;
    }
    in->packed = g_try_malloc(bytes);
    if (!in->packed) {
        return CONVACCEL_ERR_NO_MEMORY;
    }
    in->copied = true;
    run = view_run(v);
    for (uint64_t i = 0; i < v->elems; i += run) {
        memcpy((uint8_t *)in->packed + i * v->esize,
               (uint8_t *)in->raw.ptr + view_offset(v, i) * v->esize,
               run * v->esize);
    }
    return CONVACCEL_ERR_OK;
}

static void input_put(ConvAccelState *s, Input *in)
{
    if (in->copied) {
        g_free(in->packed);
    }
    in->packed = NULL;
    in->copied = false;
    if (in->raw.ptr) {
        cva_dma_view_release(s, &in->raw);
    }
}

/* Write the packed output into its strided view, run by run; false on a
 * DMA failure or a reset. */
static bool output_put(ConvAccelState *s, uint32_t gen, const View2 *v,
                       const uint8_t *buf)
{
    uint64_t run = view_run(v), batch = 0;
    uint64_t run_bytes = run * v->esize;
    bool ok = true;

    if (!cva_dma_range_ok(s, v->addr, v->extent, true) || !cva_dma_begin(s, gen)) {
        return false;
    }
    for (uint64_t i = 0; i < v->elems && ok; i += run) {
        uint64_t addr = v->addr + view_offset(v, i) * v->esize;

        ok = address_space_write(s->as, addr, MEMTXATTRS_UNSPECIFIED,
                                 buf + i * v->esize, run_bytes) == MEMTX_OK;
        batch += run_bytes + 64;
        if (batch >= (1 << 20) && i + run < v->elems) {
            /* let a reset in between batches */
            batch = 0;
            cva_dma_end(s);
            if (!cva_dma_begin(s, gen)) {
                return false;
            }
        }
    }
    cva_dma_end(s);
    return ok;
}

static struct cvc_conv to_conv(const Layer2 *l, const struct cvc_ctl *ctl,
                               uint32_t act)
{
    const CvaGeom *g = &l->g;

    return (struct cvc_conv) {
        .ctl = ctl,
        .n = g->n, .c_in = g->c_in, .h_in = g->h_in, .w_in = g->w_in,
        .c_out = g->c_out, .h_out = g->h_out, .w_out = g->w_out,
        .kh = g->kh, .kw = g->kw, .stride_h = g->stride_h,
        .stride_w = g->stride_w, .dil_h = g->dil_h, .dil_w = g->dil_w,
        .pad_top = g->pad_top, .pad_left = g->pad_left, .groups = g->groups,
        .act = act,
    };
}

static struct cvc_pool to_pool(const Layer2 *l, const struct cvc_ctl *ctl,
                               uint32_t act)
{
    const CvaGeom *g = &l->g;

    return (struct cvc_pool) {
        .ctl = ctl,
        .n = g->n, .c = g->c_in, .h_in = g->h_in, .w_in = g->w_in,
        .h_out = g->h_out, .w_out = g->w_out, .kh = g->kh, .kw = g->kw,
        .stride_h = g->stride_h, .stride_w = g->stride_w,
        .pad_top = g->pad_top, .pad_left = g->pad_left, .act = act,
    };
}

/* Compute one layer from packed inputs into the packed output. */
static int compute(const Layer2 *l, const void *x, const void *x1,
                   const void *w, const void *b, void *out,
                   const struct cvc_ctl *ctl)
{
    const CvaGeom *g = &l->g;
    bool bcast = l->flags & CONVACCEL_LAYER2_FLAG_BCAST;
    CvaQuant q = {
        .zp_in0 = l->zp_in0, .zp_in1 = l->zp_in1, .zp_out = l->zp_out,
        .act_min = l->act_min, .act_max = l->act_max, .rq = l->rq,
        .lut = l->has_lut ? l->lut : NULL, .qscale = l->qscale,
    };
    /* ReLU and ReLU6 fuse into the compute library's kernels */
    uint32_t fused = l->act <= CONVACCEL_LAYER_ACT_RELU6 ? l->act : 0;
    /* the compute library's int8 side: zp_in is in0's, records {M, S} */
    struct cvc_quant cq = {
        .zp_in = l->zp_in0, .zp_out = l->zp_out, .act_min = l->act_min,
        .act_max = l->act_max, .requant = (const int32_t *)l->rq,
        .lut = l->has_lut ? l->lut : NULL,
    };
    struct cvc_fc fp = { .n = g->n, .c_in = g->c_in, .c_out = g->c_out, .ctl = ctl };
    struct cvc_conv cp;
    struct cvc_pool pp;

    if (l->op == CONVACCEL_LAYER_OP_QUANTIZE) {
        return cva_quantize(g, &q, x, out, ctl);
    }
    if (l->op == CONVACCEL_LAYER_OP_DEQUANTIZE) {
        return cva_dequantize(g, &q, x, out, ctl);
    }
    if (l->s8) {
        switch (l->op) {
        case CONVACCEL_LAYER_OP_CONV:
            cp = to_conv(l, ctl, 0);
            return cvc_conv2d_s8(&cp, &cq, x, w, b, out);
        case CONVACCEL_LAYER_OP_FC:
            return cvc_fc_s8(&fp, &cq, x, w, b, out);
        case CONVACCEL_LAYER_OP_MAXPOOL:
        case CONVACCEL_LAYER_OP_AVGPOOL:
            return cva_pool_s8(g, max_pool(l), &q, x, out, ctl);
        case CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL:
        case CONVACCEL_LAYER_OP_GLOBAL_AVGPOOL: {
            CvaGeom gg = *g;

            gg.kh = g->h_in;
            gg.kw = g->w_in;
            return cva_pool_s8(&gg, max_pool(l), &q, x, out, ctl);
        }
        case CONVACCEL_LAYER_OP_ADD:
            return cva_add_s8(g, &q, x, x1, out, ctl);
        case CONVACCEL_LAYER_OP_MUL:
            return cva_mul_s8(g, bcast, &q, x, x1, out, ctl);
        case CONVACCEL_LAYER_OP_SCALE_SHIFT:
            return cva_scale_shift_s8(g, &q, x, w, b, out, ctl);
        default:
            return cva_act_s8(g, &q, x, out, ctl);
        }
    }
    switch (l->op) {
    case CONVACCEL_LAYER_OP_CONV:
        cp = to_conv(l, ctl, fused);
        return cvc_conv2d(&cp, x, w, b, out);
    case CONVACCEL_LAYER_OP_MAXPOOL:
        pp = to_pool(l, ctl, fused);
        return cvc_maxpool2d(&pp, x, out);
    case CONVACCEL_LAYER_OP_AVGPOOL:
        pp = to_pool(l, ctl, fused);
        return cvc_avgpool2d(&pp, x, out);
    case CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL:
    case CONVACCEL_LAYER_OP_GLOBAL_AVGPOOL:
        return cva_global_pool_f32(g, max_pool(l), x, out, ctl);
    case CONVACCEL_LAYER_OP_FC:
        return cvc_fc(&fp, x, w, b, out);   /* its activation: finish_act() */
    case CONVACCEL_LAYER_OP_ADD:
        return cva_add_f32(g, x, x1, out, ctl);
    case CONVACCEL_LAYER_OP_MUL:
        return cva_mul_f32(g, bcast, x, x1, out, ctl);
    case CONVACCEL_LAYER_OP_SCALE_SHIFT:
        return cva_scale_shift_f32(g, x, w, b, out, ctl);
    default:    /* ACT: a copy, then the activation */
        memcpy(out, x, l->in0.elems * 4);
        return CVC_OK;
    }
}

/* The activation the compute kernel did not fuse (float32 outputs). */
static void finish_act(const Layer2 *l, float *out)
{
    bool fused = (l->op == CONVACCEL_LAYER_OP_CONV || l->op == CONVACCEL_LAYER_OP_MAXPOOL ||
                  l->op == CONVACCEL_LAYER_OP_AVGPOOL) &&
                 l->act <= CONVACCEL_LAYER_ACT_RELU6;
    CvaAct a = { .act = l->act, .alpha = l->alpha, .beta = l->beta };

    if (!fused && l->out.dtype == CONVACCEL_DTYPE_F32) {
        cva_act_f32(out, l->out.elems, &a);
    }
}

uint32_t cva_v2_run(ConvAccelState *s, uint32_t gen, const Layer2 *layers,
                    uint32_t index, JobCounters *c)
{
    const Layer2 *l = &layers[index];
    uint64_t out_bytes = l->out.elems * l->out.esize;
    uint64_t in_bytes = l->in0.elems * l->in0.esize +
                        (l->uses_in1 ? l->in1.elems * l->in1.esize : 0);
    uint64_t tables = l->rq_count * CONVACCEL_RESCALE_SIZE +
                      (l->has_lut ? CONVACCEL_LUT_SIZE : 0);
    ComputeCtl cc;
    Input in0 = { 0 }, in1 = { 0 };
    DmaView w = { 0 }, b = { 0 };
    const CvaRange reads[] = {
        { l->in0.addr, l->in0.extent },
        { l->in1.addr, l->uses_in1 ? l->in1.extent : 0 },
        { l->weight, l->w_bytes }, { l->bias, l->b_bytes },
    };
    OutBuf o = { .ptr = NULL };
    uint32_t err;
    void *out;
    int64_t t0;
    int ret;

    if (l->out.packed) {    /* in place when it can be (cva_out_get) */
        err = cva_out_get(s, gen, l->out.addr, out_bytes, reads,
                          ARRAY_SIZE(reads), &o);
    } else {                /* a strided view: packed here, then scattered */
        o.ptr = cva_scratch_out(s, out_bytes);
        err = o.ptr ? CONVACCEL_ERR_OK : CONVACCEL_ERR_NO_MEMORY;
    }
    out = o.ptr;

    cva_compute_ctl_init(&cc, s, gen);
    if (!err) {
        err = input_get(s, &l->in0, &in0);
    }
    if (!err && l->uses_in1) {
        err = input_get(s, &l->in1, &in1);
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
    ret = compute(l, in0.packed, in1.packed, w.ptr, b.ptr, out, &cc.ctl);
    if (ret == CVC_OK) {
        finish_act(l, out);
    }
    c->host_ns += get_clock() - t0;
    if (ret == CVC_CANCELLED) {
        err = cva_cancel_status(s, gen);
    } else if (ret) {
        err = CONVACCEL_ERR_NO_MEMORY;
    } else if (l->out.packed ? !cva_out_put(s, gen, &o, true) :
                               !output_put(s, gen, &l->out, out)) {
        err = CONVACCEL_ERR_DMA;
    } else {
        ModelLayer m = {
            .op = l->op, .int8 = l->s8, .n = l->g.n, .c_in = l->g.c_in,
            .c_out = l->g.c_out, .h_in = l->g.h_in, .w_in = l->g.w_in,
            .h_out = l->g.h_out, .w_out = l->g.w_out, .kh = l->g.kh,
            .kw = l->g.kw, .groups = l->g.groups,
            .bytes = in_bytes + l->w_bytes + l->b_bytes + tables + out_bytes,
        };

        c->macs += l->macs;
        c->bytes_read += in_bytes + l->w_bytes + l->b_bytes + tables;
        c->bytes_written += out_bytes;
        c->cycles += cva_model_cycles(s, &m);
    }
out:
    cva_out_put(s, gen, &o, false);
    input_put(s, &in0);
    input_put(s, &in1);
    if (w.ptr) {
        cva_dma_view_release(s, &w);
    }
    if (b.ptr) {
        cva_dma_view_release(s, &b);
    }
    return err;
}
