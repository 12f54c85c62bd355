#!/usr/bin/env bash
# Build (or take from the cache) everything the board needs, in order:
# host packages, QEMU with our device, guest kernel, the driver module, the
# guest initramfs, the boot device trees. Cheap when nothing changed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$TOP"
mkdir -p "$BUILD"

scripts/setup-host.sh
qemu/build.sh
kdir=$(guest/kernel.sh)
ln -sfn "$kdir/Image" "$BUILD/Image"
kernel/build.sh "$kdir"
ln -sfn "$(guest/rootfs.sh "$kdir")" "$BUILD/rootfs.cpio"
for n in 1 2; do
	python3 scripts/board.py dtb --accels "$n" >/dev/null
done
log "board ready: $BUILD"
