#!/usr/bin/env bash
# Build the debug guest kernel (KASAN, lockdep, UBSAN, kmemleak, DMA-API
# debug, fault injection) from Debian's linux-source-6.1, cross-compiled for
# QEMU's virt board: allnoconfig plus guest/debug.config. Prints the cache
# folder, laid out like guest/kernel.sh's:
#   <dir>/Image  <dir>/kver  <dir>/config
#   <dir>/headers  (the build tree itself: make -C <dir>/headers M=... works)
#   <dir>/root/lib/modules/<kver>/  (modules.builtin only: 9p is built in)
# Cached by a hash of this script, the fragment and the source version; the
# build log is <dir>/build.log. Cold: ~1 GB of disk, many minutes of CPU.
# With --cached: print the folder if it is built, else exit 1 (no build).
# The whole script is one function, read before it runs: editing the file
# while a build is under way cannot derail that build.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

main() {
	PKG=linux-source-6.1
	FRAGMENT=guest/debug.config
	MAKE=(make ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- LOCALVERSION=)

	candidate() {
		apt-cache policy "$PKG" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }'
	}
	ver=$(candidate)
	if [ -z "$ver" ]; then
		as_root apt-get update -q >&2
		ver=$(candidate)
	fi
	[ -n "$ver" ] || die "apt knows no $PKG; is a Debian bookworm source configured?"

	key=$(cd "$TOP" && { hash_inputs guest/debug-kernel.sh "$FRAGMENT"; echo "$PKG $ver"; } |
		sha256sum | cut -c1-16)
	dir=$PYACCEL_CACHE/debug-kernel-$key
	if [ -f "$dir/.done" ]; then
		printf '%s\n' "$dir"
		exit 0
	fi
	[ "${1:-}" = --cached ] && exit 1
	mkdir -p "$PYACCEL_CACHE/downloads"
	exec 9>"$dir.lock"
	flock 9
	[ -f "$dir/.done" ] && { printf '%s\n' "$dir"; exit 0; }
	command -v aarch64-linux-gnu-gcc >/dev/null && command -v flex >/dev/null &&
		command -v bison >/dev/null || "$TOP/scripts/setup-host.sh"

	deb=$PYACCEL_CACHE/downloads/${PKG}_${ver}_all.deb
	if [ ! -f "$deb" ]; then
		log "downloading $PKG $ver"
		tmp=$(mktemp -d "$PYACCEL_CACHE/downloads/.src.XXXXXX")
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$PKG=$ver" >&2) ||
			{ rm -rf "$tmp"; die "apt-get download $PKG=$ver failed"; }
		mv "$tmp"/"${PKG}"_*.deb "$deb"
		rm -rf "$tmp"
	fi

	rm -rf "$dir" && mkdir -p "$dir/src"
	log "unpacking $PKG $ver"
	dpkg-deb --fsys-tarfile "$deb" | tar -xOf - "./usr/src/$PKG.tar.xz" |
		tar -xJf - -C "$dir/src" --strip-components=1 || die "unpacking $deb failed"
	src=$dir/src
	cp "$TOP/$FRAGMENT" "$src/pyaccel-debug.config"
	(cd "$src" && env ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
		scripts/kconfig/merge_config.sh -n pyaccel-debug.config >"$dir/config.log" 2>&1) ||
		die "merge_config.sh failed: see $dir/config.log"

	# Every option of the fragment must have survived Kconfig as written.
	missing=()
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*)
			grep -qxF -- "$line" "$src/.config" ||
				missing+=("$line (have: $(grep -E "^(# )?${line%%=*}[= ]" "$src/.config" || echo absent))") ;;
		"# CONFIG_"*" is not set")
			opt=${line#"# "}
			opt=${opt%% *}
			! grep -q "^$opt=" "$src/.config" || missing+=("$line (have: $(grep "^$opt=" "$src/.config"))") ;;
		esac
	done <"$TOP/$FRAGMENT"
	if [ ${#missing[@]} -gt 0 ]; then
		printf '  %s\n' "${missing[@]}" >&2
		die "the debug kernel's .config lacks the options above (a dependency is off; see $dir/config.log)"
	fi

	log "building the debug kernel ($PKG $ver, nice -n 10, -j$(nproc)); log: $dir/build.log"
	t0=$(date +%s)
	(cd "$src" && nice -n 10 "${MAKE[@]}" -j"$(nproc)" Image modules) >"$dir/build.log" 2>&1 || {
		tail -n 30 "$dir/build.log" >&2
		die "the debug kernel build failed: see $dir/build.log"
	}
	log "debug kernel built in $(($(date +%s) - t0)) s"
	kver=$(cat "$src/include/config/kernel.release")
	cp "$src/arch/arm64/boot/Image" "$dir/Image"
	cp "$src/.config" "$dir/config"
	printf '%s\n' "$kver" >"$dir/kver"
	mkdir -p "$dir/root/lib/modules/$kver"
	cp "$src/modules.builtin" "$src/modules.builtin.modinfo" "$dir/root/lib/modules/$kver/"
	# Objects are not needed to build modules against the tree (vmlinux stays,
	# for scripts/decode_stacktrace.sh).
	find "$src" -name '*.o' ! -name 'vmlinux.o' -delete
	rm -f "$src/vmlinux.o"
	ln -sfn src "$dir/headers"
	touch "$dir/.done"
	printf '%s\n' "$dir"
}

main "$@"
exit
