#!/usr/bin/env bash
# Fetch one of Debian's arm64 kernels (Image + modules) and the headers to
# build out-of-tree modules against it, into the cache. Prints the folder.
#   guest/kernel.sh [6.1|6.12]   6.1 (default): bookworm's kernel;
#                                6.12: the newest 6.12 apt knows for
#                                bookworm (bookworm-security's
#                                linux-image-6.12-arm64, or backports')
#   <dir>/Image  <dir>/kver  <dir>/root/lib/modules/<kver>/...
#   <dir>/headers  (the flavour headers folder to pass to make -C)
# Never installs arm64 packages on the host: apt-get download + dpkg-deb -x.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

series=${1:-6.1}
case "$series" in
6.1) METAS=(linux-image-arm64) ;;
6.12) METAS=(linux-image-6.12-arm64 linux-image-arm64) ;;
*) die "unknown kernel '$series' (guest/kernel.sh knows 6.1 and 6.12)" ;;
esac

key=$(cd "$TOP" && { hash_inputs guest/kernel.sh; echo "$series"; } | sha256sum | cut -c1-16)
dir=$PYACCEL_CACHE/kernel-$key
if [ -f "$dir/.done" ]; then
	printf '%s\n' "$dir"
	exit 0
fi
mkdir -p "$PYACCEL_CACHE"
exec 9>"$dir.lock"
flock 9
[ -f "$dir/.done" ] && { printf '%s\n' "$dir"; exit 0; }

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	log "adding the arm64 architecture to apt (to download the guest kernel)"
	as_root dpkg --add-architecture arm64
	as_root apt-get update -q >&2
fi

# newest: "<metapackage> <version>" of the highest $series.* version any of
# the metapackages has for arm64, whatever the pinning (backports is 100).
newest() {
	local m
	for m in "${METAS[@]}"; do
		apt-cache madison "$m:arm64" 2>/dev/null |
			awk -v m="$m" -v s="$series." '{ v = $3 } index(v, s) == 1 { print m, v }'
	done | sort -k2,2V | tail -n 1
}
read -r meta ver < <(newest) || true
if [ -z "${ver:-}" ]; then
	[ "$series" = 6.12 ] && ensure_backports || true
	as_root apt-get update -q >&2
	read -r meta ver < <(newest) || true
fi
[ -n "${ver:-}" ] || die "apt knows no arm64 $series kernel (${METAS[*]}); is the arm64 architecture configured?"
# depend PKG=VER PATTERN: the first dependency of PKG matching PATTERN.
depend() {
	apt-cache depends "$1" 2>/dev/null |
		awk -v p="$2" '$1 == "Depends:" { gsub("[<>]", "", $2); sub(":arm64$", "", $2) }
			$1 == "Depends:" && $2 ~ p { print $2; exit }'
}
image=$(depend "$meta:arm64=$ver" '^linux-image-[0-9]')
[ -n "$image" ] || die "$meta $ver depends on no linux-image-<abi>-arm64"
abi=${image#linux-image-}
abi=${abi%-arm64}
headers=linux-headers-$abi-arm64
common=$(depend "$headers:arm64=$ver" '^linux-headers-.*-common$')
kbuild=$(depend "$headers:arm64=$ver" '^linux-kbuild-')
[ -n "$common" ] && [ -n "$kbuild" ] || die "cannot resolve $headers $ver's common headers and kbuild"
log "guest kernel $series: $image $ver"

rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
(cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root "$image:arm64=$ver" \
	"$headers:arm64=$ver" "$common=$ver" "$kbuild=$ver" >&2) ||
	die "could not download the kernel packages $ver"
for deb in "$dir"/debs/*.deb; do
	dpkg-deb -x "$deb" "$dir/root"
done
kver=$(ls "$dir/root/lib/modules")
img=$dir/root/boot/vmlinuz-$kver
if [ "$(head -c2 "$img" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
	zcat "$img" >"$dir/Image"       # a gzipped Image: QEMU wants it plain
else
	cp "$img" "$dir/Image"
fi
printf '%s\n' "$kver" >"$dir/kver"
printf '%s %s %s\n' "$series" "$image" "$ver" >"$dir/version"
hdr=$dir/root/usr/src/linux-headers-$abi-arm64
# The flavour Makefile includes the common headers by absolute path.
sed -i "s|/usr/src/linux-headers-$abi-common|$dir/root/usr/src/linux-headers-$abi-common|" "$hdr/Makefile"
ln -sfn "$hdr" "$dir/headers"
# kbuild's scripts are referenced through /usr/lib/linux-kbuild-* symlinks
for l in "$hdr/scripts" "$hdr/tools" "$dir/root/usr/src/linux-headers-$abi-common/scripts" \
	"$dir/root/usr/src/linux-headers-$abi-common/tools"; do
	[ -L "$l" ] || continue
	t=$(readlink "$l")
	case "$t" in /*) ln -sfn "$dir/root$t" "$l" ;; esac
done
rm -rf "$dir/debs"
touch "$dir/.done"
printf '%s\n' "$dir"
