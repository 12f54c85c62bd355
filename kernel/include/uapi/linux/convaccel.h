/* SPDX-License-Identifier: (GPL-2.0-only WITH Linux-syscall-note) OR MIT */
/*
 * convaccel: user API of the convolution accelerator driver.
 *
 * This header is the single source of truth for C and for Python (pyaccel
 * parses it at import time). Rules: fixed-width types only, natural
 * alignment, explicit padding that must be zero (EINVAL otherwise), struct
 * sizes checked at compile time, ioctl numbers append-only.
 *
 * Model: an open file of /dev/convaccelN owns buffers (device memory that
 * userspace maps with mmap) and jobs. A job is a chain of layers whose
 * tensors are (buffer handle, byte offset) pairs; the driver checks every
 * reference before the device sees it. Jobs of one file run in order; jobs
 * of different files share the device fairly (round robin).
 *
 * mmap(): MAP_SHARED only, at a buffer's mmap_offset, for at most its
 * size. EINVAL for anything else (MAP_PRIVATE, an unknown buffer, an offset
 * inside a buffer, a mapping longer than the buffer); ENODEV after unbind.
 * When the device is unbound, its mappings are torn down: touching one
 * then raises SIGBUS.
 *
 * Structs grow (Documentation/driver-api/ioctl.rst): every ioctl argument
 * and every layer array element may be longer than this header's struct,
 * if the tail is zero (copy_struct_from_user: a nonzero tail is E2BIG),
 * or shorter, down to its first published size (the missing fields read
 * as 0). A struct's size travels in the ioctl number (_IOC_SIZE), so one
 * command accepts every size. What the driver and device can do is in
 * &struct convaccel_info (ops, activations, dtypes), not in an ABI number.
 *
 * Errors (errno) common to all ioctls:
 *   ENOTTY     unknown command or direction
 *   EFAULT     an argument pointer is not readable/writable
 *   EINVAL     a padding or reserved field, or a flag, is not zero; an
 *              argument shorter than its first published size
 *   E2BIG      an argument longer than this driver knows, with a nonzero tail
 *   ENODEV     the device was unbound while the file was open
 */
#ifndef _UAPI_LINUX_CONVACCEL_H
#define _UAPI_LINUX_CONVACCEL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * CONVACCEL_ABI_VERSION - version of this interface.
 *
 * Bumped on every incompatible change; userspace checks it against
 * &convaccel_info.abi_version and refuses to run on a mismatch.
 */
#define CONVACCEL_ABI_VERSION 4

/**
 * struct convaccel_info - what CONVACCEL_IOCTL_INFO returns
 * @abi_version: CONVACCEL_ABI_VERSION the driver was built with
 * @hw_id: the device's ID register
 * @hw_version: the device's VERSION register (major << 16 | minor)
 * @hw_caps: the device's CAPS register (see docs/hardware.md)
 * @instance: N of /dev/convaccelN
 * @queue_depth: jobs the device itself queues (the driver queues more)
 * @max_kernel: largest kernel side, stride and dilation of a layer
 * @max_pad: largest padding on any side
 * @max_channels: largest c_in and c_out
 * @max_dim: largest n, h and w
 * @max_layers: most layers in one job
 * @max_tensor_mb: largest tensor, in MiB
 * @max_buffer_mb: largest buffer CONVACCEL_IOCTL_BUFFER_CREATE makes, in MiB
 * @timeout_ms: default time budget of a job on the device (as set now)
 * @model_clock_mhz: clock of the cost model behind &convaccel_wait.cycles
 * @max_buffers: most buffers one open file may hold at once
 * @max_memory_mb: device memory of all buffers of all files, in MiB
 * @timeout_min_ms: shortest job budget; shorter requests are raised to it
 * @timeout_max_ms: longest job budget; longer requests are lowered to it
 * @max_job_gmacs: most work one job may hold, in 2^30 multiply-accumulates
 *	(pooling: taps); the device fails a job above it with TOO_LARGE
 * @reserved: zero
 * @irq_count: interrupts the driver has handled since probe
 * @ops: bit N set: CONVACCEL_OP_* N runs (in &struct convaccel_layer2;
 *	&struct convaccel_layer takes CONV, MAXPOOL and AVGPOOL)
 * @activations: bit N set: CONVACCEL_ACT_* N is available
 * @dtypes: bit N set: CONVACCEL_TENSOR_* N tensors are available
 * @layer2_size: sizeof(struct convaccel_layer2) the driver knows, or 0 if
 *	the device takes only &struct convaccel_layer
 */
