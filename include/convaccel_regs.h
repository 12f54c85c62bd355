/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * convaccel register map: the one header shared by the QEMU device model
 * and the Linux driver. docs/hardware.md is the prose specification of every
 * register; change both together, never just one.
 *
 * All registers are 32 bits wide, little endian, at 4-byte aligned offsets
 * in a 4 KiB MMIO window. Only constants here: no types, no functions.
 */
#ifndef CONVACCEL_REGS_H
#define CONVACCEL_REGS_H

/* Board wiring of instance N on the virt-convaccel machine. */
#define CONVACCEL_MMIO_BASE		0x0a100000ULL
#define CONVACCEL_MMIO_STRIDE		0x1000ULL
#define CONVACCEL_MMIO_SIZE		0x1000
#define CONVACCEL_SPI_FIRST		15	/* instance N uses SPI 15 - N */
#define CONVACCEL_MAX_INSTANCES		6	/* SPIs 15..10 are free on virt */

/* Identification (read-only). */
#define CONVACCEL_REG_ID		0x000
#define  CONVACCEL_ID_VALUE		0x434e5641	/* ASCII "CNVA", read as one word */
#define CONVACCEL_REG_VERSION		0x004
#define  CONVACCEL_VERSION_MAJOR(v)	(((v) >> 16) & 0xffff)
#define  CONVACCEL_VERSION_MINOR(v)	((v) & 0xffff)
#define  CONVACCEL_VERSION_VALUE	0x00020000	/* 2.0 (runs 1.x command streams) */
#define CONVACCEL_REG_CAPS		0x008
#define  CONVACCEL_CAP_SOFT_IRQ		(1u << 0)	/* CTRL.SOFT_IRQ */
#define  CONVACCEL_CAP_RESET		(1u << 1)	/* CTRL.RESET */
#define  CONVACCEL_CAP_CONV		(1u << 2)	/* OP_CONV, incl. groups */
#define  CONVACCEL_CAP_POOL		(1u << 3)	/* OP_MAXPOOL, OP_AVGPOOL */
#define  CONVACCEL_CAP_FAULT		(1u << 4)	/* FAULT_* registers */
#define  CONVACCEL_CAP_V2		(1u << 5)	/* JOB_FLAG_V2: v2 layers, views */
#define  CONVACCEL_CAP_ELTWISE		(1u << 6)	/* ADD, MUL, SCALE_SHIFT, ACT */
#define  CONVACCEL_CAP_ACT_EXT		(1u << 7)	/* leaky, sigmoid, hard-sigmoid/swish */
#define  CONVACCEL_CAP_GLOBAL_POOL	(1u << 8)	/* GLOBAL_AVGPOOL, GLOBAL_MAXPOOL */
#define  CONVACCEL_CAP_FC		(1u << 9)	/* FC over a batch */
#define  CONVACCEL_CAP_INT8		(1u << 10)	/* S8 tensors, QUANTIZE, DEQUANTIZE */

/* Scratch: read/write, no side effect; reset value 0. */
#define CONVACCEL_REG_SCRATCH		0x00c

/* Control (write-only, reads as 0). Bits are self-clearing actions. */
#define CONVACCEL_REG_CTRL		0x010
#define  CONVACCEL_CTRL_RESET		(1u << 0)	/* back to the reset state */
#define  CONVACCEL_CTRL_SOFT_IRQ	(1u << 1)	/* set INT_STATUS.SOFT */

/* Status (read-only). */
#define CONVACCEL_REG_STATUS		0x014
#define  CONVACCEL_STATUS_BUSY		(1u << 0)	/* a job is queued or running */
#define  CONVACCEL_STATUS_QUEUE_FULL	(1u << 1)	/* DOORBELL would be dropped */
#define  CONVACCEL_STATUS_OVERFLOW	(1u << 2)	/* sticky: a DOORBELL was dropped */
#define  CONVACCEL_STATUS_LEVEL(s)	(((s) >> 8) & 0xff)	/* jobs queued + running */
#define CONVACCEL_REG_QUEUE_DEPTH	0x018		/* jobs the queue holds */
#define  CONVACCEL_QUEUE_DEPTH_VALUE	4

/*
 * Interrupts: INT_STATUS holds pending causes (write 1 to clear); the
 * interrupt line is high while (INT_STATUS & INT_ENABLE) != 0.
 */
