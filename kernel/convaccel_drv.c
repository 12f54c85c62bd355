// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel: driver for the convolution accelerator of the pyaccel board.
 *
 * A platform driver matched by the "qemu,convaccel" compatible string. Each
 * device gets a misc character device /dev/convaccelN. This file holds the
 * device's life cycle, the character device and sysfs; see convaccel.h for
 * the other files. The register map is specified in docs/hardware.md.
 */
#include <linux/debugfs.h>
#include <linux/dma-mapping.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "convaccel.h"

#define CONVACCEL_IRQ_TEST_TIMEOUT_MS	1000

/* A module parameter in [min, max]: anything else fails insmod with EINVAL. */
static int param_set_ranged(const char *val, const struct kernel_param *kp,
			    unsigned int min, unsigned int max)
{
	unsigned int v;
	int ret = kstrtouint(val, 0, &v);

	if (ret)
		return ret;
	if (v < min || v > max)
		return -EINVAL;
	*(unsigned int *)kp->arg = v;
	return 0;
}

static int param_set_timeout(const char *val, const struct kernel_param *kp)
{
	return param_set_ranged(val, kp, CONVACCEL_TIMEOUT_MIN_MS, CONVACCEL_TIMEOUT_MAX_MS);
}

static int param_set_memory(const char *val, const struct kernel_param *kp)
{
	return param_set_ranged(val, kp, 1, 1U << 20);
}

static const struct kernel_param_ops timeout_ops = {
	.set = param_set_timeout,
	.get = param_get_uint,
};

static const struct kernel_param_ops memory_ops = {
	.set = param_set_memory,
	.get = param_get_uint,
};

static unsigned int timeout_ms = 2000;
module_param_cb(timeout_ms, &timeout_ops, &timeout_ms, 0444);
MODULE_PARM_DESC(timeout_ms, "default job time budget on the device, ms (50..60000, default 2000)");

static unsigned int max_memory_mb = 1024;
module_param_cb(max_memory_mb, &memory_ops, &max_memory_mb, 0444);
MODULE_PARM_DESC(max_memory_mb, "device memory all buffers may hold together, MiB (1..1048576, default 1024)");

static DEFINE_IDA(convaccel_ida);

u32 convaccel_read(struct convaccel_dev *ca, u32 reg)
{
	return readl(ca->regs + reg);
}

void convaccel_write(struct convaccel_dev *ca, u32 reg, u32 val)
{
	writel(val, ca->regs + reg);
}

static void convaccel_dev_release(struct kref *ref)
{
	struct convaccel_dev *ca = container_of(ref, struct convaccel_dev, ref);

	cleanup_srcu_struct(&ca->srcu);
	put_device(ca->dev);
	kfree(ca);
}

void convaccel_dev_put(struct convaccel_dev *ca)
{
	kref_put(&ca->ref, convaccel_dev_release);
}

static void convaccel_file_release(struct kref *ref)
{
	struct convaccel_file *cf = container_of(ref, struct convaccel_file, ref);

	xa_destroy(&cf->buffers);
	xa_destroy(&cf->jobs);
	convaccel_cmd_cache_drop(cf);
	convaccel_dev_put(cf->ca);
	kfree(cf);
}

void convaccel_file_put(struct convaccel_file *cf)
{
	kref_put(&cf->ref, convaccel_file_release);
}

static irqreturn_t convaccel_irq(int irq, void *data)
{
	struct convaccel_dev *ca = data;
	u32 status = convaccel_read(ca, CONVACCEL_REG_INT_STATUS);

	if (!status)
		return IRQ_NONE;
	convaccel_write(ca, CONVACCEL_REG_INT_STATUS, status);
	atomic64_inc(&ca->irq_count);
	if (status & CONVACCEL_INT_SOFT)
		complete(&ca->soft_irq);
	return status & (CONVACCEL_INT_DONE | CONVACCEL_INT_ERROR) ?
	       IRQ_WAKE_THREAD : IRQ_HANDLED;
}