struct convaccel_info {
	__u32 abi_version;
	__u32 hw_id;
	__u32 hw_version;
	__u32 hw_caps;
	__u32 instance;
	__u32 queue_depth;
	__u32 max_kernel;
	__u32 max_pad;
	__u32 max_channels;
	__u32 max_dim;
	__u32 max_layers;
	__u32 max_tensor_mb;
	__u32 max_buffer_mb;
	__u32 timeout_ms;
	__u32 model_clock_mhz;
	__u32 max_buffers;
	__u32 max_memory_mb;
	__u32 timeout_min_ms;
	__u32 timeout_max_ms;
	__u32 max_job_gmacs;
	__u32 reserved[2];
	__u64 irq_count;
	__u32 ops;
	__u32 activations;
	__u32 dtypes;
	__u32 layer2_size;
};

/**
 * struct convaccel_buffer_create - CONVACCEL_IOCTL_BUFFER_CREATE
 * @size: in: bytes (1 .. max_buffer_mb MiB); rounded up to pages
 * @flags: in: must be 0
 * @handle: out: the buffer's handle in this file (never 0)
 * @mmap_offset: out: the offset to pass to mmap() to map the buffer
 *
 * Errors: EINVAL (size 0, flags), E2BIG (size above max_buffer_mb),
 * ENOMEM (no device memory left, this file already holds max_buffers
 * buffers, or all buffers together would exceed max_memory_mb).
 */
struct convaccel_buffer_create {
	__u64 size;
	__u32 flags;
	__u32 handle;
	__u64 mmap_offset;
};

/**
 * struct convaccel_buffer_destroy - CONVACCEL_IOCTL_BUFFER_DESTROY
 * @handle: in: the buffer to destroy
 * @pad: must be 0
 *
 * The handle is gone at once; the memory lives on while a mapping or a
 * queued job still uses it. Errors: ENOENT (no such handle in this file).
 */
struct convaccel_buffer_destroy {
	__u32 handle;
	__u32 pad;
};

/**
 * struct convaccel_tensor - where a tensor lives: a buffer and an offset
 * @handle: a buffer handle of the submitting file
 * @pad: must be 0
 * @offset: byte offset in the buffer, a multiple of 4
 */
struct convaccel_tensor {
	__u32 handle;
	__u32 pad;
	__u64 offset;
};

/* Layer operations (&convaccel_layer.op; 4 and up in convaccel_layer2 only). */
#define CONVACCEL_OP_CONV		1	/* 2-D convolution, groups allowed */
#define CONVACCEL_OP_MAXPOOL		2
#define CONVACCEL_OP_AVGPOOL		3	/* padding counts as zeros */
#define CONVACCEL_OP_ADD		4	/* in0 + in1 */
#define CONVACCEL_OP_MUL		5	/* in0 * in1, or by (n, c, 1, 1) */
#define CONVACCEL_OP_SCALE_SHIFT	6	/* in0 * weight[c] + bias[c] */
#define CONVACCEL_OP_GLOBAL_AVGPOOL	7
#define CONVACCEL_OP_GLOBAL_MAXPOOL	8
#define CONVACCEL_OP_FC			9	/* fully connected over a batch */
#define CONVACCEL_OP_QUANTIZE		10	/* float32 -> int8 */
#define CONVACCEL_OP_DEQUANTIZE		11	/* int8 -> float32 */
#define CONVACCEL_OP_ACT		12	/* activation, or a copy */

/* Fused activations (&convaccel_layer.activation; 3 and up: layer2 only). */
#define CONVACCEL_ACT_NONE		0
#define CONVACCEL_ACT_RELU		1
#define CONVACCEL_ACT_RELU6		2
#define CONVACCEL_ACT_LEAKY_RELU	3	/* slope act_alpha */
#define CONVACCEL_ACT_SIGMOID		4
#define CONVACCEL_ACT_HARD_SIGMOID	5	/* act_alpha, act_beta */
#define CONVACCEL_ACT_HARD_SWISH	6	/* x * hard_sigmoid(x) */

/* Tensor data types (&convaccel_view.dtype). */
#define CONVACCEL_TENSOR_F32	0	/* float32 */
#define CONVACCEL_TENSOR_S8	1	/* int8 */

/* Layer flags (&convaccel_layer.flags). */
#define CONVACCEL_LAYER_BIAS	(1 << 0)	/* conv: add bias[c_out] */

