"""CPU time and memory of a process, and the machine's busy time, read from /proc (Linux).

The same readings serve every process the benchmark compares (the bare runtime, the in-process loop, the
agent, the component), whoever reads them. CPU time is utime + stime of /proc/<pid>/stat: every thread of
the process, those that have exited included, in clock ticks (10 ms at 100 Hz), so blocks are long enough
(about a second or more) to make that resolution a percent. Standard library only: the workers import it
beside either source tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TICK = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of process pid so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK  # utime, stime: fields 14 and 15 of stat(5)


@dataclass(frozen=True)
class Memory:
    rss_mb: float  # resident now (VmRSS)
    peak_mb: float  # highest resident so far (VmHWM)


def memory(pid: int | str = "self") -> Memory:
    values: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB
    return Memory(values.get("VmRSS", 0.0), values.get("VmHWM", 0.0))


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) * TICK
