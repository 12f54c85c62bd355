/*
 * convaccel: version 2 compute kernels (see convaccel-ops.h): portable
 * loops, single-threaded, polling for cancellation at least every
 * POLL_WORK multiply-accumulates or elements. The int8 arithmetic is
 * exactly docs/hardware.md's "int8 arithmetic": int32 accumulators that
 * wrap, rescale in 64 bits, round half up, arithmetic shift.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include <math.h>
#include "convaccel-ops.h"

/* Work between two polls of ctl->cancelled: well below CVC_TILE_WORK. */
#define POLL_WORK (1u << 22)

typedef struct Poll {
    const struct cvc_ctl *ctl;
    uint64_t work;
} Poll;

/* Count work done; true when the call must stop. */
static bool poll_stop(Poll *p, uint64_t work)
{
    p->work += work;
    if (p->work < POLL_WORK) {
        return false;
    }
    p->work = 0;
    return p->ctl && p->ctl->cancelled && p->ctl->cancelled(p->ctl->opaque);
}

/* NaN-propagating max and min (fmaxf would drop the NaN). */
static inline float maxnan(float x, float lo)
{
    return x < lo ? lo : x;
}

static inline float minnan(float x, float hi)
{
    return x > hi ? hi : x;
}

static inline float act1(float x, const CvaAct *a)
{
    switch (a->act) {
    case CONVACCEL_LAYER_ACT_RELU:
        return maxnan(x, 0.0f);
    case CONVACCEL_LAYER_ACT_RELU6:
        return minnan(maxnan(x, 0.0f), 6.0f);
    case CONVACCEL_LAYER_ACT_LEAKY:
        return x >= 0.0f ? x : a->alpha * x;
    case CONVACCEL_LAYER_ACT_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    case CONVACCEL_LAYER_ACT_HSIGMOID:
        return minnan(maxnan(a->alpha * x + a->beta, 0.0f), 1.0f);
    case CONVACCEL_LAYER_ACT_HSWISH:
        return x * minnan(maxnan(a->alpha * x + a->beta, 0.0f), 1.0f);
    default:
        return x;
    }
}

void cva_act_f32(float *x, uint64_t count, const CvaAct *a)
{
    uint64_t i;

    if (a->act == CONVACCEL_LAYER_ACT_NONE) {
        return;
    }
    for (i = 0; i < count; i++) {
        x[i] = act1(x[i], a);
    }
}

/* Loop over the planes of an (n, c, h, w) tensor, polling between them. */
#define FOR_PLANES(g, b, ch, hw, p)                                        \
    for (uint64_t hw = (uint64_t)(g)->h_in * (g)->w_in, b = 0; b < (g)->n; b++) \
        for (uint32_t ch = 0; ch < (g)->c_in; ch++)                        \
            if (poll_stop(&(p), hw)) {                                     \
                return CVC_CANCELLED;                                      \
            } else

int cva_add_f32(const CvaGeom *g, const float *a, const float *b, float *out,
                const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        for (uint64_t i = o; i < o + hw; i++) {
            out[i] = a[i] + b[i];
        }
    }
    return CVC_OK;
}

int cva_mul_f32(const CvaGeom *g, bool bcast, const float *a, const float *b,
                float *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        if (bcast) {
            float v = b[bi * g->c_in + ch];

            for (uint64_t i = o; i < o + hw; i++) {
                out[i] = a[i] * v;
            }
        } else {
            for (uint64_t i = o; i < o + hw; i++) {
                out[i] = a[i] * b[i];
            }
        }
    }
    return CVC_OK;
}

int cva_scale_shift_f32(const CvaGeom *g, const float *x, const float *scale,
                        const float *shift, float *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;
        float sc = scale[ch], sh = shift[ch];

        for (uint64_t i = o; i < o + hw; i++) {
            float v = x[i] * sc;    /* rounded: no fused multiply-add */

            out[i] = v + sh;
        }
    }
    return CVC_OK;
}

int cva_global_pool_f32(const CvaGeom *g, bool max, const float *x, float *out,
                        const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        const float *s = x + (bi * g->c_in + ch) * hw;

        if (max) {
            float m = s[0];

            for (uint64_t i = 1; i < hw; i++) {
                if (!(s[i] <= m)) {     /* a larger value, or NaN, wins */
                    m = isnan(m) ? m : s[i];
                }
            }
            out[bi * g->c_in + ch] = m;
        } else {
            double sum = 0;

            for (uint64_t i = 0; i < hw; i++) {
                sum += s[i];
            }
            out[bi * g->c_in + ch] = (float)(sum / hw);
        }
    }
    return CVC_OK;
}

