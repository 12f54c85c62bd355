#!/usr/bin/env bash
# The host's Python environment for tests and tools, in the cache, keyed by
# tests/requirements.txt. Prints the venv's python.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

key=$(hash_inputs tests/requirements.txt scripts/venv.sh)
venv=$PYACCEL_CACHE/venv-$key
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.done" ]; then
	mkdir -p "$PYACCEL_CACHE"
	exec 9>"$venv.lock"
	flock 9
	if [ ! -f "$venv/.done" ]; then
		log "creating the host Python environment ($venv)"
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check \
			-r "$TOP/tests/requirements.txt" >"$venv.log" 2>&1 ||
			{ tail -20 "$venv.log" >&2; die "pip install -r tests/requirements.txt failed (log: $venv.log)"; }
		touch "$venv/.done"
	fi
fi
printf '%s\n' "$venv/bin/python"
