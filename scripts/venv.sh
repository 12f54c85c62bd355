#!/usr/bin/env bash
# A Python environment in the cache, keyed by its requirements file; prints
# its python. Default: tests/requirements.txt (the host's test tools);
# bench/requirements.txt adds torch for the benchmarks, which tests never need.
#   scripts/venv.sh [REQUIREMENTS]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

req=${1:-tests/requirements.txt}
[ -f "$TOP/$req" ] || die "no requirements file $req"
key=$(hash_inputs "$req" scripts/venv.sh)
venv=$PYACCEL_CACHE/venv-$(basename "$(dirname "$req")")-$key
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.done" ]; then
	mkdir -p "$PYACCEL_CACHE"
	exec 9>"$venv.lock"
	flock 9
	if [ ! -f "$venv/.done" ]; then
		log "creating a Python environment for $req ($venv)"
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check \
			-r "$TOP/$req" >"$venv.log" 2>&1 ||
			{ tail -20 "$venv.log" >&2; die "pip install -r $req failed (log: $venv.log)"; }
		touch "$venv/.done"
	fi
fi
printf '%s\n' "$venv/bin/python"