#define CONVACCEL_REG_INT_STATUS	0x020
#define CONVACCEL_REG_INT_ENABLE	0x024
#define  CONVACCEL_INT_DONE		(1u << 0)	/* a job completed */
#define  CONVACCEL_INT_ERROR		(1u << 1)	/* a job failed */
#define  CONVACCEL_INT_SOFT		(1u << 31)
#define  CONVACCEL_INT_ALL		(CONVACCEL_INT_DONE | CONVACCEL_INT_ERROR | \
					 CONVACCEL_INT_SOFT)

/* Job submission: write CMD_ADDR, then DOORBELL (any value) queues it. */
#define CONVACCEL_REG_CMD_ADDR_LO	0x030
#define CONVACCEL_REG_CMD_ADDR_HI	0x034
#define CONVACCEL_REG_DOORBELL		0x038
#define CONVACCEL_REG_JOBS_DONE		0x03c		/* completed jobs, wraps */
#define CONVACCEL_REG_LAST_STATUS	0x040		/* of the last completed job */
#define CONVACCEL_REG_LAST_LAYER	0x044
#define CONVACCEL_REG_LAST_TAG		0x048

/* Limits (read-only): what a layer descriptor may ask for. */
#define CONVACCEL_REG_MAX_KERNEL	0x050
#define  CONVACCEL_MAX_KERNEL_VALUE	16	/* kh, kw, stride, dilation */
#define CONVACCEL_REG_MAX_PAD		0x054
#define  CONVACCEL_MAX_PAD_VALUE	64	/* each of the four paddings */
#define CONVACCEL_REG_MAX_CHANNELS	0x058
#define  CONVACCEL_MAX_CHANNELS_VALUE	8192	/* c_in, c_out */
#define CONVACCEL_REG_MAX_DIM		0x05c
#define  CONVACCEL_MAX_DIM_VALUE	4096	/* n, h, w */
#define CONVACCEL_REG_MAX_LAYERS	0x060
#define  CONVACCEL_MAX_LAYERS_VALUE	1024	/* layers in one job */
#define CONVACCEL_REG_MAX_TENSOR_MB	0x064
#define  CONVACCEL_MAX_TENSOR_MB_VALUE	1024	/* bytes of any one tensor, in MiB */
#define CONVACCEL_REG_MAX_JOB_GMACS	0x068
#define  CONVACCEL_MAX_JOB_GMACS_VALUE	1024	/* work of one job, in 2^30 MACs */
/* Host memory of one layer: output bounce + non-contiguous input copies. */
#define CONVACCEL_MAX_HOST_MB		2048

/* Fault injection (read/write; reset values come from QOM properties). */
#define CONVACCEL_REG_FAULT_CTRL	0x070
#define  CONVACCEL_FAULT_HANG		(1u << 0)	/* next job never completes */
#define  CONVACCEL_FAULT_DMA_ERROR	(1u << 1)	/* next job fails with ERR_DMA */
#define  CONVACCEL_FAULT_LOST_IRQ	(1u << 2)	/* next completion raises no IRQ */
#define  CONVACCEL_FAULT_ALL		(CONVACCEL_FAULT_HANG | \
					 CONVACCEL_FAULT_DMA_ERROR | \
					 CONVACCEL_FAULT_LOST_IRQ)
#define CONVACCEL_REG_FAULT_DELAY_US	0x074		/* added latency per job */
#define  CONVACCEL_FAULT_DELAY_MAX_US	10000000	/* larger values are clamped */
#define CONVACCEL_REG_FAULT_ERROR_AFTER	0x078		/* Nth next job fails; 0: off */

/* Job descriptor, at CMD_ADDR (48 bytes, little endian). */
#define CONVACCEL_JOB_SIZE		48
#define CONVACCEL_JOB_MAGIC		0x424f4a43	/* "CJOB" in memory */
#define CONVACCEL_JOB_MAGIC_OFF		0x00	/* u32 */
#define CONVACCEL_JOB_LAYER_COUNT_OFF	0x04	/* u32, 1..MAX_LAYERS */
#define CONVACCEL_JOB_LAYERS_OFF	0x08	/* u64, address of the layers */
#define CONVACCEL_JOB_RESULT_OFF	0x10	/* u64, address of the result */
#define CONVACCEL_JOB_TAG_OFF		0x18	/* u32, copied to the result */
#define CONVACCEL_JOB_FLAGS_OFF		0x1c	/* u32, CONVACCEL_JOB_FLAG_* */
#define  CONVACCEL_JOB_FLAG_STATS	(1u << 0)	/* write per-layer statistics */
#define  CONVACCEL_JOB_FLAG_V2		(1u << 1)	/* layers are v2 descriptors */
#define CONVACCEL_JOB_STATS_OFF		0x20	/* u64, address of layer_count records */
#define CONVACCEL_JOB_RSVD_OFF		0x28	/* u64, must be 0 */