static irqreturn_t convaccel_irq_thread(int irq, void *data)
{
	convaccel_jobs_complete(data);
	return IRQ_HANDLED;
}

/**
 * convaccel_irq_test() - raise the device's software interrupt, await it
 * @ca: the device
 *
 * Return: 0, or -ETIMEDOUT if the handler did not see it within a second.
 */
int convaccel_irq_test(struct convaccel_dev *ca)
{
	reinit_completion(&ca->soft_irq);
	convaccel_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_SOFT_IRQ);
	if (!wait_for_completion_timeout(&ca->soft_irq,
					 msecs_to_jiffies(CONVACCEL_IRQ_TEST_TIMEOUT_MS))) {
		dev_err(ca->dev, "interrupt test: no interrupt within %d ms\n",
			CONVACCEL_IRQ_TEST_TIMEOUT_MS);
		return -ETIMEDOUT;
	}
	return 0;
}

static struct convaccel_dev *misc_to_ca(struct miscdevice *misc)
{
	return container_of(misc, struct convaccel_dev, misc);
}

static int convaccel_open(struct inode *inode, struct file *file)
{
	struct convaccel_dev *ca = misc_to_ca(file->private_data);
	struct convaccel_file *cf;

	cf = kzalloc(sizeof(*cf), GFP_KERNEL);
	if (!cf)
		return -ENOMEM;
	kref_init(&cf->ref);
	xa_init_flags(&cf->buffers, XA_FLAGS_ALLOC1);
	xa_init_flags(&cf->jobs, XA_FLAGS_ALLOC1);
	INIT_LIST_HEAD(&cf->pending);
	INIT_LIST_HEAD(&cf->rr);
	init_waitqueue_head(&cf->wq);
	spin_lock_init(&cf->cmd_lock);
	cf->mapping = file->f_mapping;
	mutex_lock(&ca->lock);
	if (ca->dead) {
		mutex_unlock(&ca->lock);
		kfree(cf);
		return -ENODEV;
	}
	list_add_tail(&cf->node, &ca->open_files);
	kref_get(&ca->ref);
	mutex_unlock(&ca->lock);
	cf->ca = ca;
	file->private_data = cf;
	return 0;
}

static int convaccel_release(struct inode *inode, struct file *file)
{
	struct convaccel_file *cf = file->private_data;

	convaccel_jobs_release(cf);	/* also takes cf off ca->open_files */
	convaccel_buffers_release(cf);
	convaccel_file_put(cf);
	return 0;
}

/**
 * convaccel_copy_to_user() - copy an ioctl's result to a struct of any size
 * @arg: the user's struct
 * @usize: its size, from the ioctl number
 * @req: the driver's struct
 * @ksize: its size
 *
 * An older userspace gets the fields it knows; a newer one gets zeros in
 * the fields this driver does not know.
 *
 * Return: 0 or -EFAULT.
 */
int convaccel_copy_to_user(void __user *arg, size_t usize, const void *req, size_t ksize)
{
	if (copy_to_user(arg, req, min(usize, ksize)))
		return -EFAULT;
	if (usize > ksize && clear_user(arg + ksize, usize - ksize))
		return -EFAULT;
	return 0;
}

static int convaccel_ioctl_info(struct convaccel_file *cf, void *kreq,
				void __user *arg, size_t usize)
{
	struct convaccel_dev *ca = cf->ca;
	struct convaccel_info *info = kreq;

	*info = ca->limits;
	info->timeout_ms = READ_ONCE(ca->timeout_ms);
	info->irq_count = atomic64_read(&ca->irq_count);
	return convaccel_copy_to_user(arg, usize, info, sizeof(*info));
}

/**
 * struct convaccel_ioctl_desc - how one ioctl's argument is copied
 * @dir: _IOC_READ and/or _IOC_WRITE, as the command must say
 * @size: the driver's struct
 * @min_size: the struct's first published size: a shorter one is EINVAL
 * @fn: the handler: gets the argument copied in (zero-extended), the user
 *	pointer and the user's size, and copies its results out itself
 */
