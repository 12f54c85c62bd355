#!/usr/bin/env bash
# Cross-build convaccel.ko against the guest kernel's headers, in
# $BUILD/kernel (a copy of kernel/ plus the shared register header), so the
# source folder stays clean.
#   Usage: kernel/build.sh KERNEL_DIR [OUT [MAKE_ARG...]]
# KERNEL_DIR comes from guest/kernel.sh or guest/debug-kernel.sh; OUT is
# another folder to build in (one per kernel); MAKE_ARGs go to kbuild (W=1).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

kdir=${1:?usage: kernel/build.sh KERNEL_DIR [OUT [MAKE_ARG...]] (KERNEL_DIR from guest/kernel.sh)}
out=$(realpath -m "${2:-$BUILD/kernel}")
shift $(($# < 2 ? $# : 2))
mkdir -p "$out/include"
sync_file() { cmp -s "$1" "$2" || { mkdir -p "$(dirname "$2")"; cp "$1" "$2"; }; }
(cd "$TOP/kernel" && find . -name '*.[ch]' -o -name Kbuild) | while read -r f; do
	sync_file "$TOP/kernel/$f" "$out/$f"
done
sync_file "$TOP/include/convaccel_regs.h" "$out/include/convaccel_regs.h"
make -s -C "$kdir/headers" M="$out" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- "$@" modules >&2 ||
	die "building convaccel.ko failed"
log "module ready: $out/convaccel.ko"
