/*
 * convaccel: a convolution accelerator, modelled for QEMU.
 *
 * The register map is in convaccel_regs.h (shared with the Linux driver);
 * docs/hardware.md in the pyaccel tree specifies every register.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "hw/irq.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "trace.h"
#include "convaccel.h"
#include "convaccel_regs.h"

static void convaccel_update_irq(ConvAccelState *s)
{
    bool level = (s->int_status & s->int_enable) != 0;

    trace_convaccel_irq(s->int_status, s->int_enable, level);
    qemu_set_irq(s->irq, level);
}

static void convaccel_reset_regs(ConvAccelState *s)
{
    s->scratch = 0;
    s->int_status = 0;
    s->int_enable = 0;
    convaccel_update_irq(s);
}

static uint64_t convaccel_read(void *opaque, hwaddr addr, unsigned size)
{
    ConvAccelState *s = opaque;
    uint64_t val = 0;

    switch (addr) {
    case CONVACCEL_REG_ID:
        val = s->id;
        break;
    case CONVACCEL_REG_VERSION:
        val = CONVACCEL_VERSION_VALUE;
        break;
    case CONVACCEL_REG_CAPS:
        val = CONVACCEL_CAP_SOFT_IRQ | CONVACCEL_CAP_RESET;
        break;
    case CONVACCEL_REG_SCRATCH:
        val = s->scratch;
        break;
    case CONVACCEL_REG_CTRL:
        break;
    case CONVACCEL_REG_STATUS:
        val = 0;
        break;
    case CONVACCEL_REG_INT_STATUS:
        val = s->int_status;
        break;
    case CONVACCEL_REG_INT_ENABLE:
        val = s->int_enable;
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "convaccel: read of unknown register 0x%03" HWADDR_PRIx
                      "\n", addr);
        break;
    }
    trace_convaccel_read(addr, val);
    return val;
}

static void convaccel_write(void *opaque, hwaddr addr, uint64_t val,
                            unsigned size)
{
    ConvAccelState *s = opaque;

    trace_convaccel_write(addr, val);
    switch (addr) {
    case CONVACCEL_REG_SCRATCH:
        s->scratch = val;
        break;
    case CONVACCEL_REG_CTRL:
        if (val & ~(uint64_t)(CONVACCEL_CTRL_RESET | CONVACCEL_CTRL_SOFT_IRQ)) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "convaccel: CTRL reserved bits set: 0x%08" PRIx64
                          "\n", val);
        }
        if (val & CONVACCEL_CTRL_RESET) {
            convaccel_reset_regs(s);
        }
        if (val & CONVACCEL_CTRL_SOFT_IRQ) {
            s->int_status |= CONVACCEL_INT_SOFT;
            convaccel_update_irq(s);
        }
        break;
    case CONVACCEL_REG_INT_STATUS:
        s->int_status &= ~val;
        convaccel_update_irq(s);
        break;
    case CONVACCEL_REG_INT_ENABLE:
        if (val & ~(uint64_t)CONVACCEL_INT_ALL) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "convaccel: INT_ENABLE reserved bits set: 0x%08"
                          PRIx64 "\n", val);
        }
        s->int_enable = val & CONVACCEL_INT_ALL;
        convaccel_update_irq(s);
        break;
    case CONVACCEL_REG_ID:
    case CONVACCEL_REG_VERSION:
    case CONVACCEL_REG_CAPS:
    case CONVACCEL_REG_STATUS:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "convaccel: write to read-only register 0x%03"
                      HWADDR_PRIx "\n", addr);
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR,
                      "convaccel: write of unknown register 0x%03"
                      HWADDR_PRIx "\n", addr);
        break;
    }
}

static const MemoryRegionOps convaccel_ops = {
    .read = convaccel_read,
    .write = convaccel_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    /* 32-bit registers only; other sizes and misaligned accesses fault */
    .valid = {
        .min_access_size = 4,
        .max_access_size = 4,
        .unaligned = false,
    },
};

static void convaccel_realize(DeviceState *dev, Error **errp)
{
    ConvAccelState *s = CONVACCEL(dev);

    memory_region_init_io(&s->mmio, OBJECT(s), &convaccel_ops, s,
                          TYPE_CONVACCEL, CONVACCEL_MMIO_SIZE);
    sysbus_init_mmio(SYS_BUS_DEVICE(dev), &s->mmio);
    sysbus_init_irq(SYS_BUS_DEVICE(dev), &s->irq);
}

static void convaccel_reset_hold(Object *obj, ResetType type)
{
    convaccel_reset_regs(CONVACCEL(obj));
}

static const VMStateDescription vmstate_convaccel = {
    .name = TYPE_CONVACCEL,
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(scratch, ConvAccelState),
        VMSTATE_UINT32(int_status, ConvAccelState),
        VMSTATE_UINT32(int_enable, ConvAccelState),
        VMSTATE_END_OF_LIST()
    },
};

static const Property convaccel_properties[] = {
    DEFINE_PROP_UINT32("id", ConvAccelState, id, CONVACCEL_ID_VALUE),
};

static void convaccel_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    dc->realize = convaccel_realize;
    dc->vmsd = &vmstate_convaccel;
    dc->desc = "convolution accelerator";
    rc->phases.hold = convaccel_reset_hold;
    device_class_set_props(dc, convaccel_properties);
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
}

static const TypeInfo convaccel_info = {
    .name = TYPE_CONVACCEL,
    .parent = TYPE_SYS_BUS_DEVICE,
    .instance_size = sizeof(ConvAccelState),
    .class_init = convaccel_class_init,
};

static void convaccel_register_types(void)
{
    type_register_static(&convaccel_info);
}

type_init(convaccel_register_types)
