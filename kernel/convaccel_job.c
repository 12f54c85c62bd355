// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel jobs: the checks of SUBMIT, the queues, completion, timeouts,
 * recovery by reset, WAIT and poll.
 *
 * A job is a DMA-coherent command buffer (job header, hardware layer
 * descriptors, result record: docs/hardware.md) plus references to the
 * buffers its layers use. Each file queues its jobs in order on its pending
 * list; the device takes them from the files in round-robin order, up to
 * its queue depth. The device completes jobs in order and counts them in
 * JOBS_DONE, so completion handling walks the oldest jobs on the device.
 *
 * A job that runs over its budget gets the device reset: it ends with
 * TIMEOUT, and the other jobs that were on the device are queued again at
 * the front of their files' queues (those of closed files end with RESET).
 *
 * A job's command buffer is needed only while the job is queued: when it
 * ends, its result and per-layer statistics are copied into the job and
 * the command buffer goes back to the file's cache.
 */
#include <linux/dma-mapping.h>
#include <linux/overflow.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "convaccel.h"
#include "convaccel_compat.h"

/* What a job reports when it failed as a whole, not at one layer. */
#define CONVACCEL_NO_LAYER	0xffffffffU

/* uapi and hardware share the meaning of these codes: keep them equal. */
static_assert(CONVACCEL_OP_CONV == CONVACCEL_LAYER_OP_CONV);
static_assert(CONVACCEL_OP_MAXPOOL == CONVACCEL_LAYER_OP_MAXPOOL);
static_assert(CONVACCEL_OP_AVGPOOL == CONVACCEL_LAYER_OP_AVGPOOL);
static_assert(CONVACCEL_ACT_RELU6 == CONVACCEL_LAYER_ACT_RELU6);
static_assert(CONVACCEL_REASON_NO_MEMORY == CONVACCEL_ERR_NO_MEMORY);
static_assert(CONVACCEL_REASON_DMA == CONVACCEL_ERR_DMA);
static_assert(CONVACCEL_REASON_SHAPE == CONVACCEL_ERR_SHAPE);
static_assert(sizeof(struct convaccel_info) == 112);
static_assert(sizeof(struct convaccel_view) == 32);
static_assert(sizeof(struct convaccel_layer2) == 280);
static_assert(sizeof(struct convaccel_buffer_create) == 24);
static_assert(sizeof(struct convaccel_layer) == 152);
static_assert(sizeof(struct convaccel_submit) == 32);
static_assert(sizeof(struct convaccel_wait) == 96);
static_assert(sizeof(struct convaccel_layer_stats) == 32);
static_assert(CONVACCEL_DRV_MAX_LAYERS <= CONVACCEL_MAX_LAYERS_VALUE);

enum convaccel_job_state {
	CONVACCEL_JOB_PENDING,
	CONVACCEL_JOB_RUNNING,
	CONVACCEL_JOB_DONE,
};

/**
 * struct convaccel_job - one submitted job
 * @ref: held by the file's job table, by the queues and by each waiter
 * @cf: the submitting file (referenced)
 * @id: the job id in @cf, also the tag the device sees
 * @state: enum convaccel_job_state (ca->lock)
 * @node: entry in cf->pending or ca->hw_jobs (ca->lock)
 * @refs: buffers the layers use (referenced until the job ends)
 * @cmd: the command buffer: header, layers, result
 * @cmd_dma: its device address
 * @cmd_size: its size
 * @layer_count: layers in the job
 * @v2: the layers are v2 descriptors (SUBMIT_LAYER2)
 * @timeout_ms: budget on the device
 * @submitted: when SUBMIT queued it
 * @result: what WAIT returns, valid in state DONE
 * @stats: per-layer statistics, @layer_count of them, valid in state DONE
 */
