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

/* Multiply-accumulates a convolution performs. */
uint64_t cvc_conv_macs(const struct cvc_conv *p);

/*
 * The process default of threads per call (0: as many as the process may
 * run on, sched_getaffinity; the default). A call's ctl->threads overrides it.
 */
void cvc_set_threads(int n);

/* Threads a call with ctl->threads = 0 uses now. */
int cvc_default_threads(void);

/* Bounds (bytes, multiply-accumulates) the header promises. */
#define CVC_COL_BYTES (4u << 20)
#define CVC_PLANE_BYTES (16u << 20)
#define CVC_TILE_WORK (256u << 20)

#endif