/**
 * struct convaccel_layer - one layer of a job
 * @op: CONVACCEL_OP_*
 * @flags: CONVACCEL_LAYER_*
 * @activation: CONVACCEL_ACT_*
 * @pad: must be 0
 * @n: batch
 * @c_in: input channels
 * @h_in: input height
 * @w_in: input width
 * @c_out: output channels (pooling: = c_in)
 * @h_out: output height (must follow from the input, kernel and padding)
 * @w_out: output width
 * @groups: convolution groups (depthwise: = c_in = c_out); pooling: 1
 * @kh: kernel height
 * @kw: kernel width
 * @stride_h: vertical stride
 * @stride_w: horizontal stride
 * @dil_h: vertical dilation (pooling: 1)
 * @dil_w: horizontal dilation (pooling: 1)
 * @pad_top: zero padding above
 * @pad_bottom: zero padding below
 * @pad_left: zero padding on the left
 * @pad_right: zero padding on the right
 * @input: input tensor, float32 [n][c_in][h_in][w_in]
 * @weight: conv weights, float32 [c_out][c_in / groups][kh][kw]; pooling: zero
 * @bias: conv bias, float32 [c_out], with CONVACCEL_LAYER_BIAS; else zero
 * @output: output tensor, float32 [n][c_out][h_out][w_out]
 */
struct convaccel_layer {
	__u32 op;
	__u32 flags;
	__u32 activation;
	__u32 pad;
	__u32 n;
	__u32 c_in;
	__u32 h_in;
	__u32 w_in;
	__u32 c_out;
	__u32 h_out;
	__u32 w_out;
	__u32 groups;
	__u32 kh;
	__u32 kw;
	__u32 stride_h;
	__u32 stride_w;
	__u32 dil_h;
	__u32 dil_w;
	__u32 pad_top;
	__u32 pad_bottom;
	__u32 pad_left;
	__u32 pad_right;
	struct convaccel_tensor input;
	struct convaccel_tensor weight;
	struct convaccel_tensor bias;
	struct convaccel_tensor output;
};

/* Flags of &struct convaccel_layer2. */
#define CONVACCEL_LAYER2_BIAS	(1 << 0)	/* CONV, FC: add bias[c_out] */
#define CONVACCEL_LAYER2_BCAST	(1 << 1)	/* MUL: in1 is (n, c, 1, 1) */

/**
 * struct convaccel_view - a tensor operand: a buffer range with strides
 * @handle: a buffer handle of the submitting file
 * @dtype: CONVACCEL_TENSOR_*
 * @offset: byte offset of element (0, 0, 0, 0), aligned to the element size
 * @stride_n: elements between images
 * @stride_c: elements between channels
 * @stride_h: elements between rows
 * @stride_w: elements between columns (all four 0: packed NCHW)
 *
 * A channel slice of a larger tensor is a view at the slice's first
 * element with the larger tensor's strides: that is how concatenation and
 * split cost no copy. The driver checks the view's whole extent.
 */
struct convaccel_view {
	__u32 handle;
	__u32 dtype;
	__u64 offset;
	__u32 stride_n;
	__u32 stride_c;
	__u32 stride_h;
	__u32 stride_w;
};

/**
 * struct convaccel_layer2 - one layer of a job, hardware 2.0 (SUBMIT_LAYER2)
 * @op: CONVACCEL_OP_*
 * @flags: CONVACCEL_LAYER2_*
 * @activation: CONVACCEL_ACT_*, for float32 outputs (int8: 0, see act_min)
 * @act_alpha: LeakyReLU slope, hard-sigmoid/hard-swish alpha (float32 bits)
 * @act_beta: hard-sigmoid/hard-swish beta (float32 bits)
 * @n: batch
 * @c_in: input channels
 * @h_in: input height
 * @w_in: input width
 * @c_out: output channels
 * @h_out: output height
 * @w_out: output width
 * @groups: convolution groups; else 1
 * @kh: kernel height; 1 where the op has none
 * @kw: kernel width
 * @stride_h: vertical stride
 * @stride_w: horizontal stride
 * @dil_h: vertical dilation
 * @dil_w: horizontal dilation
 * @pad_top: zero padding above
 * @pad_bottom: zero padding below
 * @pad_left: zero padding on the left
 * @pad_right: zero padding on the right
 * @pad: must be 0
 * @in0: the input
 * @in1: ADD and MUL: the second input; else all 0
 * @out: the output
 * @weight: CONV/FC weights, SCALE_SHIFT scale (float32) or weight (int8)
 * @bias: with CONVACCEL_LAYER2_BIAS (CONV, FC) or for SCALE_SHIFT: float32
 *	(int8 layers: int32) per output channel; else 0
 * @requant: int8: the layer's rescale records (docs/hardware.md); else 0
 * @lut: int8: a 256-byte lookup table for the output, or 0
 * @zp_in0: int8 zero point of in0
 * @zp_in1: int8 zero point of in1
 * @zp_out: int8 zero point of out
 * @act_min: int8 output clamp, low
 * @act_max: int8 output clamp, high
 * @qscale: QUANTIZE, DEQUANTIZE: the int8 side's scale (float32 bits)
 *
 * Shapes, data types and the exact int8 arithmetic of each op are
 * docs/hardware.md's ("Version 2.0").
 */