struct convaccel_job {
	struct kref ref;
	struct convaccel_file *cf;
	u32 id;
	enum convaccel_job_state state;
	struct list_head node;
	struct convaccel_refs refs;
	u8 *cmd;
	dma_addr_t cmd_dma;
	size_t cmd_size;
	u32 layer_count;
	bool v2;
	unsigned int timeout_ms;
	ktime_t submitted;
	struct convaccel_wait result;
	struct convaccel_layer_stats *stats;
};

/* The command buffer: header, layers, result record, per-layer statistics. */
static size_t hw_layer_size(const struct convaccel_job *job)
{
	return job->v2 ? CONVACCEL_LAYER2_SIZE : CONVACCEL_LAYER_SIZE;
}

static size_t result_offset(const struct convaccel_job *job)
{
	return CONVACCEL_JOB_SIZE + (size_t)job->layer_count * hw_layer_size(job);
}

static size_t stats_offset(const struct convaccel_job *job)
{
	return result_offset(job) + CONVACCEL_RESULT_SIZE;
}

static void convaccel_job_drop_buffers(struct convaccel_job *job)
{
	while (job->refs.count)
		convaccel_buffer_put(job->refs.bufs[--job->refs.count]);
}

/*
 * Command buffers: a file keeps the last freed one for its next job, which
 * saves a DMA allocation per inference when the same network runs again.
 */
static int convaccel_cmd_get(struct convaccel_file *cf, struct convaccel_job *job)
{
	struct convaccel_cmd cached = { };

	spin_lock(&cf->cmd_lock);
	if (cf->cmd_cache.vaddr && cf->cmd_cache.size >= job->cmd_size) {
		cached = cf->cmd_cache;
		cf->cmd_cache.vaddr = NULL;
	}
	spin_unlock(&cf->cmd_lock);
	if (cached.vaddr) {
		memset(cached.vaddr, 0, cached.size);
		job->cmd = cached.vaddr;
		job->cmd_dma = cached.dma;
		job->cmd_size = cached.size;
		return 0;
	}
	job->cmd = dma_alloc_coherent(cf->ca->dev, job->cmd_size, &job->cmd_dma, GFP_KERNEL);
	return job->cmd ? 0 : -ENOMEM;
}

static void convaccel_cmd_put(struct convaccel_file *cf, struct convaccel_job *job)
{
	struct convaccel_cmd old = { .vaddr = job->cmd, .dma = job->cmd_dma,
				     .size = job->cmd_size };

	spin_lock(&cf->cmd_lock);
	swap(old, cf->cmd_cache);	/* keep the newest, free the one it replaces */
	spin_unlock(&cf->cmd_lock);
	if (old.vaddr)
		dma_free_coherent(cf->ca->dev, old.size, old.vaddr, old.dma);
}

/**
 * convaccel_cmd_cache_drop() - free a file's cached command buffer
 * @cf: the file, being freed
 */
void convaccel_cmd_cache_drop(struct convaccel_file *cf)
{
	struct convaccel_cmd old = { };

	spin_lock(&cf->cmd_lock);
	swap(old, cf->cmd_cache);
	spin_unlock(&cf->cmd_lock);
	if (old.vaddr)
		dma_free_coherent(cf->ca->dev, old.size, old.vaddr, old.dma);
}

/**
 * convaccel_cmd_caches_unplug() - free the cached command buffers (unbind)
 * @ca: the device, dead: no job is queued or built any more
 */
void convaccel_cmd_caches_unplug(struct convaccel_dev *ca)
{
	struct convaccel_file *cf;

	mutex_lock(&ca->lock);
	list_for_each_entry(cf, &ca->open_files, node)
		convaccel_cmd_cache_drop(cf);
	mutex_unlock(&ca->lock);
}

/* The command buffer of an ended job is not needed any more. */
static void convaccel_job_release_cmd(struct convaccel_job *job)
{
	if (job->cmd)
		convaccel_cmd_put(job->cf, job);
	job->cmd = NULL;
}