/* Per-layer statistics record (32 bytes), with CONVACCEL_JOB_FLAG_STATS. */
#define CONVACCEL_STATS_SIZE		32
#define CONVACCEL_STATS_HOST_NS_OFF	0x00	/* u64 each */
#define CONVACCEL_STATS_CYCLES_OFF	0x08
#define CONVACCEL_STATS_MACS_OFF	0x10
#define CONVACCEL_STATS_BYTES_OFF	0x18	/* read + written */

/* Layer descriptor (128 bytes, little endian), an array of them. */
#define CONVACCEL_LAYER_SIZE		128
#define CONVACCEL_LAYER_OP_OFF		0x00	/* u32 CONVACCEL_LAYER_OP_* */
#define  CONVACCEL_LAYER_OP_CONV	1
#define  CONVACCEL_LAYER_OP_MAXPOOL	2
#define  CONVACCEL_LAYER_OP_AVGPOOL	3
#define  CONVACCEL_LAYER_OP_ADD		4	/* v2 only from here on */
#define  CONVACCEL_LAYER_OP_MUL		5
#define  CONVACCEL_LAYER_OP_SCALE_SHIFT	6
#define  CONVACCEL_LAYER_OP_GLOBAL_AVGPOOL 7
#define  CONVACCEL_LAYER_OP_GLOBAL_MAXPOOL 8
#define  CONVACCEL_LAYER_OP_FC		9
#define  CONVACCEL_LAYER_OP_QUANTIZE	10
#define  CONVACCEL_LAYER_OP_DEQUANTIZE	11
#define  CONVACCEL_LAYER_OP_ACT		12
#define  CONVACCEL_LAYER_OP_COUNT	13
#define CONVACCEL_LAYER_FLAGS_OFF	0x04	/* u32 */
#define  CONVACCEL_LAYER_FLAG_BIAS	(1u << 0)	/* conv: add bias[c_out] */
#define  CONVACCEL_LAYER_ACT_SHIFT	8		/* bits 9:8 activation */
#define  CONVACCEL_LAYER_ACT_MASK	(3u << 8)
#define  CONVACCEL_LAYER_ACT_NONE	0
#define  CONVACCEL_LAYER_ACT_RELU	1
#define  CONVACCEL_LAYER_ACT_RELU6	2
#define  CONVACCEL_LAYER_ACT_LEAKY	3	/* v2 only from here on */
#define  CONVACCEL_LAYER_ACT_SIGMOID	4
#define  CONVACCEL_LAYER_ACT_HSIGMOID	5
#define  CONVACCEL_LAYER_ACT_HSWISH	6
#define  CONVACCEL_LAYER_ACT_COUNT	7
#define  CONVACCEL_LAYER_FLAGS_VALID	(CONVACCEL_LAYER_FLAG_BIAS | CONVACCEL_LAYER_ACT_MASK)
#define CONVACCEL_LAYER_N_OFF		0x08	/* u32 each, from here on */
#define CONVACCEL_LAYER_C_IN_OFF	0x0c
#define CONVACCEL_LAYER_H_IN_OFF	0x10
#define CONVACCEL_LAYER_W_IN_OFF	0x14
#define CONVACCEL_LAYER_C_OUT_OFF	0x18
#define CONVACCEL_LAYER_H_OUT_OFF	0x1c
#define CONVACCEL_LAYER_W_OUT_OFF	0x20
#define CONVACCEL_LAYER_GROUPS_OFF	0x24
#define CONVACCEL_LAYER_KH_OFF		0x28
#define CONVACCEL_LAYER_KW_OFF		0x2c
#define CONVACCEL_LAYER_STRIDE_H_OFF	0x30
#define CONVACCEL_LAYER_STRIDE_W_OFF	0x34
#define CONVACCEL_LAYER_DIL_H_OFF	0x38
#define CONVACCEL_LAYER_DIL_W_OFF	0x3c
#define CONVACCEL_LAYER_PAD_TOP_OFF	0x40
#define CONVACCEL_LAYER_PAD_BOTTOM_OFF	0x44
#define CONVACCEL_LAYER_PAD_LEFT_OFF	0x48
#define CONVACCEL_LAYER_PAD_RIGHT_OFF	0x4c
#define CONVACCEL_LAYER_INPUT_OFF	0x50	/* u64 addresses from here on */
#define CONVACCEL_LAYER_WEIGHT_OFF	0x58
#define CONVACCEL_LAYER_BIAS_OFF	0x60
#define CONVACCEL_LAYER_OUTPUT_OFF	0x68
#define CONVACCEL_LAYER_RSVD_OFF	0x70	/* 16 bytes, must be 0 */

