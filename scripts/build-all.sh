#!/usr/bin/env bash
# Build (or take from the cache) everything the board needs: host packages,
# then QEMU with our device (in the background) next to the guest kernel, the
# driver module and the guest initramfs, then the boot device trees. Cheap
# when nothing changed.
# The guest kernel is $PYACCEL_KERNEL (make's KERNEL=: 6.1, 6.12, debug):
# the default's files are build/Image, build/rootfs.cpio, build/kernel/;
# another's are under build/kernels/<name>/ (see scripts/board.py).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOP"
mkdir -p "$BUILD"

scripts/setup-host.sh
# QEMU compiles (CPU) while the kernel and the guest image download and unpack
# (network, disk): on a fresh machine that saves a few minutes.
qemu/build.sh &
qemu_pid=$!
kdir=$(kernel_fetch)
boot=$(kernel_boot_dir)
# The guest bind-mounts another kernel's module folder on build/kernel.
mkdir -p "$boot" "$BUILD/kernel"
ln -sfn "$kdir/Image" "$boot/Image"
kernel/build.sh "$kdir" "$boot/kernel"
ln -sfn "$(guest/rootfs.sh "$kdir")" "$boot/rootfs.cpio"
wait "$qemu_pid" || die "building QEMU failed (its output is above)"
# The host build of the device's kernels: scripts/blasenv.py asks it which
# OpenBLAS kernels QEMU should run.
qemu/compute/build.sh >/dev/null
for n in 1 2; do
	python3 scripts/board.py dtb --accels "$n" >/dev/null
done
log "board ready: $BUILD (kernel $PYACCEL_KERNEL: $(cat "$kdir/kver"))"
