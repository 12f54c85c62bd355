#!/usr/bin/env bash
# Install the host packages pyaccel needs, and only those that are missing.
# Adds bookworm-backports (deb + deb-src, on the mirror apt already uses):
# QEMU 10 needs meson >= 1.5 from there, and its source comes from there.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS=(
	# QEMU build
	gcc libc6-dev make ninja-build pkg-config libglib2.0-dev libfdt-dev
	zlib1g-dev libslirp-dev libattr1-dev libcap-ng-dev python3-venv
	xz-utils curl ca-certificates
	# compute library of the device model
	libopenblas-dev
	# kernel module, device tree, guest image
	gcc-aarch64-linux-gnu device-tree-compiler mmdebstrap cpio
	# BTF of the module for Debian's 6.12 (its kbuild runs pahole)
	dwarves
	# the debug guest kernel, built from source (guest/debug-kernel.sh)
	bc flex bison libssl-dev libelf-dev
	# host test environment (pylibfdt for dtschema builds with swig)
	python3-dev swig
	# the width/depth study's data (study/fashion.py)
	dataset-fashion-mnist
	# make profile: perf samples QEMU's threads (bench/profile.py)
	linux-perf
)
BPO_PKGS=(meson python3-pycotap)

missing=()
for p in "${PKGS[@]}" "${BPO_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
# meson from bookworm itself is too old for QEMU 10
if dpkg --compare-versions "$(dpkg-query -W -f='${Version}' meson 2>/dev/null || echo 0)" lt 1.5; then
	missing+=(meson)
fi
# The guest kernel is Debian's arm64 package (guest/kernel.sh downloads it):
# apt needs the architecture, and its lists, before the builds run in parallel.
arm64=1
dpkg --print-foreign-architectures | grep -qx arm64 || arm64=0
[ ${#missing[@]} = 0 ] && [ $arm64 = 1 ] && { log "host packages: all present"; exit 0; }
if [ $arm64 = 0 ]; then
	log "adding the arm64 architecture to apt (for the guest kernel's packages)"
	as_root dpkg --add-architecture arm64
fi

[ ${#missing[@]} = 0 ] || log "host packages missing: ${missing[*]}"
bpo=/etc/apt/sources.list.d/pyaccel-backports.sources
if [ ! -f "$bpo" ]; then
	mirror=$(debian_mirror bookworm)
	log "adding bookworm-backports (deb, deb-src) on $mirror as $bpo"
	printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$mirror" | as_root tee "$bpo" >/dev/null
fi
as_root apt-get update -q
[ ${#missing[@]} = 0 ] && { log "host packages: all present"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
base=() bpo_list=()
for p in "${missing[@]}"; do
	case " ${BPO_PKGS[*]} meson " in *" $p "*) bpo_list+=("$p") ;; *) base+=("$p") ;; esac
done
[ ${#base[@]} = 0 ] || as_root apt-get install -y -q --no-install-recommends "${base[@]}"
[ ${#bpo_list[@]} = 0 ] ||
	as_root apt-get install -y -q --no-install-recommends -t bookworm-backports "${bpo_list[@]}"
log "host packages installed"
