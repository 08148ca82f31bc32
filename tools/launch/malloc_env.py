"""glibc malloc settings that keep freed memory in the heap, for the tools' processes (CPU speed).

By default glibc gives every freed block over 32 MiB back to the kernel (mmap threshold) and trims the heap
top, so each forward pass page-faults its large activation maps in again. On a 2-core CPU that was half the
inference time of InceptionNeXt-T, and of timm's models alike, at batch 32 (docs/benchmarks.md). glibc reads
these settings only at start-up, so ``ensure()`` re-executes the command once with them set (same pid, before
anything heavy is imported). ``INCEPTIONNEXT_MALLOC=default`` keeps glibc's behaviour. The cost: a process
keeps its peak memory until it exits.
"""
import os
import sys

SETTINGS = {'MALLOC_MMAP_THRESHOLD_': str(1 << 40), 'MALLOC_TRIM_THRESHOLD_': str(1 << 40)}


def active() -> bool:
    return all(os.environ.get(k) == v for k, v in SETTINGS.items())


def ensure() -> None:
    """Re-executes this command with ``SETTINGS`` unless they are set or opted out of (Linux only)."""
    if os.environ.get('INCEPTIONNEXT_MALLOC', 'fast') == 'default' or active() or sys.platform != 'linux':
        return
    os.environ.update(SETTINGS)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable] + sys.orig_argv[1:])


def describe() -> str:
    return 'glibc malloc keeps freed memory' if active() else 'glibc malloc defaults'
