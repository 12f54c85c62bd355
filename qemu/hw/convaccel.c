/*
 * convaccel: a convolution accelerator, modelled for QEMU.
 *
 * Registers, the job queue, interrupts, reset and migration. Jobs run on a
 * worker thread (convaccel-job.c); finished jobs are published to the
 * registers and the interrupt line by a bottom half on the main loop.
 * docs/hardware.md in the pyaccel tree specifies every register; the
 * constants are in convaccel_regs.h, shared with the Linux driver.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/error-report.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "qemu/module.h"
#include "exec/address-spaces.h"
#include "hw/irq.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "trace.h"
#include "convaccel.h"
#include "convaccel_compute.h"

static void convaccel_update_irq(ConvAccelState *s)
{
    bool level = (s->int_status & s->int_enable) != 0;

    trace_convaccel_irq(s->int_status, s->int_enable, level);
    qemu_set_irq(s->irq, level);
}

/* Back to the reset state; a running job is abandoned (its writes stop). */
static void convaccel_reset_state(ConvAccelState *s)
{
    qemu_mutex_lock(&s->lock);
    qatomic_inc(&s->generation);    /* the compute polls it without the lock */
    s->q_head = 0;
    s->q_count = 0;
    s->done_count = 0;
    s->progress = (ConvAccelProgress) { 0 };
    qemu_cond_broadcast(&s->cond);
    /* a write chunk in flight ends soon (direct RAM, no BQL needed): wait */
    while (s->dma_writers) {
        qemu_cond_wait(&s->cond, &s->lock);
    }
    qemu_mutex_unlock(&s->lock);

    s->scratch = 0;
    s->int_status = 0;
    s->int_enable = 0;
    s->cmd_addr = 0;
    s->jobs_done = 0;
    s->last_status = 0;
    s->last_layer = 0;
    s->last_tag = 0;
    s->overflow = false;
    s->fault_ctrl = s->prop_fault_ctrl & CONVACCEL_FAULT_ALL;
    s->fault_delay_us = s->prop_fault_delay_us;
    s->fault_error_after = s->prop_fault_error_after;
    trace_convaccel_reset();
    convaccel_update_irq(s);
}

/*
 * Main loop: publish finished jobs to the registers and the IRQ line. A job
 * leaves the queue only here, so STATUS.BUSY and LEVEL count it until
 * JOBS_DONE does (both change under the BQL, at once for the guest).
 */
static void convaccel_done_bh(void *opaque)
{
    ConvAccelState *s = opaque;
    ConvAccelDone done[CONVACCEL_QUEUE_DEPTH_VALUE];
    uint32_t i, n;

    qemu_mutex_lock(&s->lock);
    n = s->done_count;
    memcpy(done, s->done, n * sizeof(done[0]));
    s->done_count = 0;
    s->q_head = (s->q_head + n) % CONVACCEL_QUEUE_DEPTH_VALUE;
    s->q_count -= n;
    qemu_mutex_unlock(&s->lock);

    for (i = 0; i < n; i++) {
        s->jobs_done++;
        s->last_status = done[i].status;
        s->last_layer = done[i].layer;
        s->last_tag = done[i].tag;
        if (!done[i].lost_irq) {
            s->int_status |= done[i].status == CONVACCEL_ERR_OK ?
                             CONVACCEL_INT_DONE : CONVACCEL_INT_ERROR;
        }
    }
    if (n) {
        convaccel_update_irq(s);
    }
}

static uint32_t convaccel_status(ConvAccelState *s)
{
    uint32_t level, val = 0;

    qemu_mutex_lock(&s->lock);
    level = s->q_count;
    qemu_mutex_unlock(&s->lock);
    if (level) {
        val |= CONVACCEL_STATUS_BUSY;
    }
    if (level == CONVACCEL_QUEUE_DEPTH_VALUE) {
        val |= CONVACCEL_STATUS_QUEUE_FULL;
    }
    if (s->overflow) {
        val |= CONVACCEL_STATUS_OVERFLOW;
    }
    return val | level << 8;
}