static void convaccel_job_free(struct kref *ref)
{
	struct convaccel_job *job = container_of(ref, struct convaccel_job, ref);
	struct convaccel_file *cf = job->cf;

	convaccel_job_drop_buffers(job);
	kfree(job->refs.bufs);
	kfree(job->stats);
	if (job->cmd)
		convaccel_cmd_put(cf, job);
	kfree(job);
	convaccel_file_put(cf);
}

static void convaccel_job_put(struct convaccel_job *job)
{
	kref_put(&job->ref, convaccel_job_free);
}

/* --- SUBMIT: check the layers, build the command buffer -------------------- */

/* Copy in and encode each layer (struct convaccel_layer or layer2). */
static int copy_layers(struct convaccel_file *cf, struct convaccel_job *job,
		       const struct convaccel_submit *req)
{
	const u8 __user *src = u64_to_user_ptr(req->layers);
	union {
		struct convaccel_layer v1;
		struct convaccel_layer2 v2;
	} l;
	size_t ksize = job->v2 ? sizeof(l.v2) : sizeof(l.v1);
	u8 *d = job->cmd + CONVACCEL_JOB_SIZE;
	u32 i;
	int ret;

	if (req->layer_size < ksize)
		return -EINVAL;
	for (i = 0; i < req->layer_count; i++, src += req->layer_size) {
		/* a newer userspace may pass a longer struct: its tail must be 0 */
		ret = copy_struct_from_user(&l, ksize, src, req->layer_size);
		if (ret)
			return ret;
		ret = job->v2 ? convaccel_encode_layer2(cf, &job->refs, &l.v2, d) :
				convaccel_encode_layer(cf, &job->refs, &l.v1, d);
		if (ret)
			return ret;
		d += hw_layer_size(job);
	}
	return 0;
}

static struct convaccel_job *convaccel_job_build(struct convaccel_file *cf,
						 const struct convaccel_submit *req)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_job *job;
	int ret;

	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job)
		return ERR_PTR(-ENOMEM);
	kref_init(&job->ref);
	kref_get(&cf->ref);
	job->cf = cf;
	INIT_LIST_HEAD(&job->node);
	job->layer_count = req->layer_count;
	job->v2 = req->flags & CONVACCEL_SUBMIT_LAYER2;
	job->timeout_ms = convaccel_clamp_timeout(req->timeout_ms ?: READ_ONCE(ca->timeout_ms));
	job->refs.bufs = kcalloc(CONVACCEL_LAYER_MAX_REFS * req->layer_count,
				 sizeof(*job->refs.bufs), GFP_KERNEL);
	job->stats = kcalloc(req->layer_count, sizeof(*job->stats), GFP_KERNEL);
	job->cmd_size = stats_offset(job) +
			(size_t)req->layer_count * CONVACCEL_STATS_SIZE;
	ret = job->refs.bufs && job->stats ? convaccel_cmd_get(cf, job) : -ENOMEM;
	if (ret)
		goto err;
	ret = copy_layers(cf, job, req);
	if (ret)
		goto err;
	put_unaligned_le32(CONVACCEL_JOB_MAGIC, job->cmd + CONVACCEL_JOB_MAGIC_OFF);
	put_unaligned_le32(req->layer_count, job->cmd + CONVACCEL_JOB_LAYER_COUNT_OFF);
	put_unaligned_le64(job->cmd_dma + CONVACCEL_JOB_SIZE,
			   job->cmd + CONVACCEL_JOB_LAYERS_OFF);
	put_unaligned_le64(job->cmd_dma + result_offset(job),
			   job->cmd + CONVACCEL_JOB_RESULT_OFF);
	put_unaligned_le32(CONVACCEL_JOB_FLAG_STATS | (job->v2 ? CONVACCEL_JOB_FLAG_V2 : 0),
			   job->cmd + CONVACCEL_JOB_FLAGS_OFF);
	put_unaligned_le64(job->cmd_dma + stats_offset(job),
			   job->cmd + CONVACCEL_JOB_STATS_OFF);
	return job;
err:
	convaccel_job_put(job);
	return ERR_PTR(ret);
}