/* V2 layer descriptor (256 bytes, little endian), with JOB_FLAG_V2. */
#define CONVACCEL_LAYER2_SIZE		256
#define CONVACCEL_LAYER2_OP_OFF		0x00	/* u32 CONVACCEL_LAYER_OP_* */
#define CONVACCEL_LAYER2_FLAGS_OFF	0x04	/* u32 */
#define  CONVACCEL_LAYER2_FLAG_BIAS	(1u << 0)
#define  CONVACCEL_LAYER2_FLAG_BCAST	(1u << 1)	/* MUL: in1 is (n, c, 1, 1) */
#define CONVACCEL_LAYER2_ACT_OFF	0x08	/* u32 CONVACCEL_LAYER_ACT_* */
#define CONVACCEL_LAYER2_ACT_ALPHA_OFF	0x0c	/* f32 */
#define CONVACCEL_LAYER2_ACT_BETA_OFF	0x10	/* f32 */
#define CONVACCEL_LAYER2_N_OFF		0x14	/* u32 each: the v1 geometry */
#define CONVACCEL_LAYER2_C_IN_OFF	0x18
#define CONVACCEL_LAYER2_H_IN_OFF	0x1c
#define CONVACCEL_LAYER2_W_IN_OFF	0x20
#define CONVACCEL_LAYER2_C_OUT_OFF	0x24
#define CONVACCEL_LAYER2_H_OUT_OFF	0x28
#define CONVACCEL_LAYER2_W_OUT_OFF	0x2c
#define CONVACCEL_LAYER2_GROUPS_OFF	0x30
#define CONVACCEL_LAYER2_KH_OFF		0x34
#define CONVACCEL_LAYER2_KW_OFF		0x38
#define CONVACCEL_LAYER2_STRIDE_H_OFF	0x3c
#define CONVACCEL_LAYER2_STRIDE_W_OFF	0x40
#define CONVACCEL_LAYER2_DIL_H_OFF	0x44
#define CONVACCEL_LAYER2_DIL_W_OFF	0x48
#define CONVACCEL_LAYER2_PAD_TOP_OFF	0x4c
#define CONVACCEL_LAYER2_PAD_BOTTOM_OFF	0x50
#define CONVACCEL_LAYER2_PAD_LEFT_OFF	0x54
#define CONVACCEL_LAYER2_PAD_RIGHT_OFF	0x58
#define CONVACCEL_LAYER2_RSVD0_OFF	0x5c	/* u32, must be 0 */
#define CONVACCEL_LAYER2_IN0_OFF	0x60	/* tensor views, CONVACCEL_VIEW_* */
#define CONVACCEL_LAYER2_IN1_OFF	0x80
#define CONVACCEL_LAYER2_OUT_OFF	0xa0
#define CONVACCEL_LAYER2_WEIGHT_OFF	0xc0	/* u64 addresses */
#define CONVACCEL_LAYER2_BIAS_OFF	0xc8
#define CONVACCEL_LAYER2_REQUANT_OFF	0xd0	/* int8: rescale records */
#define CONVACCEL_LAYER2_LUT_OFF	0xd8	/* int8: 256-entry table, or 0 */
#define CONVACCEL_LAYER2_ZP_IN0_OFF	0xe0	/* s32 each */
#define CONVACCEL_LAYER2_ZP_IN1_OFF	0xe4
#define CONVACCEL_LAYER2_ZP_OUT_OFF	0xe8
#define CONVACCEL_LAYER2_ACT_MIN_OFF	0xec
#define CONVACCEL_LAYER2_ACT_MAX_OFF	0xf0
#define CONVACCEL_LAYER2_QSCALE_OFF	0xf4	/* f32 */
#define CONVACCEL_LAYER2_RSVD1_OFF	0xf8	/* u64, must be 0 */

