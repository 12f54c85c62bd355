#!/usr/bin/env bash
# Build qemu-system-aarch64 with pyaccel's convaccel device from Debian's
# QEMU source. The configured tree lives in the cache, keyed by this recipe;
# the device sources are synced into it on every run so ninja rebuilds only
# what changed. Output: $BUILD/qemu-system-aarch64.
# With QEMU_ASAN=1: a separate AddressSanitizer + UndefinedBehaviorSanitizer
# build (for make stress), output $BUILD/qemu-system-aarch64-asan. UBSan does
# not recover: its first report ("runtime error:") aborts QEMU.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

QEMU_UPSTREAM=10.0.2
QEMU_DEB_VERSION='1:10.0.2+ds-2+deb13u1~bpo12+1'
QEMU_ORIG=qemu_${QEMU_UPSTREAM}+ds.orig.tar.xz
QEMU_ORIG_SHA256=0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1

CONFIGURE_FLAGS=(--python=/usr/bin/python3
	--target-list=aarch64-softmmu --without-default-features
	--without-default-devices --with-devices-aarch64=pyaccel
	--enable-fdt=system --enable-virtfs --enable-attr
	--disable-install-blobs --disable-download --disable-docs
	--disable-tools --disable-guest-agent --disable-user
	--disable-debug-info -Dwerror=false)
suffix=
if [ "${QEMU_ASAN:-0}" = 1 ]; then
	CONFIGURE_FLAGS+=(--enable-asan --enable-ubsan
		"--extra-cflags=-fno-sanitize-recover=undefined -fno-omit-frame-pointer -g1")
	suffix=-asan
fi
# The configured tree is keyed by what goes into configure; our device's
# sources are synced into it on every run instead.
key=$( { echo "$QEMU_ORIG_SHA256 ${CONFIGURE_FLAGS[*]}"; cat "$TOP/qemu/devices.mak"; } |
	sha256sum | cut -c1-16)
tree=$PYACCEL_CACHE/qemu-$QEMU_UPSTREAM-$key
src=$tree/qemu-$QEMU_UPSTREAM
mkdir -p "$PYACCEL_CACHE/downloads" "$BUILD"
exec 9>"$tree.lock"
flock 9

orig_uri() {
	# The URI apt prints for the pinned Debian source package; if that
	# revision has left the archive, the same orig tarball in the pool.
	local uri
	uri=$(apt-get source --print-uris "qemu=$QEMU_DEB_VERSION" 2>/dev/null |
		awk -v f="$QEMU_ORIG" '$2 == f { gsub("\047", "", $1); print $1 }')
	[ -n "$uri" ] || uri="$(debian_mirror bookworm)/pool/main/q/qemu/${QEMU_ORIG//+/%2b}"
	printf '%s\n' "$uri"
}

if [ ! -f "$src/.unpacked" ]; then
	tarball=$PYACCEL_CACHE/downloads/$QEMU_ORIG
	fetch "$(orig_uri)" "$tarball" "$QEMU_ORIG_SHA256"
	rm -rf "$tree" && mkdir -p "$tree"
	log "unpacking QEMU $QEMU_UPSTREAM"
	tar -C "$tree" -xf "$tarball"
	[ -d "$src" ] || die "unexpected tarball layout: no $src"
	# The +ds tarball ships no firmware blobs: never try to unpack them.
	sed -i 's/^\(\s*\)unpack_edk2_blobs = bzip2.found()/\1unpack_edk2_blobs = false/' "$src/meson.build"
	# Our two lines: the device's directory and its trace events.
	sed -i "s|^subdir('arm')\$|subdir('arm')\nsubdir('convaccel')|" "$src/hw/meson.build"
	sed -i "s|^    'hw/arm',\$|    'hw/arm',\n    'hw/convaccel',|" "$src/meson.build"
	grep -q "subdir('convaccel')" "$src/hw/meson.build" &&
		grep -q "'hw/convaccel'," "$src/meson.build" ||
		die "could not hook hw/convaccel into QEMU's meson files"
	mkdir -p "$src/hw/convaccel"
	cp qemu/devices.mak "$src/configs/devices/aarch64-softmmu/pyaccel.mak"
	touch "$src/.unpacked"
fi

# Sync the device sources (content-compared, so unchanged files keep their
# timestamps and ninja does nothing for them).
for f in "$TOP"/qemu/hw/* "$TOP"/qemu/compute/convaccel_compute.[ch] \
	"$TOP"/qemu/compute/convaccel_compute.cflags \
	"$TOP/include/convaccel_regs.h"; do
	cmp -s "$f" "$src/hw/convaccel/$(basename "$f")" || cp "$f" "$src/hw/convaccel/"
done
if [ ! -f "$src/build/.configured" ]; then
	log "configuring QEMU"
	rm -rf "$src/build" && mkdir -p "$src/build"
	(cd "$src/build" && ../configure "${CONFIGURE_FLAGS[@]}") >"$tree/configure.log" 2>&1 ||
		{ tail -30 "$tree/configure.log"; die "QEMU configure failed (log: $tree/configure.log)"; }
	touch "$src/build/.configured"
fi

log "building qemu-system-aarch64 (first build: a few minutes)"
ninja -C "$src/build" qemu-system-aarch64 >"$tree/build.log" 2>&1 ||
	{ grep -E -B2 -A5 'error|Error' "$tree/build.log" | head -60; die "QEMU build failed (log: $tree/build.log)"; }
out=$BUILD/qemu-system-aarch64$suffix
if ! cmp -s "$src/build/qemu-system-aarch64" "$out"; then
	# a new file, renamed over the old one: a running board keeps its binary
	cp "$src/build/qemu-system-aarch64" "$out.new" && mv -f "$out.new" "$out"
fi
log "QEMU ready: $BUILD/qemu-system-aarch64$suffix"