struct convaccel_ioctl_desc {
	unsigned int dir;
	u16 size;
	u16 min_size;
	int (*fn)(struct convaccel_file *cf, void *req, void __user *arg, size_t usize);
};

/* Indexed by _IOC_NR; the first sizes are those of ABI 3, append only. */
static const struct convaccel_ioctl_desc convaccel_ioctls[] = {
	[0x00] = { _IOC_READ, sizeof(struct convaccel_info), 96, convaccel_ioctl_info },
	[0x01] = { _IOC_READ | _IOC_WRITE, sizeof(struct convaccel_buffer_create), 24,
		   convaccel_ioctl_buffer_create },
	[0x02] = { _IOC_WRITE, sizeof(struct convaccel_buffer_destroy), 8,
		   convaccel_ioctl_buffer_destroy },
	[0x03] = { _IOC_READ | _IOC_WRITE, sizeof(struct convaccel_submit), 32,
		   convaccel_ioctl_submit },
	[0x04] = { _IOC_READ | _IOC_WRITE, sizeof(struct convaccel_wait), 96,
		   convaccel_ioctl_wait },
};

static_assert(_IOC_NR(CONVACCEL_IOCTL_INFO) == 0x00 &&
	      _IOC_NR(CONVACCEL_IOCTL_BUFFER_CREATE) == 0x01 &&
	      _IOC_NR(CONVACCEL_IOCTL_BUFFER_DESTROY) == 0x02 &&
	      _IOC_NR(CONVACCEL_IOCTL_SUBMIT) == 0x03 &&
	      _IOC_NR(CONVACCEL_IOCTL_WAIT) == 0x04);

/*
 * One command, any struct size (Documentation/driver-api/ioctl.rst): the
 * type, number and direction must match; the size is the user's.
 */
static long convaccel_dispatch(struct convaccel_file *cf, unsigned int cmd,
			       void __user *arg)
{
	const struct convaccel_ioctl_desc *d;
	size_t usize = _IOC_SIZE(cmd);
	union {
		struct convaccel_info info;
		struct convaccel_buffer_create create;
		struct convaccel_buffer_destroy destroy;
		struct convaccel_submit submit;
		struct convaccel_wait wait;
	} req;
	int ret;

	if (_IOC_TYPE(cmd) != CONVACCEL_IOCTL_BASE || _IOC_NR(cmd) >= ARRAY_SIZE(convaccel_ioctls))
		return -ENOTTY;
	d = &convaccel_ioctls[_IOC_NR(cmd)];
	if (!d->fn || _IOC_DIR(cmd) != d->dir)
		return -ENOTTY;
	if (usize < d->min_size)
		return -EINVAL;
	memset(&req, 0, sizeof(req));
	if (d->dir & _IOC_WRITE) {
		ret = copy_struct_from_user(&req, d->size, arg, usize);
		if (ret)
			return ret;
	}
	return d->fn(cf, &req, arg, usize);
}

static long convaccel_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	struct convaccel_file *cf = file->private_data;
	void __user *uarg = (void __user *)arg;
	long ret = -ENODEV;
	int idx;

	/* unbind sets dead, then waits for every section like this one */
	idx = srcu_read_lock(&cf->ca->srcu);
	if (READ_ONCE(cf->ca->dead))
		goto out;
	ret = convaccel_dispatch(cf, cmd, uarg);
out:
	srcu_read_unlock(&cf->ca->srcu, idx);
	return ret;
}

static const struct file_operations convaccel_fops = {
	.owner = THIS_MODULE,
	.open = convaccel_open,
	.release = convaccel_release,
	.unlocked_ioctl = convaccel_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = convaccel_mmap,
	.poll = convaccel_poll,
	.llseek = noop_llseek,
};

/* The misc core keeps its struct miscdevice as the drvdata of this_device. */
static struct convaccel_dev *attr_to_ca(struct device *dev)
{
	return misc_to_ca(dev_get_drvdata(dev));
}

