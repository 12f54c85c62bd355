# pyaccel guest run script: /init execs it with the shares mounted.
# It loads the driver, runs /out/cmd (or a shell on the console when there
# is none), saves dmesg, reports the exit status and powers off.
#   console marker:  PYACCEL-EXIT <status>
#   files:           /out/status, /out/dmesg.txt
export HOME=/root PY_COLORS=0 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/pyaccel
export PYACCEL_GUEST=1
cd /pyaccel
mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 shm /dev/shm   # POSIX semaphores

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
dmesg >/out/dmesg.txt
echo "$status" >/out/status
sync
echo "PYACCEL-EXIT $status"
poweroff -f
