#!/usr/bin/env bash
# Build the guest's initramfs (uncompressed cpio: it boots fastest) from
# Debian's arm64 packages, without running anything arm64 (mmdebstrap's
# extract variant, so no binfmt is needed). Prints the cpio's path.
# The kernel folder (from guest/kernel.sh or guest/debug-kernel.sh)
# provides the modules for 9p: those the kernel has as modules are copied
# (decompressed) with their load order in /lib/modules/<kver>/pyaccel-modules;
# built-in ones (the debug kernel) and ones that version lacks are skipped.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

kdir=${1:?usage: rootfs.sh KERNEL_DIR}
PACKAGES=busybox,python3,python3-numpy,python3-cffi,python3-pyudev,python3-pytest,python3-hypothesis,python3-onnx
# The 9p share over virtio-mmio, in load order. fscache is its own module
# up to 6.7 only (then part of netfs); the others must be there, as modules
# or built in.
MODULES="virtio_mmio netfs fscache 9pnet 9pnet_virtio 9p"
REQUIRED="virtio_mmio 9pnet 9pnet_virtio 9p"

kver=$(cat "$kdir/kver")
kmods=$kdir/root/lib/modules/$kver
# Which of MODULES this kernel has as a module file (path), built in, or not.
selected=() sums=()
for m in $MODULES; do
	rel=$(grep -E "(^|/)$m\.ko$" "$kmods/modules.order" 2>/dev/null | head -n 1 || true)
	f=
	if [ -n "$rel" ]; then
		for c in "$kmods/$rel" "$kmods/$rel.xz" "$kmods/$rel.gz" "$kmods/$rel.zst"; do
			[ -f "$c" ] && { f=$c; break; }
		done
		[ -n "$f" ] || die "kernel module $rel listed in $kmods/modules.order but missing"
		selected+=("$m:$f")
		sums+=("$m $(sha256sum <"$f" | cut -c1-16)")
	elif grep -qE "(^|/)$m\.ko$" "$kmods/modules.builtin" 2>/dev/null; then
		sums+=("$m built-in")
	elif [[ " $REQUIRED " == *" $m "* ]]; then
		die "kernel $kver has no $m (neither a module nor built in): the 9p shares need it"
	fi
done

key=$(cd "$TOP" && { hash_inputs guest/rootfs.sh guest/init; echo "$kver"; printf '%s\n' "${sums[@]}"; } |
	sha256sum | cut -c1-16)
out=$PYACCEL_CACHE/rootfs-$key.cpio
if [ -f "$out" ]; then
	printf '%s\n' "$out"
	exit 0
fi
exec 9>"$out.lock"
flock 9
[ -f "$out" ] && { printf '%s\n' "$out"; exit 0; }

# One-line sources for bookworm, -updates and -security, from apt's own
# configuration: we never name a mirror host.
mirrors=()
while read -r uri suite; do
	mirrors+=("deb $uri $suite main")
done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Identifier: Packages' |
	awk '$2 ~ /^bookworm(-updates|-security)?$/' | sort -u)
[ ${#mirrors[@]} -gt 0 ] || die "no bookworm apt source configured on this machine"

root=$(mktemp -d "$PYACCEL_CACHE/rootfs-build.XXXXXX")
trap 'rm -rf "$root"' EXIT
log "building the guest root file system (arm64, $PACKAGES)"
mmdebstrap --quiet --variant=extract --architectures=arm64 --include="$PACKAGES" \
	bookworm "$root" "${mirrors[@]}" >&2 || die "mmdebstrap failed"

# What maintainer scripts would have done.
lib=$root/usr/lib/aarch64-linux-gnu
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
mkdir -p "$root/root" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" \
	"$root/pyaccel" "$root/out"
# Drop what a test guest never needs: docs, apt's lists, glibc's iconv
# modules (20 MB; Python has its own codecs), the test suites of numpy and
# of the standard library (15 MB), pydoc's topics. A smaller initramfs
# unpacks faster at every boot (the debug kernel takes ~1 s per MB).
rm -rf "$root"/usr/share/{doc,man,info,locale} "$root"/var/cache/apt "$root"/var/lib/apt/lists \
	"$root"/usr/lib/aarch64-linux-gnu/gconv "$root"/usr/lib/python3.11/test \
	"$root"/usr/lib/python3.11/pydoc_data
find "$root/usr/lib/python3/dist-packages/numpy" -depth -type d -name tests -exec rm -rf {} +
# Precompiled bytecode: without it, importing numpy takes ~10 s under TCG.
/usr/bin/python3 -m compileall -q -j 0 -s "$root" -p / \
	"$root/usr/lib/python3" "$root/usr/lib/python3.11" >/dev/null 2>&1 || true

mdir=$root/lib/modules/$kver
mkdir -p "$mdir"
: >"$mdir/pyaccel-modules"
for sel in "${selected[@]}"; do
	m=${sel%%:*} f=${sel#*:}
	case "$f" in
	*.xz) xz -dc "$f" ;;
	*.gz) gzip -dc "$f" ;;
	*.zst) zstd -qdc "$f" ;;
	*) cat "$f" ;;
	esac >"$mdir/$m.ko" || die "cannot copy kernel module $f"
	echo "$m" >>"$mdir/pyaccel-modules"
done
cp "$kmods/modules.builtin" "$mdir/" 2>/dev/null || true
install -m 0755 "$TOP/guest/init" "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --quiet) >"$out.part"
mv "$out.part" "$out"
log "guest root file system: $out ($(du -h "$out" | cut -f1))"
printf '%s\n' "$out"