/* --- the queues ------------------------------------------------------------ */

static void convaccel_arm_timeout(struct convaccel_dev *ca)
{
	struct convaccel_job *head;

	if (!ca->hw_count) {
		cancel_delayed_work(&ca->timeout_work);
		return;
	}
	head = list_first_entry(&ca->hw_jobs, struct convaccel_job, node);
	mod_delayed_work(system_wq, &ca->timeout_work,
			 msecs_to_jiffies(head->timeout_ms) + 1);
}

/* Feed the device from the files' queues, round robin. Under ca->lock. */
static void convaccel_kick(struct convaccel_dev *ca)
{
	while (!ca->dead && ca->hw_count < ca->limits.queue_depth &&
	       !list_empty(&ca->files)) {
		struct convaccel_file *cf = list_first_entry(&ca->files,
							     struct convaccel_file, rr);
		struct convaccel_job *job = list_first_entry(&cf->pending,
							     struct convaccel_job, node);

		list_move_tail(&job->node, &ca->hw_jobs);
		list_del_init(&cf->rr);
		if (!list_empty(&cf->pending))
			list_add_tail(&cf->rr, &ca->files);
		job->state = CONVACCEL_JOB_RUNNING;
		memset(job->cmd + result_offset(job), 0,
		       job->cmd_size - result_offset(job));
		put_unaligned_le32(job->id, job->cmd + CONVACCEL_JOB_TAG_OFF);
		if (!ca->hw_count++) {
			ca->hw_started = ktime_get();
			ca->busy_since = ca->hw_started;
			convaccel_arm_timeout(ca);
		}
		/* writel orders the command buffer's writes before the doorbell */
		convaccel_write(ca, CONVACCEL_REG_CMD_ADDR_LO, lower_32_bits(job->cmd_dma));
		convaccel_write(ca, CONVACCEL_REG_CMD_ADDR_HI, upper_32_bits(job->cmd_dma));
		convaccel_write(ca, CONVACCEL_REG_DOORBELL, 1);
	}
}

/* Queue a job at the back (or, when requeued after a reset, the front). */
static void convaccel_queue(struct convaccel_dev *ca, struct convaccel_job *job,
			    bool front)
{
	struct convaccel_file *cf = job->cf;

	job->state = CONVACCEL_JOB_PENDING;
	if (front)
		list_add(&job->node, &cf->pending);
	else
		list_add_tail(&job->node, &cf->pending);
	if (list_empty(&cf->rr)) {
		if (front)
			list_add(&cf->rr, &ca->files);
		else
			list_add_tail(&cf->rr, &ca->files);
	}
}

/**
 * convaccel_clamp_timeout() - a job budget within the documented range
 * @ms: the budget asked for
 *
 * Return: @ms clamped to CONVACCEL_TIMEOUT_MIN_MS .. CONVACCEL_TIMEOUT_MAX_MS.
 */
unsigned int convaccel_clamp_timeout(unsigned int ms)
{
	return clamp_t(unsigned int, ms, CONVACCEL_TIMEOUT_MIN_MS, CONVACCEL_TIMEOUT_MAX_MS);
}

/*
 * A job has ended: publish its result, drop the queue's reference. A job
 * that did not end on the device (timeout, reset) has no failing layer.
 */
static void convaccel_job_end(struct convaccel_dev *ca, struct convaccel_job *job,
			      u32 status)
{
	struct convaccel_file *cf = job->cf;

	list_del_init(&job->node);
	job->result.status = status;
	if (status == CONVACCEL_JOB_STATUS_TIMEOUT || status == CONVACCEL_JOB_STATUS_RESET)
		job->result.layer = CONVACCEL_NO_LAYER;
	job->result.latency_ns = ktime_get_ns() - ktime_to_ns(job->submitted);
	job->state = CONVACCEL_JOB_DONE;
	convaccel_job_release_cmd(job);
	convaccel_job_drop_buffers(job);
	ca->stats.jobs_done++;
	if (status != CONVACCEL_JOB_STATUS_OK)
		ca->stats.jobs_failed++;
	cf->done++;
	wake_up_all(&cf->wq);
	convaccel_job_put(job);
}

