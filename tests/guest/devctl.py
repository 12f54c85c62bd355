"""The driver's sysfs counters and debugfs fault injection, for guest tests
and the stress suites."""
SYSFS = "/sys/class/misc/convaccel0"
DEBUGFS = "/sys/kernel/debug/convaccel0"


def stat(name: str) -> int:
    """A counter of the driver, from sysfs."""
    with open(f"{SYSFS}/{name}") as f:
        return int(f.read())


def inject(command: str) -> None:
    """Device fault injection through the driver's debugfs."""
    with open(f"{DEBUGFS}/inject", "w") as f:
        f.write(command)
