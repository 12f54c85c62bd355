/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * convaccel: what differs between the kernels the driver builds on
 * (Debian 12's 6.1 and bookworm-backports' 6.12). Each helper has our own
 * name, so a stable backport of the upstream one cannot clash with it.
 */
#ifndef CONVACCEL_COMPAT_H
#define CONVACCEL_COMPAT_H

#include <linux/mm.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/* vm_flags became read-only in 6.3: set them through vm_flags_set(). */
static inline void convaccel_vm_flags_set(struct vm_area_struct *vma,
					  vm_flags_t flags)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

#endif /* CONVACCEL_COMPAT_H */
