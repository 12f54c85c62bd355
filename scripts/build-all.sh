#!/usr/bin/env bash
# Build (or take from the cache) everything the board needs, in order:
# host packages, QEMU with our device, guest kernel, the driver module, the
# guest initramfs, the boot device trees. Cheap when nothing changed.
# The guest kernel is $PYACCEL_KERNEL (make's KERNEL=: 6.1, 6.12, debug):
# the default's files are build/Image, build/rootfs.cpio, build/kernel/;
# another's are under build/kernels/<name>/ (see scripts/board.py).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOP"
mkdir -p "$BUILD"

scripts/setup-host.sh
qemu/build.sh
kdir=$(kernel_fetch)
boot=$(kernel_boot_dir)
# The guest bind-mounts another kernel's module folder on build/kernel.
mkdir -p "$boot" "$BUILD/kernel"
ln -sfn "$kdir/Image" "$boot/Image"
kernel/build.sh "$kdir" "$boot/kernel"
ln -sfn "$(guest/rootfs.sh "$kdir")" "$boot/rootfs.cpio"
for n in 1 2; do
	python3 scripts/board.py dtb --accels "$n" >/dev/null
done
log "board ready: $BUILD (kernel $PYACCEL_KERNEL: $(cat "$kdir/kver"))"
