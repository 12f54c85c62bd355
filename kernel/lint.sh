#!/usr/bin/env bash
# `make lint`: the driver and its headers through Linux's own checkers:
#   checkpatch.pl --strict   every .c/.h of kernel/, the uapi header and
#                            include/convaccel_regs.h (a kernel header too)
#   kernel-doc -Werror       the /** */ comments of the same files
#   sparse (make C=2)        __iomem/__user/__bitwise checks of the driver,
#                            built as kernel/build.sh does, in $BUILD/lint-sparse
#   ioctl-number.rst         the uapi's ioctl type is not taken
# Exits non-zero, showing the findings, if any of them reports anything:
# warnings and checks count as much as errors.
#
# checkpatch.pl and kernel-doc, and the files checkpatch reads, come from
# Debian's linux-source-6.1 package (apt-get download, then only those
# members of its tarball), cached in $PYACCEL_CACHE/checkpatch-<version>/;
# with a cached copy, apt is not asked at all (warm runs are offline).
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

PKG=linux-source-6.1
# What we take from the kernel tree. checkpatch.pl reads spelling.txt and
# const_structs.checkpatch (it warns when they are missing), with --root
# vendor-prefixes.yaml (for the vendor of a compatible string) and, with
# --verbose only, checkpatch.rst, handy to explain a finding by hand:
#   perl $PYACCEL_CACHE/checkpatch-*/scripts/checkpatch.pl --strict -v ...
MEMBERS=(
	scripts/checkpatch.pl
	scripts/spelling.txt
	scripts/const_structs.checkpatch
	scripts/kernel-doc
	Documentation/dev-tools/checkpatch.rst
	Documentation/devicetree/bindings/vendor-prefixes.yaml
	Documentation/userspace-api/ioctl/ioctl-number.rst
)

# complete DIR: DIR holds every member (a cache made by an older lint.sh
# may lack some).
complete() {
	local m
	[ -f "$1/.done" ] || return 1
	for m in "${MEMBERS[@]}"; do
		[ -f "$1/$m" ] || return 1
	done
}

candidate() {
	apt-cache policy "$PKG" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" { print $2 }'
}