static ssize_t hw_version_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct convaccel_dev *ca = attr_to_ca(dev);

	return sysfs_emit(buf, "%u.%u\n", CONVACCEL_VERSION_MAJOR(ca->hw_version),
			  CONVACCEL_VERSION_MINOR(ca->hw_version));
}
static DEVICE_ATTR_RO(hw_version);

static ssize_t caps_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	return sysfs_emit(buf, "0x%08x\n", attr_to_ca(dev)->hw_caps);
}
static DEVICE_ATTR_RO(caps);

static ssize_t irq_count_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&attr_to_ca(dev)->irq_count));
}
static DEVICE_ATTR_RO(irq_count);

static ssize_t buffers_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&attr_to_ca(dev)->buffers));
}
static DEVICE_ATTR_RO(buffers);

static ssize_t buffer_bytes_show(struct device *dev,
				 struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%lld\n", atomic64_read(&attr_to_ca(dev)->buffer_bytes));
}
static DEVICE_ATTR_RO(buffer_bytes);

static ssize_t timeout_ms_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", READ_ONCE(attr_to_ca(dev)->timeout_ms));
}

static ssize_t timeout_ms_store(struct device *dev,
				struct device_attribute *attr,
				const char *buf, size_t count)
{
	struct convaccel_dev *ca = attr_to_ca(dev);
	unsigned int val;
	int ret = kstrtouint(buf, 0, &val);

	if (ret)
		return ret;
	if (val < CONVACCEL_TIMEOUT_MIN_MS || val > CONVACCEL_TIMEOUT_MAX_MS)
		return -EINVAL;
	WRITE_ONCE(ca->timeout_ms, val);
	return count;
}
static DEVICE_ATTR_RW(timeout_ms);

/*
 * The attribute is DEVICE_ATTR_RO(field) written out, with #field and
 * field##_show only: checkpatch --strict flags a macro argument used twice.
 */
#define CONVACCEL_STAT_ATTR(field)					\
static ssize_t field##_show(struct device *dev,				\
			    struct device_attribute *attr, char *buf)	\
{									\
	struct convaccel_dev *ca = attr_to_ca(dev);			\
	u64 val;							\
									\
	mutex_lock(&ca->lock);						\
	val = ca->stats.field;						\
	mutex_unlock(&ca->lock);					\
	return sysfs_emit(buf, "%llu\n", val);				\
}									\
static struct device_attribute dev_attr_##field = {			\
	.attr = { .name = #field, .mode = 0444 },			\
	.show = field##_show,						\
}

CONVACCEL_STAT_ATTR(jobs_done);
CONVACCEL_STAT_ATTR(jobs_failed);
CONVACCEL_STAT_ATTR(timeouts);
CONVACCEL_STAT_ATTR(resets);
CONVACCEL_STAT_ATTR(lost_irqs);
CONVACCEL_STAT_ATTR(requeued);
CONVACCEL_STAT_ATTR(busy_ns);

static struct attribute *convaccel_attrs[] = {
	&dev_attr_hw_version.attr,
	&dev_attr_caps.attr,
	&dev_attr_irq_count.attr,
	&dev_attr_buffers.attr,
	&dev_attr_buffer_bytes.attr,
	&dev_attr_timeout_ms.attr,
	&dev_attr_jobs_done.attr,
	&dev_attr_jobs_failed.attr,
	&dev_attr_timeouts.attr,
	&dev_attr_resets.attr,
	&dev_attr_lost_irqs.attr,
	&dev_attr_requeued.attr,
	&dev_attr_busy_ns.attr,
	NULL
};
ATTRIBUTE_GROUPS(convaccel);

/*
 * A limit register, believed only up to what the driver itself can handle:
 * the driver sizes allocations and loops by these.
 */
static u32 convaccel_read_limit(struct convaccel_dev *ca, u32 reg, u32 max)
{
	u32 v = convaccel_read(ca, reg);

	if (v >= 1 && v <= max)
		return v;
	dev_warn(ca->dev, "limit register 0x%03x reads %u; using %u\n", reg, v, max);
	return max;
}

