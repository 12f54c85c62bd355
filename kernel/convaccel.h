/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * convaccel driver internals, shared by its files:
 *   convaccel_drv.c      probe/remove, the character device, ioctl dispatch, sysfs
 *   convaccel_buf.c      buffers: DMA memory, handles, mmap
 *   convaccel_job.c      jobs: queueing, completion, timeout, wait
 *   convaccel_layers.c   the checks of each layer and its hardware descriptor
 *   convaccel_debugfs.c  register dump, interrupt test, fault injection
 */
#ifndef CONVACCEL_H
#define CONVACCEL_H

#include <linux/kref.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/spinlock.h>
#include <linux/srcu.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <uapi/linux/convaccel.h>
#include "convaccel_regs.h"

#define CONVACCEL_MAX_BUFFER_MB		256
#define CONVACCEL_MAX_BUFFERS_PER_FILE	4096
#define CONVACCEL_MAX_JOBS_PER_FILE	64
/* Job budgets: shorter or longer requests are clamped to this range. */
#define CONVACCEL_TIMEOUT_MIN_MS	50
#define CONVACCEL_TIMEOUT_MAX_MS	60000
/* The most the driver believes of the device's limit registers. */
#define CONVACCEL_DRV_MAX_QUEUE_DEPTH	16
#define CONVACCEL_DRV_MAX_LAYERS	1024

/**
 * struct convaccel_stats - counters shown in sysfs
 * @jobs_done: jobs that ended, whatever their status
 * @jobs_failed: jobs that ended with a status other than OK
 * @timeouts: jobs that ran over their budget
 * @resets: device resets the driver did
 * @lost_irqs: completions found by the timeout check, not by an interrupt
 * @requeued: jobs re-run after a reset caused by another job
 * @busy_ns: time the device had work
 */
struct convaccel_stats {
	u64 jobs_done;
	u64 jobs_failed;
	u64 timeouts;
	u64 resets;
	u64 lost_irqs;
	u64 requeued;
	u64 busy_ns;
};

/**
 * struct convaccel_dev - one accelerator instance
 * @ref: the files and buffers that still use this instance
 * @dev: the platform device (referenced until @ref drops to zero)
 * @regs: the MMIO window (valid while !@dead)
 * @misc: /dev/convaccelN
 * @name: "convaccelN"
 * @instance: N
 * @hw_id: ID register
 * @hw_version: VERSION register
 * @hw_caps: CAPS register
 * @limits: the device's limit registers, in &struct convaccel_info units
 * @timeout_ms: default job budget
 * @max_memory: bytes all buffers together may hold
 * @srcu: ioctls and mmap run inside it; unbind waits for them after
 *	setting @dead, so nothing uses the device after that (drm_dev_enter)
 * @lock: protects everything below, and the job lists of every file
 * @dead: the device was unbound; only teardown may touch it
 * @open_files: every open file, for unbind (ca->lock)
 * @files: files with pending jobs, in round-robin order
 * @hw_jobs: jobs on the device, oldest (running) first
 * @hw_count: number of @hw_jobs
 * @hw_started: when the oldest job on the device started running
 * @busy_since: when the device last went from idle to busy
 * @jobs_done_seen: JOBS_DONE as of the last completion processing
 * @stats: counters
 * @buffers: live buffers (also after their file closed, while mapped)
 * @buffer_bytes: bytes of live buffers
 * @buf_lock: protects @buffer_list and every buffer's memory
 * @buffer_list: every live buffer; unbind frees their memory
 * @timeout_work: checks the running job against its budget
 * @irq_count: interrupts handled
 * @soft_irq: completed when the interrupt handler sees INT_STATUS.SOFT
 * @debugfs: debugfs folder
 */
struct convaccel_dev {
	struct kref ref;
	struct device *dev;
	void __iomem *regs;
	struct miscdevice misc;
	char name[16];
	int instance;
	u32 hw_id;
	u32 hw_version;
	u32 hw_caps;
	struct convaccel_info limits;
	unsigned int timeout_ms;
	u64 max_memory;
	struct srcu_struct srcu;

	struct mutex lock;	/* guards all below, and every file's job lists */
	bool dead;
	struct list_head open_files;
	struct list_head files;
	struct list_head hw_jobs;
	unsigned int hw_count;
	ktime_t hw_started;
	ktime_t busy_since;
	u32 jobs_done_seen;
	struct convaccel_stats stats;
	atomic_t buffers;
	atomic64_t buffer_bytes;
	struct mutex buf_lock;	/* guards buffer_list and buffers' memory */
	struct list_head buffer_list;

	struct delayed_work timeout_work;
	atomic64_t irq_count;
	struct completion soft_irq;
	struct dentry *debugfs;
};

