// SPDX-License-Identifier: GPL-2.0-only
/*
 * convaccel: driver for the convolution accelerator of the pyaccel board.
 *
 * A platform driver matched by the "qemu,convaccel" compatible string. Each
 * device gets a misc character device /dev/convaccelN. The register map is
 * in convaccel_regs.h and specified in docs/hardware.md.
 */
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/seq_file.h>
#include <linux/uaccess.h>

#include <uapi/linux/convaccel.h>
#include "convaccel_regs.h"

#define CONVACCEL_IRQ_TEST_TIMEOUT_MS	1000

static DEFINE_IDA(convaccel_ida);

/**
 * struct convaccel_dev - one accelerator instance
 * @dev: the platform device's struct device
 * @regs: the MMIO window
 * @misc: /dev/convaccelN
 * @name: "convaccelN"
 * @instance: N
 * @hw_id: ID register read at probe
 * @hw_version: VERSION register read at probe
 * @hw_caps: CAPS register read at probe
 * @irq_count: interrupts handled
 * @soft_irq: completed by the handler when it sees INT_STATUS.SOFT
 * @debugfs: debugfs folder of this instance
 */
struct convaccel_dev {
	struct device *dev;
	void __iomem *regs;
	struct miscdevice misc;
	char name[16];
	int instance;
	u32 hw_id;
	u32 hw_version;
	u32 hw_caps;
	atomic64_t irq_count;
	struct completion soft_irq;
	struct dentry *debugfs;
};

static u32 ca_read(struct convaccel_dev *ca, u32 reg)
{
	return readl(ca->regs + reg);
}

static void ca_write(struct convaccel_dev *ca, u32 reg, u32 val)
{
	writel(val, ca->regs + reg);
}

static irqreturn_t convaccel_irq(int irq, void *data)
{
	struct convaccel_dev *ca = data;
	u32 status = ca_read(ca, CONVACCEL_REG_INT_STATUS);

	if (!status)
		return IRQ_NONE;
	ca_write(ca, CONVACCEL_REG_INT_STATUS, status);
	atomic64_inc(&ca->irq_count);
	if (status & CONVACCEL_INT_SOFT)
		complete(&ca->soft_irq);
	return IRQ_HANDLED;
}

/* Raise the device's software interrupt and wait for the handler to see it. */
static int convaccel_irq_test(struct convaccel_dev *ca)
{
	reinit_completion(&ca->soft_irq);
	ca_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_SOFT_IRQ);
	if (!wait_for_completion_timeout(&ca->soft_irq,
					 msecs_to_jiffies(CONVACCEL_IRQ_TEST_TIMEOUT_MS))) {
		dev_err(ca->dev, "interrupt test: no interrupt within %d ms\n",
			CONVACCEL_IRQ_TEST_TIMEOUT_MS);
		return -ETIMEDOUT;
	}
	return 0;
}

static struct convaccel_dev *file_to_ca(struct file *file)
{
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct convaccel_dev, misc);
}

