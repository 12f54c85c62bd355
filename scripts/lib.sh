# Shared helpers for pyaccel's build scripts. Source it; do not run it.
# shellcheck shell=bash

PYACCEL_CACHE=${PYACCEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pyaccel}
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$TOP/build}

log() { printf '[pyaccel] %s\n' "$*" >&2; }
die() { printf '[pyaccel] error: %s\n' "$*" >&2; exit 1; }

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