# Print the folder holding checkpatch, fetching it on first use.
checkpatch_dir() {
	local dir ver tmp deb
	dir=$(for d in "$PYACCEL_CACHE"/checkpatch-*/; do
		complete "$d" && printf '%s\n' "${d%/}"
	done | sort -V | tail -n 1)
	if [ -n "$dir" ]; then
		printf '%s\n' "$dir"
		return 0
	fi
	ver=$(candidate)
	if [ -z "$ver" ]; then
		as_root apt-get update -q >&2
		ver=$(candidate)
	fi
	[ -n "$ver" ] || die "apt knows no $PKG; is a Debian bookworm source configured?"
	dir=$PYACCEL_CACHE/checkpatch-$ver
	mkdir -p "$PYACCEL_CACHE"
	exec 8>"$dir.lock"
	flock 8
	if ! complete "$dir"; then
		log "fetching checkpatch.pl from $PKG $ver"
		tmp=$(mktemp -d "$dir.tmp.XXXXXX")
		# shellcheck disable=SC2064  # expand $tmp now
		trap "rm -rf '$tmp'" EXIT
		download() {
			(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$PKG=$ver" >&2)
		}
		download || { as_root apt-get update -q >&2 && download; } ||
			die "apt-get download $PKG=$ver failed"
		deb=$(echo "$tmp/${PKG}_"*.deb)
		[ -f "$deb" ] || die "apt-get download left no $PKG .deb"
		# The .deb holds usr/src/linux-source-6.1.tar.xz: take our members
		# out of it as it streams by, without unpacking the tree.
		mkdir "$tmp/tree"
		dpkg-deb --fsys-tarfile "$deb" |
			tar -xOf - "./usr/src/$PKG.tar.xz" |
			tar -xJf - -C "$tmp/tree" --strip-components=1 "${MEMBERS[@]/#/$PKG/}" ||
			die "extracting ${MEMBERS[*]} from $deb failed"
		printf '%s %s\n' "$PKG" "$ver" >"$tmp/tree/VERSION"
		touch "$tmp/tree/.done"
		rm -rf "$dir"
		mv "$tmp/tree" "$dir"
		rm -rf "$tmp"
		trap - EXIT
	fi
	printf '%s\n' "$dir"
}

cp_dir=$(checkpatch_dir)
status=0
# check TITLE COMMAND...: a finding if COMMAND fails or prints anything.
check() {
	local title=$1 out rc=0
	shift
	out=$("$@" 2>&1) || rc=$?
	[ $rc = 0 ] && [ -z "$out" ] && return 0
	printf '=== %s: exit status %s\n%s\n\n' "$title" "$rc" "$out"
	status=1
}

# checkpatch and kernel-doc run in a scratch folder that lays the files out
# as in a kernel tree: the uapi header as include/uapi/linux/convaccel.h, so
# that checkpatch's uapi rules apply to it (no BIT(), which is not exported
# to userspace). No .git there: checkpatch would otherwise ask git about each
# file, and may leave a .checkpatch-camelcase.* cache in the repo. --root is
# that folder: with --no-tree it only feeds the CamelCase check the names in
# its include/*.h, and has the driver's compatible strings looked up in its
# Documentation/devicetree/bindings (our binding, and Linux's vendor
# prefixes; copies, as grep -r skips symbolic links). HOME is the scratch
# folder too, so that a ~/.checkpatch.conf cannot add options.
# With --quiet a clean file prints nothing, so any output is a finding (also
# a "No typos will be found - file ... missing").
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/include"
ln -s "$TOP/kernel" "$work/kernel"
ln -s "$TOP/kernel/include/uapi" "$work/include/uapi"
ln -s "$TOP/include/convaccel_regs.h" "$work/include/convaccel_regs.h"
bindings=Documentation/devicetree/bindings
mkdir -p "$work/$bindings"
cp "$cp_dir/$bindings/vendor-prefixes.yaml" "$TOP/dts/qemu,convaccel.yaml" "$work/$bindings/"
uapi=include/uapi/linux/convaccel.h
regs=include/convaccel_regs.h
mapfile -t driver < <(cd "$work" && printf '%s\n' kernel/*.c kernel/*.h)

checkpatch() {
	cd "$work" && HOME=$work env -u GIT_DIR perl "$cp_dir/scripts/checkpatch.pl" \
		--strict --no-tree --root="$work" --quiet --show-types --color=never "$@"
}
# No --ignore for the driver and the uapi header. --no-tree: this is not a
# kernel tree (no MAINTAINERS, get_maintainer.pl, spdxcheck.py); -f checks
# whole files, so the patch-only checks (FILE_PATH_CHANGES, Signed-off-by...)
# do not arise.
check "checkpatch --strict (the uapi header is kernel/$uapi)" \
	checkpatch -f "${driver[@]}" "$uapi"
# The register map is also compiled into QEMU and parsed by pyaccel/uapi.py,
# so it stays plain C constants: BIT_MACRO wants BIT(n), which neither QEMU's
# build of it nor that parser has (and BIT() is unsigned long, not the u32
# that (1u << n) is, for the ~ of a mask).
check "checkpatch --strict --ignore BIT_MACRO" \
	checkpatch --ignore BIT_MACRO -f "$regs"

# The uapi's ioctl type must be one ioctl-number.rst does not list.
ioctl_type_free() {
	local type
	type=$(awk '/^#define CONVACCEL_IOCTL_BASE/ { print toupper($3) }' "$TOP/kernel/$uapi")
	[ -n "$type" ] || { echo "no CONVACCEL_IOCTL_BASE in kernel/$uapi"; return 1; }
	type=0x${type#0X}
	{ grep -i -E "^$type[[:space:]]" \
		"$cp_dir/Documentation/userspace-api/ioctl/ioctl-number.rst" || true; } |
		sed "s/^/ioctl type $type is taken: /"
}
check "ioctl type against Documentation/userspace-api/ioctl/ioctl-number.rst" ioctl_type_free

kerneldoc() {
	cd "$work" && perl "$cp_dir/scripts/kernel-doc" -none -Werror "$@"
}
check "kernel-doc -none -Werror" kerneldoc "${driver[@]}" "$uapi" "$regs"

# sparse through kbuild, with kernel/build.sh's make command line, on a copy
# of the sources of its own (C=2 checks every file, also unchanged ones).
if ! command -v sparse >/dev/null; then
	log "installing sparse (for make C=2)"
	install_sparse() {
		as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends sparse >&2
	}
	install_sparse || { as_root apt-get update -q >&2 && install_sparse; } ||
		die "installing sparse failed"
fi
command -v aarch64-linux-gnu-gcc >/dev/null ||
	die "aarch64-linux-gnu-gcc missing: run 'make setup' first"
kdir=$(bash "$TOP/guest/kernel.sh")
sp=$BUILD/lint-sparse
mkdir -p "$sp/include"
exec 7>"$sp.lock"
flock 7
sync_file() { cmp -s "$1" "$2" || { mkdir -p "$(dirname "$2")"; cp "$1" "$2"; }; }
(cd "$TOP/kernel" && find . -name '*.[ch]' -o -name Kbuild) | while read -r f; do
	sync_file "$TOP/kernel/$f" "$sp/$f"
done
sync_file "$TOP/include/convaccel_regs.h" "$sp/include/convaccel_regs.h"
sparse_build() {
	local out rc=0
	out=$(make -s -C "$kdir/headers" M="$sp" ARCH=arm64 \
		CROSS_COMPILE=aarch64-linux-gnu- C=2 CHECK=sparse modules 2>&1) || rc=$?
	# kbuild's only chatter: external modules get no BTF without a vmlinux.
	# Findings name the files of the copy: show them as the repo's.
	grep -v '^Skipping BTF generation for .* due to unavailability of vmlinux$' <<<"$out" |
		sed "s|$sp/include/convaccel_regs\.h|include/convaccel_regs.h|g; s|$sp/|kernel/|g"
	return $rc
}
check "sparse (make C=2 CHECK=sparse, as kernel/build.sh)" sparse_build
exec 7>&-

if [ $status != 0 ]; then
	log "lint: findings above ($(cat "$cp_dir/VERSION"))"
	exit 1
fi
log "lint: clean: checkpatch --strict, kernel-doc, sparse ($(cat "$cp_dir/VERSION"))"