/* Tensor view (32 bytes), in a v2 layer descriptor. */
#define CONVACCEL_VIEW_SIZE		32
#define CONVACCEL_VIEW_ADDR_OFF		0x00	/* u64 */
#define CONVACCEL_VIEW_DTYPE_OFF	0x08	/* u32 */
#define  CONVACCEL_DTYPE_F32		0
#define  CONVACCEL_DTYPE_S8		1
#define  CONVACCEL_DTYPE_COUNT		2
#define CONVACCEL_VIEW_RSVD_OFF		0x0c	/* u32, must be 0 */
#define CONVACCEL_VIEW_STRIDE_N_OFF	0x10	/* u32 each, in elements */
#define CONVACCEL_VIEW_STRIDE_C_OFF	0x14
#define CONVACCEL_VIEW_STRIDE_H_OFF	0x18
#define CONVACCEL_VIEW_STRIDE_W_OFF	0x1c

/* int8 rescale record (8 bytes): s32 multiplier, s32 shift (1..62). */
#define CONVACCEL_RESCALE_SIZE		8
#define CONVACCEL_RESCALE_SHIFT_MIN	1
#define CONVACCEL_RESCALE_SHIFT_MAX	62
#define CONVACCEL_ADD_LEFT_SHIFT	20	/* int8 ADD: inputs scaled by 2^20 */
#define CONVACCEL_LUT_SIZE		256

/* Result record, written at the job's result address (64 bytes). */
#define CONVACCEL_RESULT_SIZE		64
#define CONVACCEL_RESULT_STATUS_OFF	0x00	/* u32 CONVACCEL_ERR_* */
#define CONVACCEL_RESULT_LAYER_OFF	0x04	/* u32 failing layer, or ~0 for the job */
#define CONVACCEL_RESULT_TAG_OFF	0x08	/* u32 the job's tag */
#define CONVACCEL_RESULT_LAYERS_DONE_OFF 0x0c	/* u32 */
#define CONVACCEL_RESULT_MACS_OFF	0x10	/* u64 each, from here on */
#define CONVACCEL_RESULT_BYTES_READ_OFF	0x18
#define CONVACCEL_RESULT_BYTES_WRITTEN_OFF 0x20
#define CONVACCEL_RESULT_HOST_NS_OFF	0x28
#define CONVACCEL_RESULT_CYCLES_OFF	0x30
#define  CONVACCEL_RESULT_LAYER_JOB	0xffffffffu

/* Job status codes (RESULT_STATUS and LAST_STATUS). */
#define CONVACCEL_ERR_OK		0
#define CONVACCEL_ERR_MAGIC		1	/* job magic wrong */
#define CONVACCEL_ERR_LAYER_COUNT	2	/* 0 or > MAX_LAYERS layers */
#define CONVACCEL_ERR_RESERVED		3	/* a reserved field or flag is not 0 */
#define CONVACCEL_ERR_OP		4	/* unknown operation */
#define CONVACCEL_ERR_SHAPE		5	/* a size is 0, too large, or inconsistent */
#define CONVACCEL_ERR_KERNEL		6	/* kernel, stride or dilation out of range */
#define CONVACCEL_ERR_PAD		7	/* padding out of range */
#define CONVACCEL_ERR_GROUPS		8	/* groups do not divide the channels */
#define CONVACCEL_ERR_TOO_LARGE		9	/* a tensor, work or memory above a limit */
#define CONVACCEL_ERR_DMA		10	/* an address range is not guest RAM */
#define CONVACCEL_ERR_INJECTED		11	/* fault injection (FAULT_ERROR_AFTER) */
#define CONVACCEL_ERR_NO_MEMORY		12	/* the device ran out of buffer memory */
#define CONVACCEL_ERR_COUNT		13

/*
 * Cost model of the hypothetical silicon (docs/hardware.md): a 1 GHz clock,
 * a 32 x 32 MAC array (32 input x 32 output channels of one group per
 * cycle), DMA at 16 bytes per cycle overlapping compute, fixed overheads.
 */
#define CONVACCEL_MODEL_CLOCK_MHZ	1000
#define CONVACCEL_MODEL_ARRAY		32
#define CONVACCEL_MODEL_DMA_BYTES	16
#define CONVACCEL_MODEL_POOL_LANES	32
#define CONVACCEL_MODEL_LAYER_CYCLES	256
#define CONVACCEL_MODEL_JOB_CYCLES	1024
#define CONVACCEL_MODEL_INT8_FACTOR	4	/* int8 MACs per float32 MAC slot */

#endif /* CONVACCEL_REGS_H */
