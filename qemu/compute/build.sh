#!/usr/bin/env bash
# Builds build/libconvaccel_compute.so, the device's compute kernels as a
# host shared library for the host tests and the benchmark (QEMU compiles
# convaccel_compute.c into itself on its own). Rebuilds only when a source or
# this script is newer than the library. Prints the library's path.
#
# -march=x86-64-v2 (SSE4.2) keeps the library portable to any x86_64 host;
# the hot loops carry AVX2 and AVX-512 clones picked at load time, and
# OpenBLAS picks its own kernels at run time. -z nodelete: the library keeps
# a pool of worker threads, so it must never be unloaded (dlclose).
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

src=$TOP/qemu/compute
lib=$BUILD/libconvaccel_compute.so
CC=${CC:-gcc}
CFLAGS=${CVC_CFLAGS:--O3 -march=x86-64-v2}

stale=false
if [ ! -f "$lib" ]; then
	stale=true
else
	for f in "$src/convaccel_compute.c" "$src/convaccel_compute.h" "$src/build.sh"; do
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
