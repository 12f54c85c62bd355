/*
 * virt-convaccel: QEMU's arm "virt" board plus convaccel instances.
 *
 * Instance N sits at CONVACCEL_MMIO_BASE + N * CONVACCEL_MMIO_STRIDE and
 * drives GIC SPI CONVACCEL_SPI_FIRST - N. The board does not describe the
 * accelerators in its generated device tree: the pyaccel dts/ fragment does,
 * as a board vendor's tree would.
 *
 *   -M virt-convaccel[,accels=N]    N = 1..CONVACCEL_MAX_INSTANCES
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "hw/arm/virt.h"
#include "hw/sysbus.h"
#include "convaccel.h"
#include "convaccel_regs.h"

#define TYPE_VIRT_CONVACCEL_MACHINE MACHINE_TYPE_NAME("virt-convaccel")
OBJECT_DECLARE_SIMPLE_TYPE(VirtConvAccelState, VIRT_CONVACCEL_MACHINE)

struct VirtConvAccelState {
    VirtMachineState parent_obj;
    uint32_t accels;
};

static void (*virt_parent_init)(MachineState *machine);

static void virt_convaccel_init(MachineState *machine)
{
    VirtConvAccelState *s = VIRT_CONVACCEL_MACHINE(machine);
    VirtMachineState *vms = VIRT_MACHINE(machine);
    uint32_t i;

    if (s->accels < 1 || s->accels > CONVACCEL_MAX_INSTANCES) {
        error_report("virt-convaccel: accels=%u is out of range 1..%d",
                     s->accels, CONVACCEL_MAX_INSTANCES);
        exit(1);
    }
    virt_parent_init(machine);
    for (i = 0; i < s->accels; i++) {
        sysbus_create_simple(TYPE_CONVACCEL,
                             CONVACCEL_MMIO_BASE + i * CONVACCEL_MMIO_STRIDE,
                             qdev_get_gpio_in(vms->gic,
                                              CONVACCEL_SPI_FIRST - i));
    }
}

static void virt_convaccel_instance_init(Object *obj)
{
    VirtConvAccelState *s = VIRT_CONVACCEL_MACHINE(obj);

    s->accels = 1;
    object_property_add_uint32_ptr(obj, "accels", &s->accels,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "accels",
                                    "number of convaccel instances (1-6)");
}

static void virt_convaccel_class_init(ObjectClass *oc, void *data)
{
    MachineClass *mc = MACHINE_CLASS(oc);

    virt_parent_init = mc->init;
    mc->init = virt_convaccel_init;
    mc->desc = "QEMU virt board with convaccel convolution accelerators";
}

static const TypeInfo virt_convaccel_info = {
    .name = TYPE_VIRT_CONVACCEL_MACHINE,
    .parent = TYPE_VIRT_MACHINE,
    .instance_size = sizeof(VirtConvAccelState),
    .instance_init = virt_convaccel_instance_init,
    .class_init = virt_convaccel_class_init,
};

static void virt_convaccel_register_types(void)
{
    type_register_static(&virt_convaccel_info);
}

type_init(virt_convaccel_register_types)
