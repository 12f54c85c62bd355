// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel debugfs, /sys/kernel/debug/convaccelN/:
 *   regs       every register, by name
 *   irq_test   write anything: raise the device's software interrupt and
 *              wait for it (-ETIMEDOUT if it never arrives)
 *   inject     write "hang", "dma-error" or "lost-irq" (the next job gets
 *              it), "delay-us N" (every job) or "error-after N"
 *   recover    write anything: reset the device now; its jobs run again
 */
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#include "convaccel.h"

static const struct {
	const char *name;
	u32 reg;
} convaccel_regs[] = {
	{ "ID", CONVACCEL_REG_ID },
	{ "VERSION", CONVACCEL_REG_VERSION },
	{ "CAPS", CONVACCEL_REG_CAPS },
	{ "SCRATCH", CONVACCEL_REG_SCRATCH },
	{ "STATUS", CONVACCEL_REG_STATUS },
	{ "QUEUE_DEPTH", CONVACCEL_REG_QUEUE_DEPTH },
	{ "INT_STATUS", CONVACCEL_REG_INT_STATUS },
	{ "INT_ENABLE", CONVACCEL_REG_INT_ENABLE },
	{ "CMD_ADDR_LO", CONVACCEL_REG_CMD_ADDR_LO },
	{ "CMD_ADDR_HI", CONVACCEL_REG_CMD_ADDR_HI },
	{ "JOBS_DONE", CONVACCEL_REG_JOBS_DONE },
	{ "LAST_STATUS", CONVACCEL_REG_LAST_STATUS },
	{ "LAST_LAYER", CONVACCEL_REG_LAST_LAYER },
	{ "LAST_TAG", CONVACCEL_REG_LAST_TAG },
	{ "MAX_KERNEL", CONVACCEL_REG_MAX_KERNEL },
	{ "MAX_PAD", CONVACCEL_REG_MAX_PAD },
	{ "MAX_CHANNELS", CONVACCEL_REG_MAX_CHANNELS },
	{ "MAX_DIM", CONVACCEL_REG_MAX_DIM },
	{ "MAX_LAYERS", CONVACCEL_REG_MAX_LAYERS },
	{ "MAX_TENSOR_MB", CONVACCEL_REG_MAX_TENSOR_MB },
	{ "MAX_JOB_GMACS", CONVACCEL_REG_MAX_JOB_GMACS },
	{ "FAULT_CTRL", CONVACCEL_REG_FAULT_CTRL },
	{ "FAULT_DELAY_US", CONVACCEL_REG_FAULT_DELAY_US },
	{ "FAULT_ERROR_AFTER", CONVACCEL_REG_FAULT_ERROR_AFTER },
};

static int regs_show(struct seq_file *s, void *unused)
{
	struct convaccel_dev *ca = s->private;
	int i;

	mutex_lock(&ca->lock);
	for (i = 0; i < ARRAY_SIZE(convaccel_regs) && !ca->dead; i++)
		seq_printf(s, "%-18s 0x%03x 0x%08x\n", convaccel_regs[i].name,
			   convaccel_regs[i].reg, convaccel_read(ca, convaccel_regs[i].reg));
	mutex_unlock(&ca->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(regs);

static ssize_t irq_test_write(struct file *file, const char __user *buf,
			      size_t count, loff_t *ppos)
{
	int ret = convaccel_irq_test(file->private_data);

	return ret ? ret : count;
}

static const struct file_operations irq_test_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = irq_test_write,
	.llseek = noop_llseek,
};

static int convaccel_inject(struct convaccel_dev *ca, char *cmd)
{
	static const struct {
		const char *name;
		u32 bit;
	} next_job[] = {
		{ "hang", CONVACCEL_FAULT_HANG },
		{ "dma-error", CONVACCEL_FAULT_DMA_ERROR },
		{ "lost-irq", CONVACCEL_FAULT_LOST_IRQ },
	};
	char *arg = strim(cmd);
	char *name = strsep(&arg, " ");
	unsigned int val;
	int i;

	for (i = 0; i < ARRAY_SIZE(next_job); i++) {
		if (!strcmp(name, next_job[i].name) && !arg) {
			convaccel_write(ca, CONVACCEL_REG_FAULT_CTRL,
					convaccel_read(ca, CONVACCEL_REG_FAULT_CTRL) |
					next_job[i].bit);
			return 0;
		}
	}
	if (!arg || kstrtouint(arg, 0, &val))
		return -EINVAL;
	if (!strcmp(name, "delay-us"))
		convaccel_write(ca, CONVACCEL_REG_FAULT_DELAY_US, val);
	else if (!strcmp(name, "error-after"))
		convaccel_write(ca, CONVACCEL_REG_FAULT_ERROR_AFTER, val);
	else
		return -EINVAL;
	return 0;
}

static ssize_t inject_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct convaccel_dev *ca = file->private_data;
	char buf[32];
	int ret;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	mutex_lock(&ca->lock);
	ret = ca->dead ? -ENODEV : convaccel_inject(ca, buf);
	mutex_unlock(&ca->lock);
	return ret ? ret : count;
}

static const struct file_operations inject_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = inject_write,
	.llseek = noop_llseek,
};

static ssize_t recover_write(struct file *file, const char __user *buf,
			     size_t count, loff_t *ppos)
{
	convaccel_recover(file->private_data, "debugfs request");
	return count;
}

static const struct file_operations recover_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = recover_write,
	.llseek = noop_llseek,
};

/**
 * convaccel_debugfs_init() - create /sys/kernel/debug/convaccelN
 * @ca: the device
 */
void convaccel_debugfs_init(struct convaccel_dev *ca)
{
	ca->debugfs = debugfs_create_dir(ca->name, NULL);
	debugfs_create_file("regs", 0400, ca->debugfs, ca, &regs_fops);
	debugfs_create_file("irq_test", 0200, ca->debugfs, ca, &irq_test_fops);
	debugfs_create_file("inject", 0200, ca->debugfs, ca, &inject_fops);
	debugfs_create_file("recover", 0200, ca->debugfs, ca, &recover_fops);
}
