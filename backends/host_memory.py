"""The host memory of XLA's CPU programs: huge pages for the per-step scratch memory, freed
compiler memory handed back, and the process's resident memory measured.

XLA's CPU client gives each run of a compiled program one block of temporary memory
(hundreds of MB for B0's training step at batch 128) and frees it when the step ends. glibc
serves blocks that large with a fresh mmap and returns them with munmap, so every step
touches that many bytes of new 4 KiB pages and the kernel faults and zeroes each one.

glibc (2.35 and later) can ask for transparent huge pages on the memory it maps
(`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`): 2 MiB pages, up to 512 times fewer faults, and
fewer TLB misses while the step runs. What it saves on a given machine is measured by
`python -m tinyeffnet.bench --backend jax --variant base --batch-size 128`, run with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=0` and without: it reports the step's scratch memory
(`custom_temp_bytes`), its page faults per step and the kernel's share of the CPU time
(tinyeffnet/benchmarks/jax_step.py).
The setting is read once, when the process starts, so the commands that run training or
evaluation steps (`train`, `evaluate`, `ablation`, `bench`) call `run_with_huge_pages()`
first: where it helps and is not set yet, it starts the same command again with it set
(`os.execve`: same process id, nothing has run yet). Set `GLIBC_TUNABLES` yourself to
choose otherwise (`glibc.malloc.hugetlb=0` keeps 4 KiB pages); in a process of your own
(a notebook, a script) set it before Python starts.

Where it does not apply (not Linux, not glibc, glibc before 2.35, transparent huge pages
switched off) nothing is changed. GPUs and TPUs hold their programs' memory on the
device; there the setting only touches host memory.

Compiling a program (XLA's passes, then LLVM on many threads) allocates far more than the
program keeps, in many small blocks spread over glibc's per-thread arenas. glibc keeps
freed small blocks for the next malloc instead of returning them, so after a compile the
process stays as large as the compile was, and the step's scratch block (a fresh mmap)
comes on top of that. `release_free_memory()` (glibc's `malloc_trim`) hands the free pages
of every arena back; the JAX runtime calls it after each long compile
(tinyeffnet/training/runtime.py).

`peak_rss_bytes()` is what `/usr/bin/time -v` reports as the maximum resident set size;
on Linux `reset_peak_rss()` and `peak_rss_since_reset()` tell what each phase of a
benchmark (a compile, the steps) peaked at.
"""
import ctypes
import functools
import os
import sys

TUNABLE = "glibc.malloc.hugetlb"
_THP_MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


def huge_page_tunables(environ=None, libc_version=None, thp_mode=None):
    """The GLIBC_TUNABLES value that turns huge pages on, or None where nothing should change
    (already chosen, or not available here). The arguments default to this machine."""
    environ = os.environ if environ is None else environ
    current = environ.get("GLIBC_TUNABLES", "")
    if TUNABLE in current:
        return None  # chosen already: by the user, or by our own re-exec
    if libc_version is None:
        libc_version = _libc_version()
    if thp_mode is None:
        thp_mode = _thp_mode()
    name, _, version = (libc_version or "").partition(" ")
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None
    if name != "glibc" or major_minor < (2, 35) or "[never]" in thp_mode or "[" not in thp_mode:
        return None
    return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def run_with_huge_pages():
    """Restart this command with huge pages on where that helps (see the module docstring);
    otherwise return and let it run as it is."""
    tunables = huge_page_tunables()
    if tunables is None or not getattr(sys, "orig_argv", None):
        return
    env = dict(os.environ, GLIBC_TUNABLES=tunables)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
    except OSError:
        return  # could not restart: run with the default pages


def _libc_version():
    if not sys.platform.startswith("linux"):
        return ""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return ""


def _thp_mode():
    try:
        with open(_THP_MODE) as f:
            return f.read()
    except OSError:
        return ""


def release_free_memory():
    """Return the free memory glibc's allocator holds to the OS (no-op without glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=None)  # looked up once: the trainer releases every 20 steps
def _malloc_trim():
    if not _libc_version().startswith("glibc"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def peak_rss_bytes():
    """This process's peak resident memory in bytes, as `/usr/bin/time -v` reports it (on
    Linux also the image the process had before its last exec, a forked parent's included);
    None where the OS does not say."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB, macOS bytes


def reset_peak_rss():
    """Start the high-water mark of peak_rss_since_reset() again from the current resident
    memory (Linux only; False elsewhere). It also lowers what peak_rss_bytes() and
    `/usr/bin/time` report: only a benchmark that reports every phase's peak should call it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak resident set size (the kernel's proc(5) clear_refs)
        return True
    except OSError:
        return False


def peak_rss_since_reset():
    """The peak resident memory in bytes since reset_peak_rss() (Linux's VmHWM), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
