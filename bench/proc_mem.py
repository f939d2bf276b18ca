"""Peak resident memory of a stretch of work in this process, measured as the C++ benchmarks do:
trim malloc's free memory, reset the resident-set high-water mark, and report its rise (Linux /proc)."""
import ctypes

_LIBC = ctypes.CDLL("libc.so.6")


def proc_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return -1


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def start():
    """Begins a measurement; pass the result to peak_mb()."""
    _LIBC.malloc_trim(0)
    rss0 = proc_kb("VmRSS:")
    reset_hwm()
    return rss0


def peak_mb(rss0):
    """Rise of the resident-set high-water mark since start(), in MB."""
    return (proc_kb("VmHWM:") - rss0) / 1024.0