/* Copy the per-layer statistics out of the command buffer. */
static void convaccel_job_read_stats(struct convaccel_job *job)
{
	const u8 *r = job->cmd + stats_offset(job);
	u32 i;

	for (i = 0; i < job->layer_count; i++, r += CONVACCEL_STATS_SIZE) {
		job->stats[i].device_ns = get_unaligned_le64(r + CONVACCEL_STATS_HOST_NS_OFF);
		job->stats[i].cycles = get_unaligned_le64(r + CONVACCEL_STATS_CYCLES_OFF);
		job->stats[i].macs = get_unaligned_le64(r + CONVACCEL_STATS_MACS_OFF);
		job->stats[i].bytes = get_unaligned_le64(r + CONVACCEL_STATS_BYTES_OFF);
	}
}

/* The oldest job on the device completed: read its result record. */
static void convaccel_job_retire_hw(struct convaccel_dev *ca, struct convaccel_job *job)
{
	const u8 *r = job->cmd + result_offset(job);
	struct convaccel_wait *res = &job->result;
	u32 hw_status, tag;

	dma_rmb();
	hw_status = get_unaligned_le32(r + CONVACCEL_RESULT_STATUS_OFF);
	tag = get_unaligned_le32(r + CONVACCEL_RESULT_TAG_OFF);
	res->reason = hw_status;
	res->layer = get_unaligned_le32(r + CONVACCEL_RESULT_LAYER_OFF);
	res->layers_done = get_unaligned_le32(r + CONVACCEL_RESULT_LAYERS_DONE_OFF);
	res->macs = get_unaligned_le64(r + CONVACCEL_RESULT_MACS_OFF);
	res->bytes_read = get_unaligned_le64(r + CONVACCEL_RESULT_BYTES_READ_OFF);
	res->bytes_written = get_unaligned_le64(r + CONVACCEL_RESULT_BYTES_WRITTEN_OFF);
	res->device_ns = get_unaligned_le64(r + CONVACCEL_RESULT_HOST_NS_OFF);
	res->cycles = get_unaligned_le64(r + CONVACCEL_RESULT_CYCLES_OFF);
	convaccel_job_read_stats(job);
	if (tag != job->id) {
		dev_err_ratelimited(ca->dev, "job %u: result record has tag %u\n",
				    job->id, tag);
		res->reason = CONVACCEL_REASON_DMA;
		hw_status = CONVACCEL_ERR_DMA;
	}
	ca->hw_count--;
	convaccel_job_end(ca, job, hw_status == CONVACCEL_ERR_OK ?
			  CONVACCEL_JOB_STATUS_OK : CONVACCEL_JOB_STATUS_ERROR);
}

static void convaccel_account_busy(struct convaccel_dev *ca)
{
	if (!ca->hw_count)
		ca->stats.busy_ns += ktime_to_ns(ktime_sub(ktime_get(), ca->busy_since));
}

/* Retire the jobs JOBS_DONE says completed. Under ca->lock; returns how many. */
static u32 convaccel_collect(struct convaccel_dev *ca)
{
	u32 done = convaccel_read(ca, CONVACCEL_REG_JOBS_DONE);
	u32 i, n = done - ca->jobs_done_seen;

	if (n > ca->hw_count) {
		dev_err_ratelimited(ca->dev, "device reports %u completions for %u jobs\n",
				    n, ca->hw_count);
		n = ca->hw_count;
	}
	ca->jobs_done_seen = done;
	for (i = 0; i < n; i++)
		convaccel_job_retire_hw(ca, list_first_entry(&ca->hw_jobs,
							     struct convaccel_job, node));
	if (n) {
		convaccel_account_busy(ca);
		ca->hw_started = ktime_get();
		convaccel_arm_timeout(ca);
	}
	return n;
}

