#!/usr/bin/env bash
# Fetch Debian's arm64 kernel (Image + modules) and the headers to build
# out-of-tree modules against it, into the cache. Prints the cache folder.
#   <dir>/Image  <dir>/kver  <dir>/root/lib/modules/<kver>/...
#   <dir>/headers  (the flavour headers folder to pass to make -C)
# Never installs arm64 packages on the host: apt-get download + dpkg-deb -x.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

key=$(hash_inputs guest/kernel.sh)
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
image=$(apt-cache depends linux-image-arm64:arm64 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/ { sub(":arm64", "", $2); print $2; exit }')
if [ -z "$image" ]; then
	as_root apt-get update -q >&2
	image=$(apt-cache depends linux-image-arm64:arm64 |
		awk '/Depends: linux-image-[0-9]/ { sub(":arm64", "", $2); print $2; exit }')
fi
[ -n "$image" ] || die "apt knows no linux-image-arm64:arm64; is the arm64 architecture configured?"
abi=${image#linux-image-}
abi=${abi%-arm64}
ver=$(apt-cache policy "$image:arm64" | awk '/Candidate:/ { print $2 }')
log "guest kernel: $image $ver"

rm -rf "$dir" && mkdir -p "$dir/debs" "$dir/root"
(cd "$dir/debs" && apt-get download -q -o APT::Sandbox::User=root "$image:arm64=$ver" \
	"linux-headers-$abi-arm64:arm64=$ver" "linux-headers-$abi-common=$ver" \
	"linux-kbuild-6.1=$ver" >&2) || die "could not download the kernel packages $ver"
for deb in "$dir"/debs/*.deb; do
	dpkg-deb -x "$deb" "$dir/root"
done
kver=$(ls "$dir/root/lib/modules")
cp "$dir/root/boot/vmlinuz-$kver" "$dir/Image"
printf '%s\n' "$kver" >"$dir/kver"
hdr=$dir/root/usr/src/linux-headers-$abi-arm64
# The flavour Makefile includes the common headers by absolute path.
sed -i "s|/usr/src/linux-headers-$abi-common|$dir/root/usr/src/linux-headers-$abi-common|" "$hdr/Makefile"
ln -sfn "$hdr" "$dir/headers"
# kbuild's scripts are referenced through /usr/lib/linux-kbuild-6.1 symlinks
for l in "$hdr/scripts" "$hdr/tools" "$dir/root/usr/src/linux-headers-$abi-common/scripts" \
	"$dir/root/usr/src/linux-headers-$abi-common/tools"; do
	[ -L "$l" ] || continue
	t=$(readlink "$l")
	case "$t" in /*) ln -sfn "$dir/root$t" "$l" ;; esac
done
rm -rf "$dir/debs"
touch "$dir/.done"
printf '%s\n' "$dir"
