// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel buffers: device (DMA) memory owned by an open file, named by a
 * handle, mapped into userspace with mmap at the offset BUFFER_CREATE gives.
 *
 * A buffer is reference counted: its handle, each mapping and each job that
 * uses it hold a reference, so destroying the handle or closing the file
 * while a job or a mapping still uses the memory is safe.
 */
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "convaccel.h"

/* mmap offsets: the handle in the high half, so each buffer has its own. */
#define CONVACCEL_MMAP_SHIFT	32

static void convaccel_buffer_free(struct kref *ref)
{
	struct convaccel_buffer *buf = container_of(ref, struct convaccel_buffer, ref);
	struct convaccel_dev *ca = buf->ca;

	dma_free_coherent(ca->dev, buf->size, buf->vaddr, buf->dma);
	atomic_dec(&ca->buffers);
	atomic64_sub(buf->size, &ca->buffer_bytes);
	kfree(buf);
	convaccel_dev_put(ca);
}

void convaccel_buffer_put(struct convaccel_buffer *buf)
{
	kref_put(&buf->ref, convaccel_buffer_free);
}

/**
 * convaccel_buffer_lookup() - a referenced buffer of this file
 * @cf: the file
 * @handle: its handle
 *
 * Return: the buffer with a new reference, or NULL if the file has none
 * with this handle.
 */
struct convaccel_buffer *convaccel_buffer_lookup(struct convaccel_file *cf, u32 handle)
{
	struct convaccel_buffer *buf;

	xa_lock(&cf->buffers);
	buf = xa_load(&cf->buffers, handle);
	if (buf)
		kref_get(&buf->ref);
	xa_unlock(&cf->buffers);
	return buf;
}

int convaccel_ioctl_buffer_create(struct convaccel_file *cf, void __user *arg)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_buffer_create req;
	struct convaccel_buffer *buf;
	u32 handle;
	int ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.handle || req.mmap_offset || !req.size)
		return -EINVAL;
	if (req.size > (u64)CONVACCEL_MAX_BUFFER_MB << 20)
		return -E2BIG;

	buf = kzalloc(sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	kref_init(&buf->ref);
	buf->size = PAGE_ALIGN(req.size);
	buf->vaddr = dma_alloc_coherent(ca->dev, buf->size, &buf->dma, GFP_KERNEL);
	if (!buf->vaddr) {
		kfree(buf);
		return -ENOMEM;
	}
	kref_get(&ca->ref);
	buf->ca = ca;
	atomic_inc(&ca->buffers);
	atomic64_add(buf->size, &ca->buffer_bytes);

	ret = xa_alloc(&cf->buffers, &handle, buf, xa_limit_31b, GFP_KERNEL);
	if (ret) {
		convaccel_buffer_put(buf);
		return ret == -EBUSY ? -ENOSPC : ret;
	}
	req.handle = handle;
	req.mmap_offset = (u64)handle << CONVACCEL_MMAP_SHIFT;
	if (copy_to_user(arg, &req, sizeof(req))) {
		xa_erase(&cf->buffers, handle);
		convaccel_buffer_put(buf);
		return -EFAULT;
	}
	return 0;
}

int convaccel_ioctl_buffer_destroy(struct convaccel_file *cf, void __user *arg)
{
	struct convaccel_buffer_destroy req;
	struct convaccel_buffer *buf;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (req.pad)
		return -EINVAL;
	buf = xa_erase(&cf->buffers, req.handle);
	if (!buf)
		return -ENOENT;
	convaccel_buffer_put(buf);
	return 0;
}

/* The file is closing: drop every handle (mappings and jobs keep theirs). */
void convaccel_buffers_release(struct convaccel_file *cf)
{
	struct convaccel_buffer *buf;
	unsigned long handle;

	xa_for_each(&cf->buffers, handle, buf) {
		xa_erase(&cf->buffers, handle);
		convaccel_buffer_put(buf);
	}
}

static void convaccel_vm_open(struct vm_area_struct *vma)
{
	struct convaccel_buffer *buf = vma->vm_private_data;

	kref_get(&buf->ref);
}

static void convaccel_vm_close(struct vm_area_struct *vma)
{
	convaccel_buffer_put(vma->vm_private_data);
}

static const struct vm_operations_struct convaccel_vm_ops = {
	.open = convaccel_vm_open,
	.close = convaccel_vm_close,
};

/**
 * convaccel_mmap() - map a whole buffer, or its beginning
 * @file: the open device file
 * @vma: the mapping; its offset names the buffer
 *
 * Return: 0; -ENOENT for an unknown buffer, -EINVAL for an offset inside a
 * buffer, -EOVERFLOW for a mapping longer than the buffer.
 */
int convaccel_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct convaccel_file *cf = file->private_data;
	u64 offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	struct convaccel_buffer *buf;
	int ret;

	if (offset & (BIT_ULL(CONVACCEL_MMAP_SHIFT) - 1))
		return -EINVAL;
	buf = convaccel_buffer_lookup(cf, offset >> CONVACCEL_MMAP_SHIFT);
	if (!buf)
		return -ENOENT;
	if (vma->vm_end - vma->vm_start > buf->size) {
		convaccel_buffer_put(buf);
		return -EOVERFLOW;
	}
	vma->vm_pgoff = 0;	/* dma_mmap_coherent() maps from vm_pgoff */
	vma->vm_flags |= VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP;
	ret = dma_mmap_coherent(cf->ca->dev, vma, buf->vaddr, buf->dma, buf->size);
	if (ret) {
		convaccel_buffer_put(buf);
		return ret;
	}
	vma->vm_private_data = buf;
	vma->vm_ops = &convaccel_vm_ops;
	return 0;
}