/**
 * convaccel_jobs_complete() - handle completions (the IRQ thread)
 * @ca: the device
 */
void convaccel_jobs_complete(struct convaccel_dev *ca)
{
	mutex_lock(&ca->lock);
	if (!ca->dead) {
		convaccel_collect(ca);
		convaccel_kick(ca);
	}
	mutex_unlock(&ca->lock);
}

/*
 * Reset the device. @culprit (if any) ends with TIMEOUT; the other jobs on
 * the device go back to the front of their queues. Under ca->lock.
 */
static void convaccel_reset(struct convaccel_dev *ca, struct convaccel_job *culprit,
			    const char *why)
{
	struct convaccel_job *job, *tmp;
	bool busy = ca->hw_count;

	dev_warn_ratelimited(ca->dev, "%s: resetting the device (%u jobs on it)\n", why,
			     ca->hw_count);
	convaccel_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_RESET);
	ca->stats.resets++;
	ca->jobs_done_seen = 0;
	if (culprit) {
		ca->stats.timeouts++;
		convaccel_job_end(ca, culprit, CONVACCEL_JOB_STATUS_TIMEOUT);
	}
	/* The others run again, unless their file is closed: nobody waits. */
	list_for_each_entry_safe_reverse(job, tmp, &ca->hw_jobs, node) {
		if (job->cf->released) {
			convaccel_job_end(ca, job, CONVACCEL_JOB_STATUS_RESET);
			continue;
		}
		list_del_init(&job->node);
		convaccel_queue(ca, job, true);
		ca->stats.requeued++;
	}
	ca->hw_count = 0;
	if (busy)
		convaccel_account_busy(ca);
	convaccel_arm_timeout(ca);
	convaccel_write(ca, CONVACCEL_REG_INT_ENABLE, CONVACCEL_INT_ALL);
	convaccel_kick(ca);
}

/**
 * convaccel_recover() - reset the device now; its jobs are run again
 * @ca: the device
 * @why: for the kernel log
 */
void convaccel_recover(struct convaccel_dev *ca, const char *why)
{
	mutex_lock(&ca->lock);
	if (!ca->dead)
		convaccel_reset(ca, NULL, why);
	mutex_unlock(&ca->lock);
}

void convaccel_timeout_work(struct work_struct *work)
{
	struct convaccel_dev *ca = container_of(to_delayed_work(work),
						struct convaccel_dev, timeout_work);
	struct convaccel_job *head;
	s64 left_ms;

	mutex_lock(&ca->lock);
	if (ca->dead || !ca->hw_count)
		goto out;
	/* a completion whose interrupt never came */
	if (convaccel_collect(ca)) {
		ca->stats.lost_irqs++;
		dev_warn_ratelimited(ca->dev, "job completion without an interrupt\n");
		convaccel_kick(ca);
		goto out;
	}
	head = list_first_entry(&ca->hw_jobs, struct convaccel_job, node);
	left_ms = head->timeout_ms - ktime_ms_delta(ktime_get(), ca->hw_started);
	if (left_ms > 0) {
		mod_delayed_work(system_wq, &ca->timeout_work, msecs_to_jiffies(left_ms) + 1);
		goto out;
	}
	dev_warn_ratelimited(ca->dev, "job %u ran over its budget of %u ms\n", head->id,
			     head->timeout_ms);
	convaccel_reset(ca, head, "job timeout");
out:
	mutex_unlock(&ca->lock);
}

void convaccel_jobs_init(struct convaccel_dev *ca)
{
	INIT_LIST_HEAD(&ca->files);
	INIT_LIST_HEAD(&ca->hw_jobs);
	INIT_DELAYED_WORK(&ca->timeout_work, convaccel_timeout_work);
}

/*
 * The device is going away: end every job with RESET, wake every waiter and
 * poller, wait for the ioctls and mmaps in flight, then tear down the user
 * mappings and give back all DMA memory while the device is still bound.
 */
