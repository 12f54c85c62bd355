/*
 * convaccel compute kernels: the arithmetic of the convaccel device, as a
 * tiny C API with no QEMU dependency. QEMU's device model links it; the host
 * tests and benchmarks load it as a shared library (build/libconvaccel_compute.so).
 *
 * Layouts (docs/hardware.md, "Tensors"): activations NCHW, weights
 * [c_out][c_in / groups][kh][kw], bias [c_out]; float32, contiguous.
 *
 * The callers validate shapes first: these functions trust their arguments
 * (h_out, w_out must match the usual output-size formula, groups must divide
 * c_in and c_out, all sizes > 0).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef CONVACCEL_COMPUTE_H
#define CONVACCEL_COMPUTE_H

#include <stddef.h>
#include <stdint.h>

enum cvc_act {
    CVC_ACT_NONE = 0,
    CVC_ACT_RELU = 1,
    CVC_ACT_RELU6 = 2,
    /* float32 only, as in docs/hardware.md ("Activations"), NaN kept: */
    CVC_ACT_LEAKY_RELU = 3,     /* x >= 0 ? x : act_alpha * x */
    CVC_ACT_SIGMOID = 4,        /* 1 / (1 + exp(-x)) */
    CVC_ACT_HARD_SIGMOID = 5,   /* min(max(act_alpha * x + act_beta, 0), 1) */
    CVC_ACT_HARD_SWISH = 6,     /* x * hard-sigmoid(x) (alpha 1/6, beta 0.5) */
};

/* What the compute functions return. */
enum cvc_status {
    CVC_OK = 0,
    CVC_NO_MEMORY = -1,     /* scratch memory could not be allocated */
    CVC_CANCELLED = -2,     /* ctl->cancelled said so: the output is partial */
};

/*
 * Per-call controls, optional (a NULL ctl, or zeroed fields, mean defaults):
 * threads caps the threads one call uses (0: the process default, see
 * cvc_set_threads); cancelled, if set, is polled between tiles of at most
 * about CVC_TILE_WORK multiply-accumulates per thread, from any of the
 * call's threads, and a nonzero return stops the call soon.
 */
struct cvc_ctl {
    uint32_t threads;
    int (*cancelled)(void *opaque);
    void *opaque;
};

struct cvc_conv {
    uint32_t n, c_in, h_in, w_in;
    uint32_t c_out, h_out, w_out;
    uint32_t kh, kw;
    uint32_t stride_h, stride_w;
    uint32_t dil_h, dil_w;
    uint32_t pad_top, pad_left;   /* bottom/right padding follows from h_out, w_out */
    uint32_t groups;
    uint32_t act;                 /* enum cvc_act */
    const struct cvc_ctl *ctl;    /* may be NULL */
    float act_alpha, act_beta;    /* LeakyReLU, hard-sigmoid, hard-swish */
};

struct cvc_pool {
    uint32_t n, c, h_in, w_in;
    uint32_t h_out, w_out;
    uint32_t kh, kw;
    uint32_t stride_h, stride_w;
    uint32_t pad_top, pad_left;
    uint32_t act;                 /* enum cvc_act, applied after pooling */
    const struct cvc_ctl *ctl;    /* may be NULL */
};

/*
 * out = act(conv(in, w) + bias); bias may be NULL. Returns an enum cvc_status.
 * Scratch memory is bounded whatever the shape: CVC_COL_BYTES for im2col
 * tiles, CVC_PLANE_BYTES per thread for depthwise planes.
 */
int cvc_conv2d(const struct cvc_conv *p, const float *in, const float *w,
               const float *bias, float *out);

/* Max pooling; padded positions never win (they are -infinity). A NaN in a
 * window makes its output NaN, and the activations keep NaN (as PyTorch). */
int cvc_maxpool2d(const struct cvc_pool *p, const float *in, float *out);

/* Average pooling over kh * kw positions, padded positions counting as 0
 * (PyTorch's count_include_pad=True). Global pooling: kh = h_in, kw = w_in. */
int cvc_avgpool2d(const struct cvc_pool *p, const float *in, float *out);

/*
 * int8 (docs/hardware.md, "int8 arithmetic"). Per output channel c:
 *   acc = bias[c] + sum((x - zp_in) * w)   in int32, wrapping (two's complement)
 *   y = clamp(rescale(acc, M[c], S[c]) + zp_out, act_min, act_max)
 *   y = lut[y + 128]                       if lut is not NULL
 * rescale(v, M, S) = (int64(v) * M + 2^(S-1)) >> S (arithmetic shift).
 * Results are bit-exact, whatever the ISA path (cvc_set_isa) or threads.
 * The callers validate: zero points in -128..127, act_min <= act_max in
 * -128..127, M in 0..2^31-1, S in 1..62.
 */
