/*
 * convaccel: what the job engine's files share (convaccel-job.c runs the
 * queue and version 1 layers, convaccel-v2.c parses, checks and runs v2
 * layers, convaccel-ops.c holds the v2 compute kernels).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_CONVACCEL_JOB_H
#define HW_CONVACCEL_JOB_H

#include "convaccel.h"
#include "convaccel_compute.h"
#include "convaccel-ops.h"

typedef ConvAccelCounters JobCounters;

/* Not statuses: the job was abandoned (reset, unrealize), or paused (VM stop). */
#define ERR_ABANDONED UINT32_MAX
#define ERR_PAUSED (UINT32_MAX - 1)

/* What became of a run of run_job(). */
typedef enum JobEnd {
    JOB_REPORT,         /* finished: report it */
    JOB_ABANDONED,      /* reset or unrealize: nothing reports */
    JOB_PAUSED,         /* VM stop: s->progress and the queue say where */
} JobEnd;

/*
 * Host memory of a layer beyond guest RAM: the output bounce buffer plus
 * copies of inputs that are not contiguous in host memory, or that are
 * strided views gathered into packed tensors (docs/hardware.md, "Limits of
 * the emulator"); compute scratch comes on top, bounded by the compute
 * library (CVC_COL_BYTES, CVC_PLANE_BYTES per thread).
 */
#define MAX_HOST_BYTES ((uint64_t)CONVACCEL_MAX_HOST_MB << 20)

/* The largest tensor (and view extent), bytes. */
#define MAX_TENSOR_BYTES ((uint64_t)CONVACCEL_MAX_TENSOR_MB_VALUE << 20)

/* The most work (MACs, pooling taps, elements) one job may ask for. */
#define MAX_JOB_WORK ((uint64_t)CONVACCEL_MAX_JOB_GMACS_VALUE << 30)

/* The compute library's view of one job: it stops when this says so. */
typedef struct ComputeCtl {
    struct cvc_ctl ctl;
    ConvAccelState *s;
    uint32_t gen;
} ComputeCtl;

void cva_compute_ctl_init(ComputeCtl *cc, ConvAccelState *s, uint32_t gen);
/* After CVC_CANCELLED: ERR_ABANDONED or ERR_PAUSED. */
uint32_t cva_cancel_status(ConvAccelState *s, uint32_t gen);

bool cva_in_range(uint32_t v, uint32_t lo, uint32_t hi);
uint64_t cva_out_size(uint32_t in, uint32_t pad_a, uint32_t pad_b,
                      uint32_t k, uint32_t stride, uint32_t dil);
/*
 * The geometry checks both descriptor versions share; 0 or a
 * CONVACCEL_ERR_* code (logged as a guest error for layer index).
 * cva_check_sizes: every size 1..its limit. cva_check_window: the kernel,
 * stride, dilation, padding and groups of a convolution (conv) or pooling
 * window, and that the output size follows from them.
 */
uint32_t cva_check_sizes(const CvaGeom *g, uint32_t index);
uint32_t cva_check_window(const CvaGeom *g, uint32_t pad_bottom, uint32_t pad_right,
                          bool conv, uint32_t index);

bool cva_dma_range_ok(ConvAccelState *s, uint64_t addr, uint64_t len,
                      bool is_write);
bool cva_dma_read(ConvAccelState *s, uint64_t addr, void *buf, uint64_t len);
bool cva_dma_write(ConvAccelState *s, uint32_t gen, uint64_t addr,
                   const void *buf, uint64_t len);
/*
 * A batch of guest-memory writes (address_space_write) between begin and
 * end: a reset waits for it; begin fails if a reset happened since gen.
 */
bool cva_dma_begin(ConvAccelState *s, uint32_t gen);
void cva_dma_end(ConvAccelState *s);
bool cva_dma_contiguous(ConvAccelState *s, uint64_t addr, uint64_t len);

/*
 * A tensor the device reads: guest RAM mapped in place when it is one
 * contiguous host range (no copy), else a copy.
 */
typedef struct DmaView {
    void *ptr;
    hwaddr len;
    bool mapped;
} DmaView;

uint32_t cva_dma_view(ConvAccelState *s, uint64_t addr, uint64_t len,
                      DmaView *v);
void cva_dma_view_release(ConvAccelState *s, DmaView *v);

/* The output bounce buffer, kept between layers (only the worker uses it). */
void *cva_scratch_out(ConvAccelState *s, uint64_t bytes);

/*
 * A layer's output. When it is one contiguous range of guest RAM that
 * overlaps none of the layer's inputs, the compute writes guest RAM in
 * place (no bounce copy), inside one cva_dma_begin/end: a reset then waits
 * for the compute to see its cancellation (within a tile). Otherwise it is
 * the bounce buffer, written to guest RAM by cva_out_put.
 */
typedef struct OutBuf {
    void *ptr;
    uint64_t addr, len;
    bool mapped;
} OutBuf;

/* A range the layer reads, for the overlap check. */
typedef struct CvaRange {
    uint64_t addr, len;
} CvaRange;

uint32_t cva_out_get(ConvAccelState *s, uint32_t gen, uint64_t addr,
                     uint64_t len, const CvaRange *reads, unsigned n_reads,
                     OutBuf *o);
/* Ends the output: with write, the bounce buffer goes to guest RAM (false
 * on a DMA failure or a reset); in place, the mapping ends. */
bool cva_out_put(ConvAccelState *s, uint32_t gen, OutBuf *o, bool write);

/* The cost model (docs/hardware.md), with the device's model-* properties. */
typedef struct ModelLayer {
    uint32_t op;
    bool int8;
    uint64_t n, c_in, c_out, h_in, w_in, h_out, w_out, kh, kw, groups;
    uint64_t bytes;         /* read and written */
} ModelLayer;

uint64_t cva_model_cycles(ConvAccelState *s, const ModelLayer *m);

/* Per-layer log of a check failure. */
#define CVA_FAIL(index, code, ...) do { \
        g_autofree char *why_ = g_strdup_printf(__VA_ARGS__); \
        qemu_log_mask(LOG_GUEST_ERROR, "convaccel: layer %u: %s: %s\n", \
                      (index), cva_err_name(code), why_); \
        return (code); \
    } while (0)

const char *cva_err_name(uint32_t code);

/* convaccel-v2.c: version 2 layer descriptors. */
typedef struct Layer2 Layer2;
Layer2 *cva_v2_layers_new(uint32_t count);
void cva_v2_layers_free(Layer2 *layers, uint32_t count);
/* Parse and check layer index of the job (its descriptor at d); reads its
 * rescale records and lookup table. */
uint32_t cva_v2_check(ConvAccelState *s, Layer2 *layers, uint32_t index,
                      const uint8_t *d, uint64_t *work);
uint32_t cva_v2_run(ConvAccelState *s, uint32_t gen, const Layer2 *layers,
                    uint32_t index, JobCounters *c);

#endif