static long convaccel_ioctl_info(struct convaccel_dev *ca, void __user *arg)
{
	struct convaccel_info info = {
		.abi_version = CONVACCEL_ABI_VERSION,
		.hw_id = ca->hw_id,
		.hw_version = ca->hw_version,
		.hw_caps = ca->hw_caps,
		.instance = ca->instance,
		.irq_count = atomic64_read(&ca->irq_count),
	};

	return copy_to_user(arg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long convaccel_ioctl(struct file *file, unsigned int cmd,
			    unsigned long arg)
{
	struct convaccel_dev *ca = file_to_ca(file);
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case CONVACCEL_IOCTL_INFO:
		return convaccel_ioctl_info(ca, uarg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations convaccel_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = convaccel_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

/* The misc core keeps its struct miscdevice as the drvdata of this_device. */
static struct convaccel_dev *misc_dev_to_ca(struct device *dev)
{
	struct miscdevice *misc = dev_get_drvdata(dev);

	return container_of(misc, struct convaccel_dev, misc);
}

static ssize_t hw_version_show(struct device *dev,
			       struct device_attribute *attr, char *buf)
{
	struct convaccel_dev *ca = misc_dev_to_ca(dev);

	return sysfs_emit(buf, "%u.%u\n", CONVACCEL_VERSION_MAJOR(ca->hw_version),
			  CONVACCEL_VERSION_MINOR(ca->hw_version));
}
static DEVICE_ATTR_RO(hw_version);

static ssize_t irq_count_show(struct device *dev,
			      struct device_attribute *attr, char *buf)
{
	struct convaccel_dev *ca = misc_dev_to_ca(dev);

	return sysfs_emit(buf, "%lld\n", atomic64_read(&ca->irq_count));
}
static DEVICE_ATTR_RO(irq_count);

static struct attribute *convaccel_attrs[] = {
	&dev_attr_hw_version.attr,
	&dev_attr_irq_count.attr,
	NULL
};
ATTRIBUTE_GROUPS(convaccel);

static int regs_show(struct seq_file *s, void *unused)
{
	static const struct { const char *name; u32 reg; } regs[] = {
		{ "ID", CONVACCEL_REG_ID },
		{ "VERSION", CONVACCEL_REG_VERSION },
		{ "CAPS", CONVACCEL_REG_CAPS },
		{ "SCRATCH", CONVACCEL_REG_SCRATCH },
		{ "STATUS", CONVACCEL_REG_STATUS },
		{ "INT_STATUS", CONVACCEL_REG_INT_STATUS },
		{ "INT_ENABLE", CONVACCEL_REG_INT_ENABLE },
	};
	struct convaccel_dev *ca = s->private;
	int i;

	for (i = 0; i < ARRAY_SIZE(regs); i++)
		seq_printf(s, "%-10s 0x%03x 0x%08x\n", regs[i].name, regs[i].reg,
			   ca_read(ca, regs[i].reg));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(regs);

static ssize_t irq_test_write(struct file *file, const char __user *buf,
			      size_t count, loff_t *ppos)
{
	struct convaccel_dev *ca = file->private_data;
	int ret = convaccel_irq_test(ca);

	return ret ? ret : count;
}

static const struct file_operations irq_test_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = irq_test_write,
	.llseek = noop_llseek,
};

static void convaccel_ida_free(void *data)
{
	struct convaccel_dev *ca = data;

	ida_free(&convaccel_ida, ca->instance);
}

static void convaccel_hw_quiesce(void *data)
{
	struct convaccel_dev *ca = data;

	ca_write(ca, CONVACCEL_REG_INT_ENABLE, 0);
	ca_write(ca, CONVACCEL_REG_CTRL, CONVACCEL_CTRL_RESET);
}

static void convaccel_misc_deregister(void *data)
{
	struct convaccel_dev *ca = data;

	debugfs_remove_recursive(ca->debugfs);
	misc_deregister(&ca->misc);
}

static int convaccel_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct convaccel_dev *ca;
	struct resource *res;
	int irq, ret;

	ca = devm_kzalloc(dev, sizeof(*ca), GFP_KERNEL);
	if (!ca)
		return -ENOMEM;
	ca->dev = dev;
	init_completion(&ca->soft_irq);
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

	ca->hw_id = ca_read(ca, CONVACCEL_REG_ID);
	if (ca->hw_id != CONVACCEL_ID_VALUE)
		return dev_err_probe(dev, -ENODEV,
				     "ID register is 0x%08x, expected 0x%08x: not a convaccel\n",
				     ca->hw_id, CONVACCEL_ID_VALUE);
	ca->hw_version = ca_read(ca, CONVACCEL_REG_VERSION);
	if (CONVACCEL_VERSION_MAJOR(ca->hw_version) !=
	    CONVACCEL_VERSION_MAJOR(CONVACCEL_VERSION_VALUE))
		return dev_err_probe(dev, -ENODEV,
				     "hardware version %u.%u is not supported (need %u.x)\n",
				     CONVACCEL_VERSION_MAJOR(ca->hw_version),
				     CONVACCEL_VERSION_MINOR(ca->hw_version),
				     CONVACCEL_VERSION_MAJOR(CONVACCEL_VERSION_VALUE));
	ca->hw_caps = ca_read(ca, CONVACCEL_REG_CAPS);

	ca->instance = ida_alloc(&convaccel_ida, GFP_KERNEL);
	if (ca->instance < 0)
		return ca->instance;
	ret = devm_add_action_or_reset(dev, convaccel_ida_free, ca);
	if (ret)
		return ret;
	snprintf(ca->name, sizeof(ca->name), "convaccel%d", ca->instance);

	convaccel_hw_quiesce(ca);
	ret = devm_add_action_or_reset(dev, convaccel_hw_quiesce, ca);
	if (ret)
		return ret;
	ret = devm_request_irq(dev, irq, convaccel_irq, 0, ca->name, ca);
	if (ret)
		return dev_err_probe(dev, ret, "cannot request IRQ %d\n", irq);
	ca_write(ca, CONVACCEL_REG_INT_ENABLE, CONVACCEL_INT_ALL);

	ca->misc.minor = MISC_DYNAMIC_MINOR;
	ca->misc.name = ca->name;
	ca->misc.fops = &convaccel_fops;
	ca->misc.parent = dev;
	ca->misc.groups = convaccel_groups;
	ca->misc.mode = 0600;
	ret = misc_register(&ca->misc);
	if (ret)
		return dev_err_probe(dev, ret, "cannot register /dev/%s\n", ca->name);
	ca->debugfs = debugfs_create_dir(ca->name, NULL);
	debugfs_create_file("regs", 0400, ca->debugfs, ca, &regs_fops);
	debugfs_create_file("irq_test", 0200, ca->debugfs, ca, &irq_test_fops);
	ret = devm_add_action_or_reset(dev, convaccel_misc_deregister, ca);
	if (ret)
		return ret;

	dev_info(dev, "%s: convaccel %u.%u, caps 0x%08x, irq %d\n", ca->name,
		 CONVACCEL_VERSION_MAJOR(ca->hw_version),
		 CONVACCEL_VERSION_MINOR(ca->hw_version), ca->hw_caps, irq);
	return 0;
}

static const struct of_device_id convaccel_of_match[] = {
	{ .compatible = "qemu,convaccel" },
	{ }
};
MODULE_DEVICE_TABLE(of, convaccel_of_match);

static struct platform_driver convaccel_driver = {
	.probe = convaccel_probe,
	.driver = {
		.name = "convaccel",
		.of_match_table = convaccel_of_match,
	},
};
module_platform_driver(convaccel_driver);

MODULE_DESCRIPTION("pyaccel convolution accelerator driver");
MODULE_LICENSE("GPL");