struct cvc_quant {
    int32_t zp_in, zp_out;
    int32_t act_min, act_max;
    const int32_t *requant;       /* c_out records {M, S}: requant[2c], requant[2c+1] */
    const int8_t *lut;            /* 256 entries, or NULL */
};

/*
 * int8 convolution: in NCHW int8, w [c_out][c_in / groups][kh][kw] int8,
 * bias int32 [c_out] (or NULL: 0), out NCHW int8. p->act must be 0 (int8
 * activations are the clamp and the lut). Returns an enum cvc_status.
 * Scratch: im2col tiles of at most CVC_COL_BYTES, int32 accumulators of at
 * most CVC_COL_BYTES, depthwise planes of CVC_PLANE_BYTES per thread, and
 * the weights repacked once per call (at most 2 bytes per weight, rows
 * padded to a multiple of 4).
 */
int cvc_conv2d_s8(const struct cvc_conv *p, const struct cvc_quant *q,
                  const int8_t *in, const int8_t *w, const int32_t *bias,
                  int8_t *out);

/* A fully connected layer over a batch: in (n, c_in), w [c_out][c_in], out (n, c_out). */
struct cvc_fc {
    uint32_t n, c_in, c_out;
    uint32_t act;                 /* enum cvc_act (float32); 0 for int8 */
    float act_alpha, act_beta;
    const struct cvc_ctl *ctl;    /* may be NULL */
};

/* out = act(in * w^T + bias), one GEMM for the batch; bias may be NULL. */
int cvc_fc(const struct cvc_fc *p, const float *in, const float *w,
           const float *bias, float *out);

/* The int8 FC: the int8 CONV's arithmetic (above) with h = w = 1. */
int cvc_fc_s8(const struct cvc_fc *p, const struct cvc_quant *q,
              const int8_t *in, const int8_t *w, const int32_t *bias,
              int8_t *out);

/*
 * QUANTIZE of n float32 values (docs/hardware.md): out = clamp(rint(x /
 * qscale) + zp_out, act_min, act_max), rint rounding half to even, NaN to
 * zp_out, then q->lut if set (q->requant unused). Single-threaded: a
 * caller polls for cancellation between calls.
 */
void cvc_quantize_s8(const float *x, size_t n, float qscale,
                     const struct cvc_quant *q, int8_t *out);

/*
 * The int8 kernels' instruction set, picked at run time: the best the CPU
 * has (AVX-512 VNNI vpdpbusd, else AVX2 vpmaddwd, else portable C), at most
 * what the environment variable CVC_ISA says (portable, avx2, avx512vnni),
 * at most what cvc_set_isa() says. All give identical results.
 */
enum cvc_isa {
    CVC_ISA_AUTO = 0,
    CVC_ISA_PORTABLE = 1,
    CVC_ISA_AVX2 = 2,
    CVC_ISA_AVX512_VNNI = 3,
};

/* Cap the ISA (CVC_ISA_AUTO: no cap); returns the one now in use. */
int cvc_set_isa(int isa);

/* The ISA the int8 kernels use now. */
int cvc_isa(void);

/* Multiply-accumulates a convolution performs. */
uint64_t cvc_conv_macs(const struct cvc_conv *p);

/*
 * The process default of threads per call (0: as many as the process may
 * run on, sched_getaffinity; the default). A call's ctl->threads overrides it.
 */
void cvc_set_threads(int n);

/* Threads a call with ctl->threads = 0 uses now. */
int cvc_default_threads(void);

/*
 * The float32 GEMMs' BLAS kernels: OpenBLAS's name for them ("SkylakeX",
 * "Haswell", "Zen", ...), which it picks once, when it loads, by CPU
 * detection or as $OPENBLAS_CORETYPE says.
 */
const char *cvc_blas_core(void);

/*
 * NULL when those kernels suit this CPU or $OPENBLAS_CORETYPE chose them.
 * Otherwise OpenBLAS's detection fell back to pre-AVX2 kernels (Prescott on
 * a CPU model it does not know) on a CPU with AVX2 and FMA: the core to
 * set in OPENBLAS_CORETYPE before the process starts ("SkylakeX" with
 * AVX-512, else "Haswell"). The float32 GEMMs run 2-3x slower until then.
 */
const char *cvc_blas_better_core(void);

/* Bounds (bytes, multiply-accumulates) the header promises. */
#define CVC_COL_BYTES (4u << 20)
#define CVC_PLANE_BYTES (16u << 20)
#define CVC_TILE_WORK (256u << 20)

#endif
