/*
 * convaccel: a convolution accelerator on a sysbus MMIO window.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_CONVACCEL_H
#define HW_CONVACCEL_H

#include "hw/sysbus.h"
#include "qemu/thread.h"
#include "system/runstate.h"
#include "qom/object.h"
#include "convaccel_regs.h"

#define TYPE_CONVACCEL "convaccel"
OBJECT_DECLARE_SIMPLE_TYPE(ConvAccelState, CONVACCEL)

/* A job in the queue: its address and the faults it was submitted with. */
typedef struct ConvAccelJob {
    uint64_t addr;
    uint32_t faults;        /* CONVACCEL_FAULT_* */
    uint32_t delay_us;
    bool inject_error;
} ConvAccelJob;

/* A job's counters, as its result record reports them. */
typedef struct ConvAccelCounters {
    uint64_t macs, bytes_read, bytes_written, host_ns, cycles;
} ConvAccelCounters;

/*
 * How far the running job got when the worker paused (VM stop): it resumes
 * there, also on a migration's destination. Zero when it has not started.
 */
typedef struct ConvAccelProgress {
    uint32_t layers_done;
    ConvAccelCounters c;
} ConvAccelProgress;

/* A finished job, waiting for the main loop to publish it. */
typedef struct ConvAccelDone {
    uint32_t status;
    uint32_t layer;
    uint32_t tag;
    bool lost_irq;
} ConvAccelDone;

struct ConvAccelState {
    SysBusDevice parent_obj;

    MemoryRegion mmio;
    qemu_irq irq;
    AddressSpace *as;

    /* registers, owned by the main loop / vCPU under the BQL */
    uint32_t scratch;
    uint32_t int_status;
    uint32_t int_enable;
    uint64_t cmd_addr;
    uint32_t jobs_done;
    uint32_t last_status;
    uint32_t last_layer;
    uint32_t last_tag;
    uint32_t fault_ctrl;
    uint32_t fault_delay_us;
    uint32_t fault_error_after;
    bool overflow;

    /* shared with the worker thread, under lock */
    QemuMutex lock;
    QemuCond cond;
    ConvAccelJob queue[CONVACCEL_QUEUE_DEPTH_VALUE];
    uint32_t q_head;
    uint32_t q_count;       /* queued jobs, the running one included, until
                             * done_bh publishes them */
    ConvAccelDone done[CONVACCEL_QUEUE_DEPTH_VALUE];
    uint32_t done_count;    /* the first done_count queued jobs are finished */
    uint32_t generation;    /* bumped by reset: older work is discarded */
    uint32_t dma_writers;   /* guest-memory write chunks in flight */
    ConvAccelProgress progress; /* of the job after the done ones */
    bool vm_running;        /* the worker runs jobs only while the VM runs */
    bool parked;            /* the worker waits, its state saved above */
    bool stopping;
    QemuThread thread;
    QEMUBH *done_bh;
    VMChangeStateEntry *vmse;

    /* the worker's own */
    float *scratch_buf;
    uint64_t scratch_size;

    /* properties */
    uint32_t id;
    uint32_t prop_fault_ctrl;
    uint32_t prop_fault_delay_us;
    uint32_t prop_fault_error_after;
    uint32_t fault_limit_value;     /* nonzero: every limit register reads it */
    uint32_t compute_threads;
    /* the cost model (docs/hardware.md), model-* properties */
    uint32_t model_array;
    uint32_t model_int8_factor;
    uint32_t model_dma_bytes;
    uint32_t model_pool_lanes;
    uint32_t model_layer_cycles;
    uint32_t model_job_cycles;
};

/* convaccel-job.c: the worker thread's body. */
void *convaccel_worker(void *opaque);

#endif
