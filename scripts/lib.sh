# Shared helpers for pyaccel's build scripts. Source it; do not run it.
# shellcheck shell=bash

PYACCEL_CACHE=${PYACCEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pyaccel}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$TOP/build}

log() { printf '[pyaccel] %s\n' "$*" >&2; }
die() { printf '[pyaccel] error: %s\n' "$*" >&2; exit 1; }

# The guest kernel (make's KERNEL=): 6.1 (default: Debian bookworm's),
# 6.12 (Debian's 6.12 for bookworm), debug (guest/debug-kernel.sh).
PYACCEL_KERNEL=${PYACCEL_KERNEL:-6.1}
DEFAULT_KERNEL=6.1

# kernel_fetch [NAME]: fetch or build that kernel; prints its cache folder.
kernel_fetch() {
	case "${1:-$PYACCEL_KERNEL}" in
	6.1 | 6.12) "$TOP/guest/kernel.sh" "${1:-$PYACCEL_KERNEL}" ;;
	debug) "$TOP/guest/debug-kernel.sh" ;;
	*) die "unknown kernel '${1:-$PYACCEL_KERNEL}' (known: 6.1, 6.12, debug)" ;;
	esac
}

# kernel_boot_dir [NAME]: where that kernel's Image, rootfs.cpio and kernel/
# (convaccel.ko) go: $BUILD for the default, $BUILD/kernels/NAME otherwise
# (scripts/board.py looks there).
kernel_boot_dir() {
	local k=${1:-$PYACCEL_KERNEL}
	if [ "$k" = "$DEFAULT_KERNEL" ]; then
		printf '%s\n' "$BUILD"
	else
		printf '%s\n' "$BUILD/kernels/$k"
	fi
}

# Run a command as root: directly when we are root, else through sudo.
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		log "needs root for: $*  (asking sudo)"
		sudo "$@"
	else
		die "must run as root or have sudo to run: $*"
	fi
}

# hash_inputs FILE...: a short hash over the named files' contents and names.
hash_inputs() {
	(cd "$TOP" && for f in "$@"; do printf '%s\n' "$f"; cat "$f"; done) |
		sha256sum | cut -c1-16
}

# The URI of the Debian archive that apt is configured with for SUITE
# (default bookworm). We never name a mirror host ourselves.
debian_mirror() {
	local suite=${1:-bookworm} uri
	uri=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
		awk -v s="$suite" '$2 == s { print $1; exit }')
	if [ -z "$uri" ]; then
		uri=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && / '"$suite"'( |$)/ { print u; exit }' \
			/etc/apt/sources.list.d/*.sources 2>/dev/null)
	fi
	if [ -z "$uri" ]; then
		uri=$(awk '$1 == "deb" && $3 == "'"$suite"'" { print $2; exit }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null)
	fi
	[ -n "$uri" ] || die "no apt source for Debian '$suite' found in /etc/apt; configure one first"
	printf '%s\n' "${uri%/}"
}

# ensure_backports: make sure apt has a bookworm-backports source (deb and
# deb-src, on the mirror apt already uses for bookworm). Returns 1 when it
# was already there, 0 when it added it (run apt-get update then).
BACKPORTS_SOURCES=/etc/apt/sources.list.d/pyaccel-backports.sources
ensure_backports() {
	local mirror
	apt-get indextargets --format '$(RELEASE)' 2>/dev/null | grep -qx bookworm-backports && return 1
	[ -f "$BACKPORTS_SOURCES" ] && return 1
	mirror=$(debian_mirror bookworm)
	log "adding bookworm-backports (deb, deb-src) on $mirror as $BACKPORTS_SOURCES"
	printf 'Types: deb deb-src\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$mirror" | as_root tee "$BACKPORTS_SOURCES" >/dev/null
}

# fetch URL OUT SHA256: download once, verify, keep.
fetch() {
	local url=$1 out=$2 sum=$3
	if [ -f "$out" ] && echo "$sum  $out" | sha256sum -c --status; then
		return 0
	fi
	log "downloading $(basename "$out")"
	curl -fsSL --retry 3 -o "$out.part" "$url" || die "download failed: $url"
	echo "$sum  $out.part" | sha256sum -c --status ||
		die "sha256 mismatch for $url (expected $sum)"
	mv "$out.part" "$out"
}