/* What the device can do, from CAPS, as INFO reports it (bit N: code N). */
static void convaccel_read_caps(u32 caps, struct convaccel_info *l)
{
	l->ops = BIT(CONVACCEL_OP_CONV);
	if (caps & CONVACCEL_CAP_POOL)
		l->ops |= BIT(CONVACCEL_OP_MAXPOOL) | BIT(CONVACCEL_OP_AVGPOOL);
	l->activations = BIT(CONVACCEL_ACT_NONE) | BIT(CONVACCEL_ACT_RELU) |
			 BIT(CONVACCEL_ACT_RELU6);
	l->dtypes = BIT(CONVACCEL_TENSOR_F32);
	if (!(caps & CONVACCEL_CAP_V2))
		return;		/* a 1.x device: v1 layers only */
	l->layer2_size = sizeof(struct convaccel_layer2);
	if (caps & CONVACCEL_CAP_ELTWISE)
		l->ops |= BIT(CONVACCEL_OP_ADD) | BIT(CONVACCEL_OP_MUL) |
			  BIT(CONVACCEL_OP_SCALE_SHIFT) | BIT(CONVACCEL_OP_ACT);
	if (caps & CONVACCEL_CAP_GLOBAL_POOL)
		l->ops |= BIT(CONVACCEL_OP_GLOBAL_AVGPOOL) | BIT(CONVACCEL_OP_GLOBAL_MAXPOOL);
	if (caps & CONVACCEL_CAP_FC)
		l->ops |= BIT(CONVACCEL_OP_FC);
	if (caps & CONVACCEL_CAP_ACT_EXT)
		l->activations |= BIT(CONVACCEL_ACT_LEAKY_RELU) | BIT(CONVACCEL_ACT_SIGMOID) |
				  BIT(CONVACCEL_ACT_HARD_SIGMOID) | BIT(CONVACCEL_ACT_HARD_SWISH);
	if (caps & CONVACCEL_CAP_INT8) {
		l->ops |= BIT(CONVACCEL_OP_QUANTIZE) | BIT(CONVACCEL_OP_DEQUANTIZE);
		l->dtypes |= BIT(CONVACCEL_TENSOR_S8);
	}
}

static void convaccel_read_limits(struct convaccel_dev *ca)
{
	struct convaccel_info *l = &ca->limits;

	l->abi_version = CONVACCEL_ABI_VERSION;
	l->hw_id = ca->hw_id;
	l->hw_version = ca->hw_version;
	l->hw_caps = ca->hw_caps;
	l->instance = ca->instance;
	l->queue_depth = convaccel_read_limit(ca, CONVACCEL_REG_QUEUE_DEPTH,
					      CONVACCEL_DRV_MAX_QUEUE_DEPTH);
	l->max_kernel = convaccel_read_limit(ca, CONVACCEL_REG_MAX_KERNEL,
					     CONVACCEL_MAX_KERNEL_VALUE);
	l->max_pad = convaccel_read_limit(ca, CONVACCEL_REG_MAX_PAD, CONVACCEL_MAX_PAD_VALUE);
	l->max_channels = convaccel_read_limit(ca, CONVACCEL_REG_MAX_CHANNELS,
					       CONVACCEL_MAX_CHANNELS_VALUE);
	l->max_dim = convaccel_read_limit(ca, CONVACCEL_REG_MAX_DIM, CONVACCEL_MAX_DIM_VALUE);
	l->max_layers = convaccel_read_limit(ca, CONVACCEL_REG_MAX_LAYERS,
					     CONVACCEL_DRV_MAX_LAYERS);
	l->max_tensor_mb = convaccel_read_limit(ca, CONVACCEL_REG_MAX_TENSOR_MB,
						CONVACCEL_MAX_TENSOR_MB_VALUE);
	l->max_job_gmacs = convaccel_read_limit(ca, CONVACCEL_REG_MAX_JOB_GMACS,
						CONVACCEL_MAX_JOB_GMACS_VALUE);
	l->max_buffer_mb = CONVACCEL_MAX_BUFFER_MB;
	l->timeout_ms = ca->timeout_ms;
	l->model_clock_mhz = CONVACCEL_MODEL_CLOCK_MHZ;
	l->max_buffers = CONVACCEL_MAX_BUFFERS_PER_FILE;
	l->max_memory_mb = ca->max_memory >> 20;
	l->timeout_min_ms = CONVACCEL_TIMEOUT_MIN_MS;
	l->timeout_max_ms = CONVACCEL_TIMEOUT_MAX_MS;
	convaccel_read_caps(ca->hw_caps, l);
}

