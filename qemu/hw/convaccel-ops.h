/*
 * convaccel: the version 2 compute kernels the compute library does not
 * have (convaccel-ops.c): activations, elementwise ops,
 * int8 arithmetic (rescale, pooling, elementwise), QUANTIZE and
 * DEQUANTIZE. They work on packed NCHW tensors in host memory; the caller
 * (convaccel-v2.c) gathers views into them and validates every shape.
 * Convolutions (float32 and int8) and FC are the compute library's
 * (cvc_conv2d, cvc_conv2d_s8, cvc_fc, cvc_fc_s8), as are the float32
 * windowed pools.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_CONVACCEL_OPS_H
#define HW_CONVACCEL_OPS_H

#include "convaccel_compute.h"
#include "convaccel_regs.h"

/* A layer's geometry, as its descriptor gives it. */
typedef struct CvaGeom {
    uint32_t n, c_in, h_in, w_in, c_out, h_out, w_out, groups;
    uint32_t kh, kw, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
} CvaGeom;

/* A float32 activation (CONVACCEL_LAYER_ACT_*) and its parameters. */
typedef struct CvaAct {
    uint32_t act;
    float alpha, beta;
} CvaAct;

/* An int8 rescale record: multiplier 0..2^31-1, shift 1..62. */
typedef struct CvaRescale {
    int32_t m, s;
} CvaRescale;

/* The int8 side of a layer: zero points, output clamp, rescale, table. */
typedef struct CvaQuant {
    int32_t zp_in0, zp_in1, zp_out, act_min, act_max;
    const CvaRescale *rq;
    const int8_t *lut;      /* NULL: none */
    float qscale;
} CvaQuant;

/* (v * M + 2^(S-1)) >> S in 64-bit two's complement, shift arithmetic. */
static inline int64_t cva_rescale(int64_t v, const CvaRescale *r)
{
    uint64_t p = (uint64_t)v * (uint64_t)(int64_t)r->m +
                 ((uint64_t)1 << (r->s - 1));

    return (int64_t)p >> r->s;
}

/* clamp(r + zp_out, act_min, act_max), then the lookup table. */
static inline int8_t cva_out8(int64_t r, const CvaQuant *q)
{
    int64_t y = (int64_t)((uint64_t)r + (uint64_t)(int64_t)q->zp_out);

    y = y < q->act_min ? q->act_min : y > q->act_max ? q->act_max : y;
    return q->lut ? q->lut[y + 128] : (int8_t)y;
}

/* Elements of a packed (n, c, h, w) tensor. */
static inline uint64_t cva_elems(uint32_t n, uint32_t c, uint32_t h, uint32_t w)
{
    return (uint64_t)n * c * h * w;
}

void cva_act_f32(float *x, uint64_t count, const CvaAct *a);

/*
 * Each returns CVC_OK, or CVC_CANCELLED when ctl->cancelled said so (the
 * output is then partial), or CVC_NO_MEMORY.
 * Elementwise ops: c channels of hw elements per image, n images.
 */
int cva_add_f32(const CvaGeom *g, const float *a, const float *b, float *out,
                const struct cvc_ctl *ctl);
int cva_mul_f32(const CvaGeom *g, bool bcast, const float *a, const float *b,
                float *out, const struct cvc_ctl *ctl);
int cva_scale_shift_f32(const CvaGeom *g, const float *x, const float *scale,
                        const float *shift, float *out, const struct cvc_ctl *ctl);
int cva_global_pool_f32(const CvaGeom *g, bool max, const float *x, float *out,
                        const struct cvc_ctl *ctl);
int cva_quantize(const CvaGeom *g, const CvaQuant *q, const float *x,
                 int8_t *out, const struct cvc_ctl *ctl);
int cva_dequantize(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
                   float *out, const struct cvc_ctl *ctl);

/* MAXPOOL/AVGPOOL over kh x kw windows; global pools: kh = h_in, kw = w_in,
 * stride 1, no padding, one output per plane. */
int cva_pool_s8(const CvaGeom *g, bool max, const CvaQuant *q, const int8_t *x,
                int8_t *out, const struct cvc_ctl *ctl);
int cva_add_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *a,
               const int8_t *b, int8_t *out, const struct cvc_ctl *ctl);
int cva_mul_s8(const CvaGeom *g, bool bcast, const CvaQuant *q, const int8_t *a,
               const int8_t *b, int8_t *out, const struct cvc_ctl *ctl);
int cva_scale_shift_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
                       const int8_t *w, const int32_t *bias, int8_t *out,
                       const struct cvc_ctl *ctl);
int cva_act_s8(const CvaGeom *g, const CvaQuant *q, const int8_t *x,
               int8_t *out, const struct cvc_ctl *ctl);

#endif
