#!/usr/bin/env bash
# Builds build/libconvaccel_compute.so, the device's compute kernels as a
# host shared library for the host tests and the benchmark (QEMU compiles
# convaccel_compute.c into itself on its own). Rebuilds only when a source or
# this script is newer than the library. Prints the library's path.
#
# The flags are convaccel_compute.cflags, the same file QEMU's meson build
# reads for the copy compiled into QEMU (hw/convaccel/meson.build), so that
# `make bench-device` measures the code the device runs. They undo QEMU's
# global hardening flags for this file (-ftrivial-auto-var-init=zero,
# -fzero-call-used-regs, -fwrapv, -fno-strict-aliasing) and raise -msse2.
# -march=x86-64-v2 (SSE4.2) keeps the library portable to any x86_64 host;
# the hot loops carry AVX2 and AVX-512 clones picked at load time, and
# OpenBLAS picks its own kernels at run time. -z nodelete: the library keeps
# a pool of worker threads, so it must never be unloaded (dlclose).
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

src=$TOP/qemu/compute
lib=$BUILD/libconvaccel_compute.so
CC=${CC:-gcc}
CFLAGS=${CVC_CFLAGS:-$(cat "$src/convaccel_compute.cflags")}

stale=false
if [ ! -f "$lib" ]; then
	stale=true
else
	for f in "$src/convaccel_compute.c" "$src/convaccel_compute.h" "$src/build.sh" \
		"$src/convaccel_compute.cflags"; do
		[ "$f" -nt "$lib" ] && stale=true
	done
fi

if $stale; then
	pkg-config --exists openblas ||
		die "OpenBLAS not found by pkg-config: apt-get install libopenblas-dev"
	mkdir -p "$BUILD"
	log "building $lib"
	# shellcheck disable=SC2046,SC2086  # word splitting of flags is intended
	$CC -std=gnu11 $CFLAGS -fPIC -shared -Wall -Wextra \
		$(pkg-config --cflags openblas) \
		-o "$lib.tmp.$$" "$src/convaccel_compute.c" \
		$(pkg-config --libs openblas) -lpthread -lm -Wl,-z,nodelete
	mv "$lib.tmp.$$" "$lib"
fi
printf '%s\n' "$lib"
