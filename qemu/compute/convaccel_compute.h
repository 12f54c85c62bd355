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

struct cvc_conv {
    uint32_t n, c_in, h_in, w_in;
    uint32_t c_out, h_out, w_out;
    uint32_t kh, kw;
    uint32_t stride_h, stride_w;
    uint32_t dil_h, dil_w;
    uint32_t pad_top, pad_left;   /* bottom/right padding follows from h_out, w_out */
    uint32_t groups;
    uint32_t act;                 /* enum cvc_act */
};

struct cvc_pool {
    uint32_t n, c, h_in, w_in;
    uint32_t h_out, w_out;
    uint32_t kh, kw;
    uint32_t stride_h, stride_w;
    uint32_t pad_top, pad_left;
    uint32_t act;                 /* enum cvc_act, applied after pooling */
};

/* out = act(conv(in, w) + bias); bias may be NULL. 0 on success, -1 on ENOMEM. */
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

/* Worker threads the kernels may use (0: all host cores, the default). */
void cvc_set_threads(int n);

#endif
