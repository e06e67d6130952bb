"""Peak resident memory of a piece of CPU work, for the benchmark scripts (Linux ``/proc``)."""

from __future__ import annotations

from collections.abc import Callable


def peak_extra_mb(work: Callable[[], object]) -> float:
    """Run ``work()`` and return how far the resident set's high-water mark rose above its size before (MB).

    The high-water mark (``VmHWM``) is reset first through ``/proc/self/clear_refs``, so allocations made
    before the call (imports, inputs) do not count. Run it in a fresh process after a small warm-up.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kib("VmRSS")
    work()
    return (_status_kib("VmHWM") - base) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")
