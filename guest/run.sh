# pyaccel guest run script: /init execs it with the shares mounted.
# It loads the driver, runs /out/cmd (or a shell on the console when there
# is none), saves dmesg, reports the exit status and powers off.
#   console marker:  PYACCEL-EXIT <status>
#   files:           /out/status, /out/dmesg.txt, /out/kmemleak.txt (only
#                    on a kernel with kmemleak: the leaks suspected during
#                    the run; empty when there are none)
# /out/module-dir (written by board.py for a kernel other than the default)
# names the folder, relative to the tree, that holds convaccel.ko for the
# kernel booted: it is bind-mounted on build/kernel, where the tests look.
export HOME=/root PY_COLORS=0 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/pyaccel
export PYACCEL_GUEST=1
cd /pyaccel
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 shm /dev/shm   # POSIX semaphores

KMEMLEAK=/sys/kernel/debug/kmemleak
if [ -f /out/module-dir ]; then
	mdir=/pyaccel/$(cat /out/module-dir)
	[ -d /pyaccel/build/kernel ] || echo "pyaccel: no build/kernel to mount $mdir on"
	mount --bind "$mdir" /pyaccel/build/kernel || echo "pyaccel: cannot bind $mdir"
fi
if [ -e "$KMEMLEAK" ]; then
	# Forget what boot left behind: kmemleak only reports objects older
	# than 5 s, so wait for that age, scan, then clear what was found.
	while [ "$(cut -d. -f1 /proc/uptime)" -lt 6 ]; do sleep 1; done
	echo scan >"$KMEMLEAK" && echo clear >"$KMEMLEAK"
fi

status=0
if [ -f /out/no-module ]; then
	echo "pyaccel: not loading the driver (/out/no-module)"
elif ! insmod /pyaccel/build/kernel/convaccel.ko; then
	echo "pyaccel: insmod convaccel.ko failed"
	status=125
fi

if [ "$status" = 0 ]; then
	if [ -f /out/cmd ]; then
		sh /out/cmd </dev/null
		status=$?
	else
		echo "pyaccel: interactive shell; 'exit' powers the board off"
		setsid cttyhack sh -l
		status=$?
	fi
fi
if [ -e "$KMEMLEAK" ]; then
	# Twice, with a pause: an object is only reported once it is 5 s old,
	# and a second scan drops most transient false positives.
	echo scan >"$KMEMLEAK"
	sleep 6
	echo scan >"$KMEMLEAK"
	cat "$KMEMLEAK" >/out/kmemleak.txt
fi
dmesg >/out/dmesg.txt
echo "$status" >/out/status
sync
echo "PYACCEL-EXIT $status"
poweroff -f
