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
#define  CONVACCEL_VERSION_VALUE	0x00010000	/* 1.0 */
#define CONVACCEL_REG_CAPS		0x008
#define  CONVACCEL_CAP_SOFT_IRQ		(1u << 0)	/* CTRL.SOFT_IRQ */
#define  CONVACCEL_CAP_RESET		(1u << 1)	/* CTRL.RESET */

/* Scratch: read/write, no side effect; reset value 0. */
#define CONVACCEL_REG_SCRATCH		0x00c

/* Control (write-only, reads as 0). Bits are self-clearing actions. */
#define CONVACCEL_REG_CTRL		0x010
#define  CONVACCEL_CTRL_RESET		(1u << 0)	/* back to the reset state */
#define  CONVACCEL_CTRL_SOFT_IRQ	(1u << 1)	/* set INT_STATUS.SOFT */

/* Status (read-only). */
#define CONVACCEL_REG_STATUS		0x014
#define  CONVACCEL_STATUS_BUSY		(1u << 0)

/*
 * Interrupts: INT_STATUS holds pending causes (write 1 to clear); the
 * interrupt line is high while (INT_STATUS & INT_ENABLE) != 0.
 */
#define CONVACCEL_REG_INT_STATUS	0x020
#define CONVACCEL_REG_INT_ENABLE	0x024
#define  CONVACCEL_INT_DONE		(1u << 0)
#define  CONVACCEL_INT_ERROR		(1u << 1)
#define  CONVACCEL_INT_SOFT		(1u << 31)
#define  CONVACCEL_INT_ALL		(CONVACCEL_INT_DONE | CONVACCEL_INT_ERROR | \
					 CONVACCEL_INT_SOFT)

#endif /* CONVACCEL_REGS_H */