/**
 * struct convaccel_file - one open file: its buffers and jobs
 * @ref: the file itself and each of its unfinished jobs
 * @ca: the device
 * @mapping: the file's address space, whose mappings unbind tears down
 * @node: entry in ca->open_files until release (ca->lock)
 * @released: the file was closed; its jobs on the device end at a reset
 *	instead of running again (ca->lock)
 * @buffers: handle -> &struct convaccel_buffer
 * @jobs: job id -> &struct convaccel_job, until WAIT retires it
 * @next_job_id: where the cyclic job id allocation goes on
 * @pending: jobs not yet on the device, in submission order (ca->lock)
 * @rr: entry in ca->files while @pending is not empty (ca->lock)
 * @unfinished: jobs submitted and not yet retired (ca->lock)
 * @done: jobs that ended and are not yet retired (ca->lock)
 * @wq: woken when a job of this file ends
 * @cmd_lock: protects @cmd_cache
 * @cmd_cache: the command buffer of the last freed job, kept for the next
 *	(a compiled network submits the same job again and again)
 */
struct convaccel_file {
	struct kref ref;
	struct convaccel_dev *ca;
	struct address_space *mapping;
	struct list_head node;
	bool released;
	struct xarray buffers;
	struct xarray jobs;
	u32 next_job_id;
	struct list_head pending;
	struct list_head rr;
	unsigned int unfinished;
	unsigned int done;
	wait_queue_head_t wq;
	spinlock_t cmd_lock;	/* protects cmd_cache */
	struct convaccel_cmd {
		void *vaddr;
		dma_addr_t dma;
		size_t size;
	} cmd_cache;
};

/**
 * struct convaccel_buffer - device memory owned by a file
 * @ref: the handle, each mapping and each job that uses it
 * @ca: the device that allocated it
 * @node: entry in ca->buffer_list while it has memory (ca->buf_lock)
 * @size: bytes (page aligned)
 * @vaddr: kernel address; NULL once unbind freed the memory
 * @dma: device address
 */
struct convaccel_buffer {
	struct kref ref;
	struct convaccel_dev *ca;
	struct list_head node;
	size_t size;
	void *vaddr;
	dma_addr_t dma;
};

/**
 * struct convaccel_refs - the buffers a job's layers use, referenced
 * @bufs: room for CONVACCEL_LAYER_MAX_REFS per layer
 * @count: used entries
 */
struct convaccel_refs {
	struct convaccel_buffer **bufs;
	unsigned int count;
};

/* Buffers one layer may reference: in0, in1, out, weight, bias, requant, lut. */
#define CONVACCEL_LAYER_MAX_REFS	7

/* convaccel_drv.c */
u32 convaccel_read(struct convaccel_dev *ca, u32 reg);
void convaccel_write(struct convaccel_dev *ca, u32 reg, u32 val);
void convaccel_dev_put(struct convaccel_dev *ca);
void convaccel_cmd_cache_drop(struct convaccel_file *cf);
void convaccel_file_put(struct convaccel_file *cf);
int convaccel_irq_test(struct convaccel_dev *ca);

int convaccel_copy_to_user(void __user *arg, size_t usize, const void *req, size_t ksize);

/*
 * The ioctl handlers get their argument copied in (copy_struct_from_user)
 * as @req, and the user's pointer and struct size to copy results out.
 */

/* convaccel_buf.c */
int convaccel_ioctl_buffer_create(struct convaccel_file *cf, void *req,
				  void __user *arg, size_t usize);
int convaccel_ioctl_buffer_destroy(struct convaccel_file *cf, void *req,
				   void __user *arg, size_t usize);
struct convaccel_buffer *convaccel_buffer_lookup(struct convaccel_file *cf, u32 handle);
void convaccel_buffer_put(struct convaccel_buffer *buf);
void convaccel_buffers_release(struct convaccel_file *cf);
void convaccel_buffers_unplug(struct convaccel_dev *ca);
int convaccel_mmap(struct file *file, struct vm_area_struct *vma);

/* convaccel_job.c */
int convaccel_ioctl_submit(struct convaccel_file *cf, void *req, void __user *arg,
			   size_t usize);
int convaccel_ioctl_wait(struct convaccel_file *cf, void *req, void __user *arg,
			 size_t usize);
__poll_t convaccel_poll(struct file *file, poll_table *wait);
void convaccel_jobs_release(struct convaccel_file *cf);
void convaccel_jobs_complete(struct convaccel_dev *ca);
void convaccel_jobs_init(struct convaccel_dev *ca);
void convaccel_jobs_shutdown(struct convaccel_dev *ca);
void convaccel_cmd_caches_unplug(struct convaccel_dev *ca);
unsigned int convaccel_clamp_timeout(unsigned int ms);
void convaccel_recover(struct convaccel_dev *ca, const char *why);
void convaccel_timeout_work(struct work_struct *work);

/* convaccel_layers.c */
int convaccel_encode_layer(struct convaccel_file *cf, struct convaccel_refs *refs,
			   const struct convaccel_layer *l, u8 *d);
int convaccel_encode_layer2(struct convaccel_file *cf, struct convaccel_refs *refs,
			    const struct convaccel_layer2 *l, u8 *d);

/* convaccel_debugfs.c */
void convaccel_debugfs_init(struct convaccel_dev *ca);

#endif /* CONVACCEL_H */
