#!/usr/bin/env bash
# The benchmark's Python environment (with torch), in the cache, keyed by
# bench/requirements.txt; separate from scripts/venv.sh's test environment so
# the tests never need torch. Prints the venv's python.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

key=$(hash_inputs bench/requirements.txt bench/venv.sh)
venv=$PYACCEL_CACHE/bench-venv-$key
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.done" ]; then
	mkdir -p "$PYACCEL_CACHE"
	exec 9>"$venv.lock"
	flock 9
	if [ ! -f "$venv/.done" ]; then
		log "creating the benchmark Python environment ($venv)"
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check \
			-r "$TOP/bench/requirements.txt" >"$venv.log" 2>&1 ||
			{ tail -20 "$venv.log" >&2; die "pip install -r bench/requirements.txt failed (log: $venv.log)"; }
		touch "$venv/.done"
	fi
fi
printf '%s\n' "$venv/bin/python"
