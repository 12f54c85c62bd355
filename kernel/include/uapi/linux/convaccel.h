/* SPDX-License-Identifier: (GPL-2.0-only WITH Linux-syscall-note) OR MIT */
/*
 * convaccel: user API of the convolution accelerator driver.
 *
 * This header is the single source of truth for C and for Python (pyaccel
 * parses it at import time). Rules: fixed-width types only, natural
 * alignment, explicit padding that must be zero, ioctl numbers are
 * append-only and never renumbered.
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
#define CONVACCEL_ABI_VERSION 1

/**
 * struct convaccel_info - what CONVACCEL_IOCTL_INFO returns
 * @abi_version: CONVACCEL_ABI_VERSION the driver was built with
 * @hw_id: the device's ID register
 * @hw_version: the device's VERSION register (major << 16 | minor)
 * @hw_caps: the device's CAPS register (CONVACCEL_CAP_* in the spec)
 * @instance: N of /dev/convaccelN
 * @irq_count: interrupts the driver has handled since probe
 * @pad: must be zero
 */
struct convaccel_info {
	__u32 abi_version;
	__u32 hw_id;
	__u32 hw_version;
	__u32 hw_caps;
	__u32 instance;
	__u32 pad;
	__u64 irq_count;
};

#define CONVACCEL_IOCTL_BASE 0xCA

/*
 * Ioctls. Errors common to all: ENOTTY for an unknown command or a wrong
 * argument size (the size is part of the command number), EFAULT for a bad
 * user pointer.
 *
 * CONVACCEL_IOCTL_INFO: fill a &struct convaccel_info.
 */
#define CONVACCEL_IOCTL_INFO _IOR(CONVACCEL_IOCTL_BASE, 0x00, struct convaccel_info)

#endif /* _UAPI_LINUX_CONVACCEL_H */
