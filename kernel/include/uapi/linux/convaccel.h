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
 * Errors (errno) common to all ioctls:
 *   ENOTTY     unknown command, or an argument size this driver does not know
 *   EFAULT     an argument pointer is not readable/writable
 *   EINVAL     a padding or reserved field, or a flag, is not zero
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
#define CONVACCEL_ABI_VERSION 3

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

/* Layer operations (&convaccel_layer.op). */
#define CONVACCEL_OP_CONV	1	/* 2-D convolution, groups allowed */
#define CONVACCEL_OP_MAXPOOL	2
#define CONVACCEL_OP_AVGPOOL	3	/* padding counts as zeros */

/* Fused activations (&convaccel_layer.activation). */
#define CONVACCEL_ACT_NONE	0
#define CONVACCEL_ACT_RELU	1
#define CONVACCEL_ACT_RELU6	2

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

/**
 * struct convaccel_submit - CONVACCEL_IOCTL_SUBMIT
 * @layers: in: user pointer to @layer_count &struct convaccel_layer
 * @layer_count: in: 1 .. max_layers
 * @layer_size: in: sizeof(struct convaccel_layer) as userspace knows it
 * @flags: in: must be 0
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
 * not this file's),
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

#define CONVACCEL_IOCTL_BASE 0xCA

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