struct convaccel_layer2 {
	__u32 op;
	__u32 flags;
	__u32 activation;
	__u32 act_alpha;
	__u32 act_beta;
	__u32 n;
	__u32 c_in;
	__u32 h_in;
	__u32 w_in;
	__u32 c_out;
	__u32 h_out;
	__u32 w_out;
	__u32 groups;
	__u32 kh;
	__u32 kw;
	__u32 stride_h;
	__u32 stride_w;
	__u32 dil_h;
	__u32 dil_w;
	__u32 pad_top;
	__u32 pad_bottom;
	__u32 pad_left;
	__u32 pad_right;
	__u32 pad;
	struct convaccel_view in0;
	struct convaccel_view in1;
	struct convaccel_view out;
	struct convaccel_tensor weight;
	struct convaccel_tensor bias;
	struct convaccel_tensor requant;
	struct convaccel_tensor lut;
	__s32 zp_in0;
	__s32 zp_in1;
	__s32 zp_out;
	__s32 act_min;
	__s32 act_max;
	__u32 qscale;
};

/* Flags of &struct convaccel_submit. */
#define CONVACCEL_SUBMIT_LAYER2	(1 << 0)	/* layers are struct convaccel_layer2 */

/**
 * struct convaccel_submit - CONVACCEL_IOCTL_SUBMIT
 * @layers: in: user pointer to @layer_count &struct convaccel_layer, or
 *	&struct convaccel_layer2 with CONVACCEL_SUBMIT_LAYER2
 * @layer_count: in: 1 .. max_layers
 * @layer_size: in: the size of one element of @layers as userspace knows
 *	it (a multiple of 8; longer than the driver's struct: the tail must be
 *	zero, else E2BIG)
 * @flags: in: CONVACCEL_SUBMIT_*
 * @timeout_ms: in: time budget on the device; 0: the driver's default.
 *	Clamped to &convaccel_info.timeout_min_ms .. timeout_max_ms.
 * @job_id: out: the job, for CONVACCEL_IOCTL_WAIT (never 0). Ids are
 *	allocated cyclically: a retired id is not reused soon.
 *
 * The driver checks each layer before the device sees the job: its
 * geometry (the output size must follow from the input, kernel, stride,
 * dilation and padding; every size within the device's limits) and each
 * tensor's whole extent against its buffer. Errors: EINVAL (counts, sizes,
 * shapes the device cannot run, misaligned offsets), ENOENT (a handle is
 * not this file's), EOPNOTSUPP (CONVACCEL_SUBMIT_LAYER2, an op, an
 * activation or a data type the device does not have: see INFO),
 * EOVERFLOW (a tensor runs past the end of its buffer), EBUSY (this file
 * has too many unfinished jobs), ENOMEM.
 */
struct convaccel_submit {
	__u64 layers;
	__u32 layer_count;
	__u32 layer_size;
	__u32 flags;
	__u32 timeout_ms;
	__u64 job_id;
};

/* Job status (&convaccel_wait.status). */
#define CONVACCEL_JOB_STATUS_OK		0	/* every layer ran */
#define CONVACCEL_JOB_STATUS_ERROR	1	/* device refused or failed it: see reason, layer */
#define CONVACCEL_JOB_STATUS_TIMEOUT	2	/* over its budget: the device was reset */
#define CONVACCEL_JOB_STATUS_RESET	3	/* lost to a reset it did not cause */