static void convaccel_doorbell(ConvAccelState *s)
{
    ConvAccelJob job = {
        .addr = s->cmd_addr,
        .faults = s->fault_ctrl,
        .delay_us = s->fault_delay_us,
    };

    qemu_mutex_lock(&s->lock);
    if (s->q_count == CONVACCEL_QUEUE_DEPTH_VALUE) {
        qemu_mutex_unlock(&s->lock);
        s->overflow = true;
        qemu_log_mask(LOG_GUEST_ERROR,
                      "convaccel: DOORBELL with a full queue: job at 0x%"
                      PRIx64 " dropped\n", job.addr);
        return;
    }
    /* only a job that is queued counts down FAULT_ERROR_AFTER */
    if (s->fault_error_after && --s->fault_error_after == 0) {
        job.inject_error = true;
    }
    s->queue[(s->q_head + s->q_count) % CONVACCEL_QUEUE_DEPTH_VALUE] = job;
    s->q_count++;
    trace_convaccel_doorbell(job.addr, s->q_count, job.faults);
    qemu_cond_broadcast(&s->cond);
    qemu_mutex_unlock(&s->lock);
    s->fault_ctrl = 0;      /* "next job" faults are consumed */
}

static uint32_t convaccel_limit(hwaddr addr)
{
    switch (addr) {
    case CONVACCEL_REG_QUEUE_DEPTH:
        return CONVACCEL_QUEUE_DEPTH_VALUE;
    case CONVACCEL_REG_MAX_KERNEL:
        return CONVACCEL_MAX_KERNEL_VALUE;
    case CONVACCEL_REG_MAX_PAD:
        return CONVACCEL_MAX_PAD_VALUE;
    case CONVACCEL_REG_MAX_CHANNELS:
        return CONVACCEL_MAX_CHANNELS_VALUE;
    case CONVACCEL_REG_MAX_DIM:
        return CONVACCEL_MAX_DIM_VALUE;
    case CONVACCEL_REG_MAX_LAYERS:
        return CONVACCEL_MAX_LAYERS_VALUE;
    case CONVACCEL_REG_MAX_TENSOR_MB:
        return CONVACCEL_MAX_TENSOR_MB_VALUE;
    case CONVACCEL_REG_MAX_JOB_GMACS:
        return CONVACCEL_MAX_JOB_GMACS_VALUE;
    }
    g_assert_not_reached();
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
        val = CONVACCEL_CAP_SOFT_IRQ | CONVACCEL_CAP_RESET | CONVACCEL_CAP_CONV |
              CONVACCEL_CAP_POOL | CONVACCEL_CAP_FAULT | CONVACCEL_CAP_V2 |
              CONVACCEL_CAP_ELTWISE | CONVACCEL_CAP_ACT_EXT |
              CONVACCEL_CAP_GLOBAL_POOL | CONVACCEL_CAP_FC | CONVACCEL_CAP_INT8;
        break;
    case CONVACCEL_REG_SCRATCH:
        val = s->scratch;
        break;
    case CONVACCEL_REG_CTRL:
    case CONVACCEL_REG_DOORBELL:
        break;
    case CONVACCEL_REG_STATUS:
        val = convaccel_status(s);
        break;
    case CONVACCEL_REG_INT_STATUS:
        val = s->int_status;
        break;
    case CONVACCEL_REG_INT_ENABLE:
        val = s->int_enable;
        break;
    case CONVACCEL_REG_CMD_ADDR_LO:
        val = extract64(s->cmd_addr, 0, 32);
        break;
    case CONVACCEL_REG_CMD_ADDR_HI:
        val = extract64(s->cmd_addr, 32, 32);
        break;
    case CONVACCEL_REG_JOBS_DONE:
        val = s->jobs_done;
        break;
    case CONVACCEL_REG_LAST_STATUS:
        val = s->last_status;
        break;
    case CONVACCEL_REG_LAST_LAYER:
        val = s->last_layer;
        break;
    case CONVACCEL_REG_LAST_TAG:
        val = s->last_tag;
        break;
    case CONVACCEL_REG_QUEUE_DEPTH:
    case CONVACCEL_REG_MAX_KERNEL ... CONVACCEL_REG_MAX_JOB_GMACS:
        /* fault-limit-value: a device that lies about its limits */
        val = s->fault_limit_value ? s->fault_limit_value : convaccel_limit(addr);
        break;
    case CONVACCEL_REG_FAULT_CTRL:
        val = s->fault_ctrl;
        break;
    case CONVACCEL_REG_FAULT_DELAY_US:
        val = s->fault_delay_us;
        break;
    case CONVACCEL_REG_FAULT_ERROR_AFTER:
        val = s->fault_error_after;
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

static void convaccel_check_reserved(const char *reg, uint64_t val,
                                     uint64_t valid)
{
    if (val & ~valid) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "convaccel: %s reserved bits set: 0x%08" PRIx64 "\n",
                      reg, val & ~valid);
    }
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
        convaccel_check_reserved("CTRL", val, CONVACCEL_CTRL_RESET |
                                 CONVACCEL_CTRL_SOFT_IRQ);
        if (val & CONVACCEL_CTRL_RESET) {
            convaccel_reset_state(s);
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
        convaccel_check_reserved("INT_ENABLE", val, CONVACCEL_INT_ALL);
        s->int_enable = val & CONVACCEL_INT_ALL;
        convaccel_update_irq(s);
        break;
    case CONVACCEL_REG_CMD_ADDR_LO:
        s->cmd_addr = deposit64(s->cmd_addr, 0, 32, val);
        break;
    case CONVACCEL_REG_CMD_ADDR_HI:
        s->cmd_addr = deposit64(s->cmd_addr, 32, 32, val);
        break;
    case CONVACCEL_REG_DOORBELL:
        convaccel_doorbell(s);
        break;
    case CONVACCEL_REG_FAULT_CTRL:
        convaccel_check_reserved("FAULT_CTRL", val, CONVACCEL_FAULT_ALL);
        s->fault_ctrl = val & CONVACCEL_FAULT_ALL;
        break;
    case CONVACCEL_REG_FAULT_DELAY_US:
        if (val > CONVACCEL_FAULT_DELAY_MAX_US) {
            qemu_log_mask(LOG_GUEST_ERROR, "convaccel: FAULT_DELAY_US %" PRIu64
                          " above %u: clamped\n", val, CONVACCEL_FAULT_DELAY_MAX_US);
        }
        s->fault_delay_us = MIN(val, CONVACCEL_FAULT_DELAY_MAX_US);
        break;
    case CONVACCEL_REG_FAULT_ERROR_AFTER:
        s->fault_error_after = val;
        break;
    case CONVACCEL_REG_ID:
    case CONVACCEL_REG_VERSION:
    case CONVACCEL_REG_CAPS:
    case CONVACCEL_REG_STATUS:
    case CONVACCEL_REG_QUEUE_DEPTH:
    case CONVACCEL_REG_JOBS_DONE ... CONVACCEL_REG_LAST_TAG:
    case CONVACCEL_REG_MAX_KERNEL ... CONVACCEL_REG_MAX_JOB_GMACS:
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

/*
 * The worker runs jobs only while the VM runs. On a stop it parks (at the
 * latest within a compute tile, or after a layer's output write), so that
 * no write to guest RAM lands after RAM's final dirty sync and the queue,
 * the completions and the running job's progress can be saved.
 */
static void convaccel_vm_state_change(void *opaque, bool running,
                                      RunState state)
{
    ConvAccelState *s = opaque;

    qemu_mutex_lock(&s->lock);
    trace_convaccel_vm_state(running, s->q_count);
    qatomic_set(&s->vm_running, running);
    qemu_cond_broadcast(&s->cond);
    while (!running && !s->parked) {
        qemu_cond_wait(&s->cond, &s->lock);
    }
    qemu_mutex_unlock(&s->lock);
}

/* Once per process: OpenBLAS's detection may have picked slow kernels. */
static void convaccel_check_blas(void)
{
    static bool checked;
    const char *better = cvc_blas_better_core();

    if (!checked && better) {
        warn_report("convaccel: OpenBLAS runs its %s kernels on this CPU "
                    "(its CPU detection fell back to them), so float32 "
                    "layers run 2-3x slower than they could; start QEMU "
                    "with OPENBLAS_CORETYPE=%s (scripts/board.py does)",
                    cvc_blas_core(), better);
    }
    checked = true;
}

static void convaccel_realize(DeviceState *dev, Error **errp)
{
    ConvAccelState *s = CONVACCEL(dev);

    if (s->prop_fault_ctrl & ~CONVACCEL_FAULT_ALL) {
        error_setg(errp, "convaccel: fault-ctrl 0x%x has unknown bits",
                   s->prop_fault_ctrl);
        return;
    }
    if (!s->model_array || !s->model_int8_factor || !s->model_dma_bytes ||
        !s->model_pool_lanes) {
        error_setg(errp, "convaccel: model-array, model-int8-factor, "
                   "model-dma-bytes and model-pool-lanes must be nonzero");
        return;
    }
    if (s->prop_fault_delay_us > CONVACCEL_FAULT_DELAY_MAX_US) {
        warn_report("convaccel: fault-delay-us %u clamped to %u",
                    s->prop_fault_delay_us, CONVACCEL_FAULT_DELAY_MAX_US);
        s->prop_fault_delay_us = CONVACCEL_FAULT_DELAY_MAX_US;
    }
    convaccel_check_blas();
    s->as = &address_space_memory;
    memory_region_init_io(&s->mmio, OBJECT(s), &convaccel_ops, s,
                          TYPE_CONVACCEL, CONVACCEL_MMIO_SIZE);
    sysbus_init_mmio(SYS_BUS_DEVICE(dev), &s->mmio);
    sysbus_init_irq(SYS_BUS_DEVICE(dev), &s->irq);

    qemu_mutex_init(&s->lock);
    qemu_cond_init(&s->cond);
    s->done_bh = qemu_bh_new_guarded(convaccel_done_bh, s,
                                     &dev->mem_reentrancy_guard);
    s->vm_running = runstate_is_running();
    s->vmse = qemu_add_vm_change_state_handler(convaccel_vm_state_change, s);
    qemu_thread_create(&s->thread, "convaccel", convaccel_worker, s,
                       QEMU_THREAD_JOINABLE);
}

static void convaccel_unrealize(DeviceState *dev)
{
    ConvAccelState *s = CONVACCEL(dev);

    qemu_del_vm_change_state_handler(s->vmse);
    qemu_mutex_lock(&s->lock);
    qatomic_set(&s->stopping, true);
    qatomic_inc(&s->generation);
    qemu_cond_broadcast(&s->cond);
    qemu_mutex_unlock(&s->lock);
    qemu_thread_join(&s->thread);
    g_free(s->scratch_buf);
    qemu_bh_delete(s->done_bh);
    qemu_cond_destroy(&s->cond);
    qemu_mutex_destroy(&s->lock);
}

static void convaccel_reset_hold(Object *obj, ResetType type)
{
    convaccel_reset_state(CONVACCEL(obj));
}

static int convaccel_pre_save(void *opaque)
{
    ConvAccelState *s = opaque;
    bool parked;

    qemu_mutex_lock(&s->lock);
    parked = s->parked;
    qemu_mutex_unlock(&s->lock);
    if (!parked) {      /* the VM runs: never during migration or savevm */
        error_report("convaccel: cannot save state while the VM runs a job");
        return -EBUSY;
    }
    return 0;
}

static bool convaccel_queue_needed(void *opaque)
{
    ConvAccelState *s = opaque;

    return s->q_count != 0;
}

static int convaccel_queue_post_load(void *opaque, int version_id)
{
    ConvAccelState *s = opaque;
    uint32_t i;

    if (s->q_head >= CONVACCEL_QUEUE_DEPTH_VALUE ||
        s->q_count > CONVACCEL_QUEUE_DEPTH_VALUE || s->done_count > s->q_count ||
        s->progress.layers_done > CONVACCEL_MAX_LAYERS_VALUE) {
        return -EINVAL;
    }
    for (i = 0; i < CONVACCEL_QUEUE_DEPTH_VALUE; i++) {
        if ((s->queue[i].faults & ~CONVACCEL_FAULT_ALL) ||
            s->queue[i].delay_us > CONVACCEL_FAULT_DELAY_MAX_US ||
            s->done[i].status >= CONVACCEL_ERR_COUNT) {
            return -EINVAL;
        }
    }
    if (s->done_count) {
        qemu_bh_schedule(s->done_bh);
    }
    /* the worker is parked (the VM is not running): it resumes on start */
    return 0;
}

static const VMStateDescription vmstate_convaccel_job = {
    .name = TYPE_CONVACCEL "/job",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64(addr, ConvAccelJob),
        VMSTATE_UINT32(faults, ConvAccelJob),
        VMSTATE_UINT32(delay_us, ConvAccelJob),
        VMSTATE_BOOL(inject_error, ConvAccelJob),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_convaccel_done = {
    .name = TYPE_CONVACCEL "/done",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(status, ConvAccelDone),
        VMSTATE_UINT32(layer, ConvAccelDone),
        VMSTATE_UINT32(tag, ConvAccelDone),
        VMSTATE_BOOL(lost_irq, ConvAccelDone),
        VMSTATE_END_OF_LIST()
    },
};

/*
 * Jobs in flight: the queue (with what is left of each job's delay), the
 * finished jobs done_bh has not published, and how far the running job got.
 * The destination resumes the running job at that layer.
 */
static const VMStateDescription vmstate_convaccel_queue = {
    .name = TYPE_CONVACCEL "/queue",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = convaccel_queue_needed,
    .post_load = convaccel_queue_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT_ARRAY(queue, ConvAccelState, CONVACCEL_QUEUE_DEPTH_VALUE,
                             1, vmstate_convaccel_job, ConvAccelJob),
        VMSTATE_UINT32(q_head, ConvAccelState),
        VMSTATE_UINT32(q_count, ConvAccelState),
        VMSTATE_STRUCT_ARRAY(done, ConvAccelState, CONVACCEL_QUEUE_DEPTH_VALUE,
                             1, vmstate_convaccel_done, ConvAccelDone),
        VMSTATE_UINT32(done_count, ConvAccelState),
        VMSTATE_UINT32(progress.layers_done, ConvAccelState),
        VMSTATE_UINT64(progress.c.macs, ConvAccelState),
        VMSTATE_UINT64(progress.c.bytes_read, ConvAccelState),
        VMSTATE_UINT64(progress.c.bytes_written, ConvAccelState),
        VMSTATE_UINT64(progress.c.host_ns, ConvAccelState),
        VMSTATE_UINT64(progress.c.cycles, ConvAccelState),
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_convaccel = {
    .name = TYPE_CONVACCEL,
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = convaccel_pre_save,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(scratch, ConvAccelState),
        VMSTATE_UINT32(int_status, ConvAccelState),
        VMSTATE_UINT32(int_enable, ConvAccelState),
        VMSTATE_UINT64(cmd_addr, ConvAccelState),
        VMSTATE_UINT32(jobs_done, ConvAccelState),
        VMSTATE_UINT32(last_status, ConvAccelState),
        VMSTATE_UINT32(last_layer, ConvAccelState),
        VMSTATE_UINT32(last_tag, ConvAccelState),
        VMSTATE_UINT32(fault_ctrl, ConvAccelState),
        VMSTATE_UINT32(fault_delay_us, ConvAccelState),
        VMSTATE_UINT32(fault_error_after, ConvAccelState),
        VMSTATE_BOOL(overflow, ConvAccelState),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &vmstate_convaccel_queue,
        NULL
    },
};

static const Property convaccel_properties[] = {
    DEFINE_PROP_UINT32("id", ConvAccelState, id, CONVACCEL_ID_VALUE),
    DEFINE_PROP_UINT32("fault-ctrl", ConvAccelState, prop_fault_ctrl, 0),
    DEFINE_PROP_UINT32("fault-delay-us", ConvAccelState, prop_fault_delay_us, 0),
    DEFINE_PROP_UINT32("fault-error-after", ConvAccelState,
                       prop_fault_error_after, 0),
    DEFINE_PROP_UINT32("compute-threads", ConvAccelState, compute_threads, 0),
    DEFINE_PROP_UINT32("fault-limit-value", ConvAccelState, fault_limit_value, 0),
    DEFINE_PROP_UINT32("model-array", ConvAccelState, model_array,
                       CONVACCEL_MODEL_ARRAY),
    DEFINE_PROP_UINT32("model-int8-factor", ConvAccelState, model_int8_factor,
                       CONVACCEL_MODEL_INT8_FACTOR),
    DEFINE_PROP_UINT32("model-dma-bytes", ConvAccelState, model_dma_bytes,
                       CONVACCEL_MODEL_DMA_BYTES),
    DEFINE_PROP_UINT32("model-pool-lanes", ConvAccelState, model_pool_lanes,
                       CONVACCEL_MODEL_POOL_LANES),
    DEFINE_PROP_UINT32("model-layer-cycles", ConvAccelState, model_layer_cycles,
                       CONVACCEL_MODEL_LAYER_CYCLES),
    DEFINE_PROP_UINT32("model-job-cycles", ConvAccelState, model_job_cycles,
                       CONVACCEL_MODEL_JOB_CYCLES),
};

static void convaccel_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    dc->realize = convaccel_realize;
    dc->unrealize = convaccel_unrealize;
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
