/*
 * convaccel: a convolution accelerator on a sysbus MMIO window.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_CONVACCEL_H
#define HW_CONVACCEL_H

#include "hw/sysbus.h"
#include "qom/object.h"

#define TYPE_CONVACCEL "convaccel"
OBJECT_DECLARE_SIMPLE_TYPE(ConvAccelState, CONVACCEL)

struct ConvAccelState {
    SysBusDevice parent_obj;

    MemoryRegion mmio;
    qemu_irq irq;

    /* guest-visible registers (docs/hardware.md) */
    uint32_t scratch;
    uint32_t int_status;
    uint32_t int_enable;

    /* properties */
    uint32_t id;        /* value of REG_ID: a wrong one tests the driver */
};

#endif