void convaccel_jobs_shutdown(struct convaccel_dev *ca)
{
	struct convaccel_file *cf, *next;
	struct convaccel_job *job, *tmp;
	LIST_HEAD(files);

	mutex_lock(&ca->lock);
	WRITE_ONCE(ca->dead, true);
	convaccel_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_RESET);
	list_for_each_entry_safe(job, tmp, &ca->hw_jobs, node)
		convaccel_job_end(ca, job, CONVACCEL_JOB_STATUS_RESET);
	ca->hw_count = 0;
	/* off the round robin first: ending a file's last job may free it */
	list_splice_init(&ca->files, &files);
	list_for_each_entry_safe(cf, next, &files, rr) {
		list_del_init(&cf->rr);
		list_for_each_entry_safe(job, tmp, &cf->pending, node)
			convaccel_job_end(ca, job, CONVACCEL_JOB_STATUS_RESET);
	}
	list_for_each_entry(cf, &ca->open_files, node)
		wake_up_all(&cf->wq);
	mutex_unlock(&ca->lock);
	cancel_delayed_work_sync(&ca->timeout_work);

	synchronize_srcu(&ca->srcu);
	mutex_lock(&ca->lock);
	list_for_each_entry(cf, &ca->open_files, node)
		unmap_mapping_range(cf->mapping, 0, 0, 1);
	mutex_unlock(&ca->lock);
	convaccel_buffers_unplug(ca);
	convaccel_cmd_caches_unplug(ca);
}

/* --- the ioctls ------------------------------------------------------------- */

int convaccel_ioctl_submit(struct convaccel_file *cf, void *kreq, void __user *arg,
			   size_t usize)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_submit __user *uarg = arg;
	struct convaccel_submit *req = kreq;
	struct convaccel_job *job;
	u32 id;
	int ret;

	if ((req->flags & ~CONVACCEL_SUBMIT_LAYER2) || req->job_id || !req->layer_count ||
	    req->layer_count > ca->limits.max_layers ||
	    req->layer_size > PAGE_SIZE || req->layer_size % sizeof(__u64))
		return -EINVAL;
	if ((req->flags & CONVACCEL_SUBMIT_LAYER2) && !ca->limits.layer2_size)
		return -EOPNOTSUPP;

	job = convaccel_job_build(cf, req);
	if (IS_ERR(job))
		return PTR_ERR(job);

	/*
	 * Reserve the id and hand it out before the job is visible: the copy
	 * may fault and sleep for as long as userspace likes (userfaultfd,
	 * FUSE), so it must not hold ca->lock.
	 */
	ret = xa_alloc_cyclic(&cf->jobs, &id, NULL, xa_limit_31b, &cf->next_job_id,
			      GFP_KERNEL);
	if (ret < 0)
		goto err_put;
	job->id = id;
	if (put_user((u64)id, &uarg->job_id)) {
		ret = -EFAULT;
		goto err_release;
	}

	mutex_lock(&ca->lock);
	if (ca->dead) {
		ret = -ENODEV;
		goto err_unlock;
	}
	if (cf->unfinished >= CONVACCEL_MAX_JOBS_PER_FILE) {
		ret = -EBUSY;
		goto err_unlock;
	}
	/* the slot is reserved: storing into it allocates nothing */
	ret = xa_err(xa_store(&cf->jobs, id, job, GFP_KERNEL));
	if (ret)
		goto err_unlock;
	cf->unfinished++;
	kref_get(&job->ref);		/* the queue's reference */
	job->submitted = ktime_get();
	convaccel_queue(ca, job, false);
	convaccel_kick(ca);
	mutex_unlock(&ca->lock);
	return 0;

err_unlock:
	mutex_unlock(&ca->lock);
err_release:
	xa_release(&cf->jobs, id);
err_put:
	convaccel_job_put(job);
	return ret;
}

