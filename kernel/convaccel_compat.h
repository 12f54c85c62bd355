/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * convaccel: what differs between the kernels the driver builds on
 * (Debian 12's 6.1 and bookworm-backports' 6.12). Kbuild looks at the
 * kernel's headers for each feature (a stable backport is found too) and
 * defines CONVACCEL_HAVE_*; each helper has our own name, so an upstream
 * one of the same name cannot clash with it.
 */
#ifndef CONVACCEL_COMPAT_H
#define CONVACCEL_COMPAT_H

#include <linux/mm.h>

#ifdef CONVACCEL_HAVE_LINUX_UNALIGNED_H
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/* vm_flags became read-only in 6.3: set them through vm_flags_set(). */
static inline void convaccel_vm_flags_set(struct vm_area_struct *vma,
					  vm_flags_t flags)
{
#ifdef CONVACCEL_HAVE_VM_FLAGS_SET
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

#endif /* CONVACCEL_COMPAT_H */