static void convaccel_put_action(void *data)
{
	convaccel_dev_put(data);
}

static void convaccel_ida_free(void *data)
{
	struct convaccel_dev *ca = data;

	ida_free(&convaccel_ida, ca->instance);
}

static void convaccel_hw_quiesce(void *data)
{
	struct convaccel_dev *ca = data;

	convaccel_write(ca, CONVACCEL_REG_INT_ENABLE, 0);
	convaccel_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_RESET);
}

static void convaccel_shutdown_action(void *data)
{
	convaccel_jobs_shutdown(data);
}

static void convaccel_misc_deregister(void *data)
{
	struct convaccel_dev *ca = data;

	debugfs_remove_recursive(ca->debugfs);
	misc_deregister(&ca->misc);
}

static int convaccel_check_hw(struct convaccel_dev *ca)
{
	struct device *dev = ca->dev;

	ca->hw_id = convaccel_read(ca, CONVACCEL_REG_ID);
	if (ca->hw_id != CONVACCEL_ID_VALUE)
		return dev_err_probe(dev, -ENODEV,
				     "ID register is 0x%08x, expected 0x%08x: not a convaccel\n",
				     ca->hw_id, CONVACCEL_ID_VALUE);
	ca->hw_version = convaccel_read(ca, CONVACCEL_REG_VERSION);
	/* 2.x runs 1.x command streams: both are served (CAPS says what is there) */
	if (CONVACCEL_VERSION_MAJOR(ca->hw_version) < 1 ||
	    CONVACCEL_VERSION_MAJOR(ca->hw_version) >
	    CONVACCEL_VERSION_MAJOR(CONVACCEL_VERSION_VALUE))
		return dev_err_probe(dev, -ENODEV,
				     "hardware version %u.%u is not supported (need 1.x to %u.x)\n",
				     CONVACCEL_VERSION_MAJOR(ca->hw_version),
				     CONVACCEL_VERSION_MINOR(ca->hw_version),
				     CONVACCEL_VERSION_MAJOR(CONVACCEL_VERSION_VALUE));
	ca->hw_caps = convaccel_read(ca, CONVACCEL_REG_CAPS);
	if ((ca->hw_caps & (CONVACCEL_CAP_RESET | CONVACCEL_CAP_CONV)) !=
	    (CONVACCEL_CAP_RESET | CONVACCEL_CAP_CONV))
		return dev_err_probe(dev, -ENODEV,
				     "capabilities 0x%08x lack reset or convolution\n",
				     ca->hw_caps);
	return 0;
}