/* Copy up to @count per-layer records of an ended job to userspace. */
static int copy_layer_stats(struct convaccel_job *job, u64 uptr, u32 count)
{
	struct convaccel_layer_stats __user *dst = u64_to_user_ptr(uptr);
	size_t n = min(count, job->layer_count);

	return copy_to_user(dst, job->stats, n * sizeof(*dst)) ? -EFAULT : 0;
}

int convaccel_ioctl_wait(struct convaccel_file *cf, void *kreq, void __user *arg,
			 size_t usize)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_wait *req = kreq;
	struct convaccel_job *job;
	s64 left;
	int ret = 0;

	if (req->layer_stats && req->layer_stats_size != sizeof(struct convaccel_layer_stats))
		return -EINVAL;
	if (!req->job_id || req->job_id > U32_MAX)
		return -ENOENT;
	xa_lock(&cf->jobs);
	job = xa_load(&cf->jobs, req->job_id);
	if (job)
		kref_get(&job->ref);
	xa_unlock(&cf->jobs);
	if (!job)
		return -ENOENT;

	left = req->timeout_ns - ktime_to_ns(ktime_get());
	if (left > 0) {
		long r = wait_event_interruptible_timeout(cf->wq,
				READ_ONCE(job->state) == CONVACCEL_JOB_DONE ||
				READ_ONCE(ca->dead),
				nsecs_to_jiffies(left) + 1);
		if (r < 0)
			ret = -ERESTARTSYS;
	}
	mutex_lock(&ca->lock);
	if (!ret && job->state != CONVACCEL_JOB_DONE)
		ret = ca->dead ? -ENODEV : -ETIMEDOUT;
	mutex_unlock(&ca->lock);
	if (ret)
		goto out;

	/* An ended job's result no longer changes: copy it out, no lock. */
	req->status = job->result.status;
	req->reason = job->result.reason;
	req->layer = job->result.layer;
	req->layers_done = job->result.layers_done;
	req->macs = job->result.macs;
	req->bytes_read = job->result.bytes_read;
	req->bytes_written = job->result.bytes_written;
	req->device_ns = job->result.device_ns;
	req->cycles = job->result.cycles;
	req->latency_ns = job->result.latency_ns;
	if (req->layer_stats)
		ret = copy_layer_stats(job, req->layer_stats, req->layer_stats_count);
	if (!ret)
		ret = convaccel_copy_to_user(arg, usize, req, sizeof(*req));
	if (ret)
		goto out;	/* not retired: WAIT again can still get it */

	/* Retire it; a concurrent waiter of the same job got it too. */
	mutex_lock(&ca->lock);
	if (xa_cmpxchg(&cf->jobs, job->id, job, NULL, 0) == job) {
		cf->done--;
		cf->unfinished--;
		convaccel_job_put(job);		/* the table's reference */
	}
	mutex_unlock(&ca->lock);
out:
	convaccel_job_put(job);
	return ret;
}

__poll_t convaccel_poll(struct file *file, poll_table *wait)
{
	struct convaccel_file *cf = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &cf->wq, wait);
	mutex_lock(&cf->ca->lock);
	if (cf->done)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (cf->ca->dead)
		mask |= EPOLLERR | EPOLLHUP;
	mutex_unlock(&cf->ca->lock);
	return mask;
}

/*
 * The file is closing: cancel its queued jobs; running ones finish alone (a
 * reset ends them instead of running them again).
 */
void convaccel_jobs_release(struct convaccel_file *cf)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_job *job, *tmp;
	unsigned long id;

	mutex_lock(&ca->lock);
	cf->released = true;
	list_del_init(&cf->node);
	list_for_each_entry_safe(job, tmp, &cf->pending, node) {
		list_del_init(&job->node);
		job->state = CONVACCEL_JOB_DONE;
		convaccel_job_put(job);
	}
	list_del_init(&cf->rr);
	mutex_unlock(&ca->lock);
	xa_for_each(&cf->jobs, id, job) {
		xa_erase(&cf->jobs, id);
		convaccel_job_put(job);
	}
}
