// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel buffers: device (DMA) memory owned by an open file, named by a
 * handle, mapped into userspace with mmap at the offset BUFFER_CREATE gives.
 *
 * A buffer is reference counted: its handle, each mapping and each job that
 * uses it hold a reference, so destroying the handle or closing the file
 * while a job or a mapping still uses the memory is safe.
 *
 * Unbind frees every buffer's memory while the device is still bound (its
 * DMA setup is torn down after that) and zaps the user mappings first:
 * the structs live on until their last reference goes, without memory.
 */
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "convaccel.h"
#include "convaccel_compat.h"

/* mmap offsets: the handle in the high half, so each buffer has its own. */
#define CONVACCEL_MMAP_SHIFT	32

/* Give the memory back. Under ca->buf_lock. */
static void convaccel_buffer_free_memory(struct convaccel_buffer *buf)
{
	struct convaccel_dev *ca = buf->ca;

	if (!buf->vaddr)
		return;
	list_del_init(&buf->node);
	dma_free_coherent(ca->dev, buf->size, buf->vaddr, buf->dma);
	buf->vaddr = NULL;
	atomic_dec(&ca->buffers);
	atomic64_sub(buf->size, &ca->buffer_bytes);
}

static void convaccel_buffer_free(struct kref *ref)
{
	struct convaccel_buffer *buf = container_of(ref, struct convaccel_buffer, ref);
	struct convaccel_dev *ca = buf->ca;

	mutex_lock(&ca->buf_lock);
	convaccel_buffer_free_memory(buf);
	mutex_unlock(&ca->buf_lock);
	kfree(buf);
	convaccel_dev_put(ca);
}

/**
 * convaccel_buffers_unplug() - free every buffer's memory (unbind)
 * @ca: the device, already dead, with no ioctl or mmap running
 *
 * The caller has zapped the user mappings. Jobs and handles may still
 * reference the structs; they no longer have memory.
 */
void convaccel_buffers_unplug(struct convaccel_dev *ca)
{
	struct convaccel_buffer *buf, *tmp;

	mutex_lock(&ca->buf_lock);
	list_for_each_entry_safe(buf, tmp, &ca->buffer_list, node)
		convaccel_buffer_free_memory(buf);
	mutex_unlock(&ca->buf_lock);
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

/* A new buffer of @size bytes (page aligned), or NULL: out of memory or cap. */
static struct convaccel_buffer *convaccel_buffer_alloc(struct convaccel_dev *ca,
						       size_t size)
{
	struct convaccel_buffer *buf;

	if (atomic64_add_return(size, &ca->buffer_bytes) > ca->max_memory)
		goto err_cap;
	buf = kzalloc(sizeof(*buf), GFP_KERNEL);
	if (!buf)
		goto err_cap;
	kref_init(&buf->ref);
	INIT_LIST_HEAD(&buf->node);
	buf->size = size;
	/* a big buffer may not be available: that is ENOMEM, not a warning */
	buf->vaddr = dma_alloc_coherent(ca->dev, size, &buf->dma,
					GFP_KERNEL | __GFP_NOWARN);
	if (!buf->vaddr) {
		kfree(buf);
		goto err_cap;
	}
	kref_get(&ca->ref);
	buf->ca = ca;
	atomic_inc(&ca->buffers);
	mutex_lock(&ca->buf_lock);
	list_add_tail(&buf->node, &ca->buffer_list);
	mutex_unlock(&ca->buf_lock);
	return buf;

err_cap:
	atomic64_sub(size, &ca->buffer_bytes);
	return NULL;
}

int convaccel_ioctl_buffer_create(struct convaccel_file *cf, void *kreq,
				  void __user *arg, size_t usize)
{
	const struct xa_limit handles = XA_LIMIT(1, CONVACCEL_MAX_BUFFERS_PER_FILE);
	struct convaccel_buffer_create *req = kreq;
	struct convaccel_buffer *buf;
	u32 handle;
	int ret;

	if (req->flags || req->handle || req->mmap_offset || !req->size)
		return -EINVAL;
	if (req->size > (u64)CONVACCEL_MAX_BUFFER_MB << 20)
		return -E2BIG;

	buf = convaccel_buffer_alloc(cf->ca, PAGE_ALIGN(req->size));
	if (!buf)
		return -ENOMEM;
	/* The handle's reference, and ours until the result is out. */
	kref_get(&buf->ref);
	ret = xa_alloc(&cf->buffers, &handle, buf, handles, GFP_KERNEL);
	if (ret) {
		convaccel_buffer_put(buf);
		convaccel_buffer_put(buf);
		return -ENOMEM;		/* -EBUSY: the file has the most buffers */
	}
	req->handle = handle;
	req->mmap_offset = (u64)handle << CONVACCEL_MMAP_SHIFT;
	ret = convaccel_copy_to_user(arg, usize, req, sizeof(*req));
	if (ret) {
		/*
		 * A sibling thread may have destroyed the handle already, and
		 * the handle may even name another buffer by now: take back
		 * only our own entry, and its reference only if it was there.
		 */
		if (xa_cmpxchg(&cf->buffers, handle, buf, NULL, 0) == buf)
			convaccel_buffer_put(buf);
	}
	convaccel_buffer_put(buf);
	return ret;
}

int convaccel_ioctl_buffer_destroy(struct convaccel_file *cf, void *kreq,
				   void __user *arg, size_t usize)
{
	struct convaccel_buffer_destroy *req = kreq;
	struct convaccel_buffer *buf;

	if (req->pad)
		return -EINVAL;
	buf = req->handle ? xa_erase(&cf->buffers, req->handle) : NULL;
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
 * A private (copy-on-write) mapping is refused: user writes to it would
 * never reach the buffer.
 *
 * Return: 0; -EINVAL for a private mapping, an unknown buffer, an offset
 * inside a buffer or a mapping longer than the buffer; -ENODEV after unbind.
 */
int convaccel_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct convaccel_file *cf = file->private_data;
	u64 offset = (u64)vma->vm_pgoff << PAGE_SHIFT;
	struct convaccel_buffer *buf;
	int idx, ret = -EINVAL;

	if (is_cow_mapping(vma->vm_flags) ||
	    (offset & (BIT_ULL(CONVACCEL_MMAP_SHIFT) - 1)))
		return -EINVAL;
	idx = srcu_read_lock(&cf->ca->srcu);	/* as the ioctls: unbind waits */
	if (READ_ONCE(cf->ca->dead)) {
		ret = -ENODEV;
		goto out;
	}
	buf = convaccel_buffer_lookup(cf, offset >> CONVACCEL_MMAP_SHIFT);
	if (!buf)
		goto out;
	if (vma->vm_end - vma->vm_start > buf->size)
		goto out_put;
	vma->vm_pgoff = 0;	/* dma_mmap_coherent() maps from vm_pgoff */
	convaccel_vm_flags_set(vma, VM_DONTCOPY | VM_DONTEXPAND | VM_DONTDUMP);
	ret = dma_mmap_coherent(cf->ca->dev, vma, buf->vaddr, buf->dma, buf->size);
	if (ret)
		goto out_put;
	vma->vm_private_data = buf;
	vma->vm_ops = &convaccel_vm_ops;
	goto out;

out_put:
	convaccel_buffer_put(buf);
out:
	srcu_read_unlock(&cf->ca->srcu, idx);
	return ret;
}