int cva_quantize(const CvaGeom *g, const CvaQuant *q, const float *x,
                 int8_t *out, const struct cvc_ctl *ctl)
{
    struct cvc_quant cq = {
        .zp_out = q->zp_out, .act_min = q->act_min, .act_max = q->act_max,
        .lut = q->lut,
    };
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        cvc_quantize_s8(x + o, hw, q->qscale, &cq, out + o);
    }
    return CVC_OK;
}

int cva_dequantize(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
                   float *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        for (uint64_t i = o; i < o + hw; i++) {
            out[i] = (float)(x[i] - q->zp_in0) * q->qscale;
        }
    }
    return CVC_OK;
}

int cva_pool_s8(const CvaGeom *g, bool max, const CvaQuant *q, const int8_t *x,
                int8_t *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    for (uint32_t b = 0; b < g->n; b++) {
        for (uint32_t c = 0; c < g->c_in; c++) {
            const int8_t *plane = x + (((uint64_t)b * g->c_in + c) * g->h_in) * g->w_in;
            int8_t *o = out + (((uint64_t)b * g->c_in + c) * g->h_out) * g->w_out;

            if (poll_stop(&p, (uint64_t)g->h_out * g->w_out * g->kh * g->kw)) {
                return CVC_CANCELLED;
            }
            for (uint32_t oy = 0; oy < g->h_out; oy++) {
                int64_t y0 = (int64_t)oy * g->stride_h - g->pad_top;
                int64_t ya = MAX(y0, 0), yb = MIN(y0 + g->kh, (int64_t)g->h_in);

                for (uint32_t ox = 0; ox < g->w_out; ox++) {
                    int64_t x0 = (int64_t)ox * g->stride_w - g->pad_left;
                    int64_t xa = MAX(x0, 0), xb = MIN(x0 + g->kw, (int64_t)g->w_in);
                    int64_t acc = max ? -128 : 0;

                    for (int64_t iy = ya; iy < yb; iy++) {
                        const int8_t *row = plane + iy * g->w_in;

                        for (int64_t ix = xa; ix < xb; ix++) {
                            if (max) {
                                acc = MAX(acc, row[ix]);
                            } else {
                                acc += row[ix] - q->zp_in0;
                            }
                        }
                    }
                    o[(uint64_t)oy * g->w_out + ox] =
                        max ? cva_out8(acc - q->zp_in0, q) :
                              cva_out8(cva_rescale(acc, &q->rq[0]), q);
                }
            }
        }
    }
    return CVC_OK;
}

int cva_add_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *a,
               const int8_t *b, int8_t *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        for (uint64_t i = o; i < o + hw; i++) {
            int64_t va = cva_rescale((int64_t)(a[i] - q->zp_in0) << CONVACCEL_ADD_LEFT_SHIFT,
                                     &q->rq[0]);
            int64_t vb = cva_rescale((int64_t)(b[i] - q->zp_in1) << CONVACCEL_ADD_LEFT_SHIFT,
                                     &q->rq[1]);

            out[i] = cva_out8(cva_rescale((int64_t)((uint64_t)va + (uint64_t)vb),
                                          &q->rq[2]), q);
        }
    }
    return CVC_OK;
}

int cva_mul_s8(const CvaGeom *g, bool bcast, const CvaQuant *q, const int8_t *a,
               const int8_t *b, int8_t *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;
        int32_t vb = bcast ? b[bi * g->c_in + ch] - q->zp_in1 : 0;

        for (uint64_t i = o; i < o + hw; i++) {
            int32_t v = (a[i] - q->zp_in0) * (bcast ? vb : b[i] - q->zp_in1);

            out[i] = cva_out8(cva_rescale(v, &q->rq[0]), q);
        }
    }
    return CVC_OK;
}

int cva_scale_shift_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
                       const int8_t *w, const int32_t *bias, int8_t *out,
                       const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        for (uint64_t i = o; i < o + hw; i++) {
            uint32_t acc = (uint32_t)((x[i] - q->zp_in0) * w[ch]) + (uint32_t)bias[ch];

            out[i] = cva_out8(cva_rescale((int32_t)acc, &q->rq[ch]), q);
        }
    }
    return CVC_OK;
}

int cva_act_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
               int8_t *out, const struct cvc_ctl *ctl)
{
    Poll p = { ctl };

    FOR_PLANES(g, bi, ch, hw, p) {
        uint64_t o = (bi * g->c_in + ch) * hw;

        for (uint64_t i = o; i < o + hw; i++) {
            out[i] = cva_out8(cva_rescale(x[i] - q->zp_in0, &q->rq[0]), q);
        }
    }
    return CVC_OK;
}