/* Device error reasons (&convaccel_wait.reason), as docs/hardware.md. */
#define CONVACCEL_REASON_NONE		0
#define CONVACCEL_REASON_MAGIC		1
#define CONVACCEL_REASON_LAYER_COUNT	2
#define CONVACCEL_REASON_RESERVED	3
#define CONVACCEL_REASON_OP		4
#define CONVACCEL_REASON_SHAPE		5
#define CONVACCEL_REASON_KERNEL		6
#define CONVACCEL_REASON_PAD		7
#define CONVACCEL_REASON_GROUPS		8
#define CONVACCEL_REASON_TOO_LARGE	9
#define CONVACCEL_REASON_DMA		10
#define CONVACCEL_REASON_INJECTED	11
#define CONVACCEL_REASON_NO_MEMORY	12

/**
 * struct convaccel_layer_stats - what one layer of a job cost
 * @device_ns: host nanoseconds the emulated device spent computing it
 * @cycles: modelled device cycles
 * @macs: multiply-accumulates
 * @bytes: bytes read and written
 */
struct convaccel_layer_stats {
	__u64 device_ns;
	__u64 cycles;
	__u64 macs;
	__u64 bytes;
};

/**
 * struct convaccel_wait - CONVACCEL_IOCTL_WAIT
 * @job_id: in: a job of this file
 * @timeout_ns: in: absolute CLOCK_MONOTONIC deadline; 0: do not wait
 * @status: out: CONVACCEL_JOB_STATUS_*
 * @reason: out: CONVACCEL_REASON_* for CONVACCEL_JOB_STATUS_ERROR
 * @layer: out: index of the failing layer, or 0xffffffff (the job itself)
 * @layers_done: out: layers that ran
 * @macs: out: multiply-accumulates done
 * @bytes_read: out: bytes the device read
 * @bytes_written: out: bytes the device wrote
 * @device_ns: out: host nanoseconds the emulated device spent computing
 * @cycles: out: modelled device cycles (docs/hardware.md, cost model)
 * @latency_ns: out: from submit to completion, as the driver saw it
 * @layer_stats: in: user pointer to @layer_stats_count &struct
 *	convaccel_layer_stats to fill (one per layer, in order), or 0
 * @layer_stats_count: in: room at @layer_stats, in entries
 * @layer_stats_size: in: sizeof(struct convaccel_layer_stats), or 0 with no
 *	@layer_stats
 *
 * Returns 0 when the job has ended (whatever its status); the job is then
 * retired and its id unknown. If the results cannot be written (EFAULT),
 * the job is not retired: WAIT again with a writable argument. Errors:
 * ETIMEDOUT (still running at the deadline; the job stays valid),
 * EINTR/ERESTARTSYS (a signal; the job stays valid), ENOENT (no such job in
 * this file), EINVAL (a layer_stats_size this driver does not know).
 */
struct convaccel_wait {
	__u64 job_id;
	__s64 timeout_ns;
	__u32 status;
	__u32 reason;
	__u32 layer;
	__u32 layers_done;
	__u64 macs;
	__u64 bytes_read;
	__u64 bytes_written;
	__u64 device_ns;
	__u64 cycles;
	__u64 latency_ns;
	__u64 layer_stats;
	__u32 layer_stats_count;
	__u32 layer_stats_size;
};

/*
 * 0xC8: free in Documentation/userspace-api/ioctl/ioctl-number.rst (0xCA,
 * this driver's type up to ABI 3, is CXL's); `make lint` checks it stays so.
 */
#define CONVACCEL_IOCTL_BASE 0xC8

/* Ioctl numbers: append only, never renumber. */
#define CONVACCEL_IOCTL_INFO \
	_IOR(CONVACCEL_IOCTL_BASE, 0x00, struct convaccel_info)
#define CONVACCEL_IOCTL_BUFFER_CREATE \
	_IOWR(CONVACCEL_IOCTL_BASE, 0x01, struct convaccel_buffer_create)
#define CONVACCEL_IOCTL_BUFFER_DESTROY \
	_IOW(CONVACCEL_IOCTL_BASE, 0x02, struct convaccel_buffer_destroy)
#define CONVACCEL_IOCTL_SUBMIT \
	_IOWR(CONVACCEL_IOCTL_BASE, 0x03, struct convaccel_submit)
#define CONVACCEL_IOCTL_WAIT \
	_IOWR(CONVACCEL_IOCTL_BASE, 0x04, struct convaccel_wait)

#endif /* _UAPI_LINUX_CONVACCEL_H */