static int convaccel_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct convaccel_dev *ca;
	struct resource *res;
	int irq, ret;

	ca = kzalloc(sizeof(*ca), GFP_KERNEL);
	if (!ca)
		return -ENOMEM;
	kref_init(&ca->ref);
	ret = init_srcu_struct(&ca->srcu);
	if (ret) {
		kfree(ca);
		return ret;
	}
	ca->dev = get_device(dev);
	ret = devm_add_action_or_reset(dev, convaccel_put_action, ca);
	if (ret)
		return ret;
	mutex_init(&ca->lock);
	mutex_init(&ca->buf_lock);
	INIT_LIST_HEAD(&ca->open_files);
	INIT_LIST_HEAD(&ca->buffer_list);
	init_completion(&ca->soft_irq);
	convaccel_jobs_init(ca);
	ca->timeout_ms = timeout_ms;
	ca->max_memory = (u64)max_memory_mb << 20;
	platform_set_drvdata(pdev, ca);

	res = platform_get_resource(pdev, IORESOURCE_MEM, 0);
	if (!res)
		return dev_err_probe(dev, -ENODEV,
				     "no MMIO window: the device tree node has no 'reg'\n");
	if (resource_size(res) < CONVACCEL_MMIO_SIZE)
		return dev_err_probe(dev, -EINVAL,
				     "MMIO window %pR is smaller than %d bytes\n",
				     res, CONVACCEL_MMIO_SIZE);
	ca->regs = devm_ioremap_resource(dev, res);
	if (IS_ERR(ca->regs))
		return dev_err_probe(dev, PTR_ERR(ca->regs),
				     "cannot map MMIO window %pR\n", res);

	irq = platform_get_irq_optional(pdev, 0);
	if (irq < 0)
		return dev_err_probe(dev, irq == -ENXIO ? -ENODEV : irq,
				     "no interrupt: the device tree node has no usable 'interrupts'\n");

	ret = convaccel_check_hw(ca);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret)
		return dev_err_probe(dev, ret, "no usable DMA mask\n");

	ca->instance = ida_alloc(&convaccel_ida, GFP_KERNEL);
	if (ca->instance < 0)
		return ca->instance;
	ret = devm_add_action_or_reset(dev, convaccel_ida_free, ca);
	if (ret)
		return ret;
	snprintf(ca->name, sizeof(ca->name), "convaccel%d", ca->instance);
	convaccel_read_limits(ca);

	convaccel_hw_quiesce(ca);
	ret = devm_add_action_or_reset(dev, convaccel_hw_quiesce, ca);
	if (ret)
		return ret;
	ret = devm_request_threaded_irq(dev, irq, convaccel_irq, convaccel_irq_thread,
					0, ca->name, ca);
	if (ret)
		return dev_err_probe(dev, ret, "cannot request IRQ %d\n", irq);
	ret = devm_add_action_or_reset(dev, convaccel_shutdown_action, ca);
	if (ret)
		return ret;
	convaccel_write(ca, CONVACCEL_REG_INT_ENABLE, CONVACCEL_INT_ALL);

	ca->misc.minor = MISC_DYNAMIC_MINOR;
	ca->misc.name = ca->name;
	ca->misc.fops = &convaccel_fops;
	ca->misc.parent = dev;
	ca->misc.groups = convaccel_groups;
	ca->misc.mode = 0600;
	ret = misc_register(&ca->misc);
	if (ret)
		return dev_err_probe(dev, ret, "cannot register /dev/%s\n", ca->name);
	convaccel_debugfs_init(ca);
	ret = devm_add_action_or_reset(dev, convaccel_misc_deregister, ca);
	if (ret)
		return ret;

	dev_info(dev, "%s: convaccel %u.%u, caps 0x%08x, irq %d, queue depth %u\n",
		 ca->name, CONVACCEL_VERSION_MAJOR(ca->hw_version),
		 CONVACCEL_VERSION_MINOR(ca->hw_version), ca->hw_caps, irq,
		 ca->limits.queue_depth);
	return 0;
}

/* Power-off or kexec: stop the device's DMA and interrupts. */
static void convaccel_platform_shutdown(struct platform_device *pdev)
{
	struct convaccel_dev *ca = platform_get_drvdata(pdev);

	if (ca)
		convaccel_hw_quiesce(ca);
}

static const struct of_device_id convaccel_of_match[] = {
	{ .compatible = "qemu,convaccel" },
	{ }
};
MODULE_DEVICE_TABLE(of, convaccel_of_match);

static struct platform_driver convaccel_driver = {
	.probe = convaccel_probe,
	.shutdown = convaccel_platform_shutdown,
	.driver = {
		.name = "convaccel",
		.of_match_table = convaccel_of_match,
	},
};
module_platform_driver(convaccel_driver);

MODULE_DESCRIPTION("pyaccel convolution accelerator driver");
MODULE_LICENSE("GPL");
