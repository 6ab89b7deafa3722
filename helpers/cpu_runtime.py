"""Two process-wide settings that make training on a CPU faster, which the training scripts
(train.py, bench.py) apply first thing, before jax starts.

1. Transparent huge pages. XLA's CPU backend allocates every large intermediate of a step
   afresh, each with its own mmap, and the kernel hands those pages over 4 KiB at a time,
   zeroing each on first touch. At the shakespeare-char size (B=64, T=256) that page
   faulting took a third of the step's CPU time. `glibc.malloc.hugetlb=1` makes malloc mark
   its memory for 2 MiB pages: 512 times fewer faults. glibc reads it from the environment
   only at start-up, so the script restarts itself once with it set.
2. XLA's own matmul code instead of the YNNPACK library. YNNPACK runs attention's batched
   (per-head) matmuls at 32-85 GFLOP/s here against XLA's 44-102; turned off, the whole step
   is faster at both benchmark sizes. XLA reads the flag when the backend starts.

Anything the user has set already (GLIBC_TUNABLES, the flag in XLA_FLAGS) is left alone.
"""

import os
import sys

HUGE_PAGES = "glibc.malloc.hugetlb=1"
NO_YNNPACK = "--xla_cpu_experimental_ynn_fusion_type="


def tune_cpu_runtime() -> None:
    """Apply both settings; call it before anything runs on jax. May restart the script."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {NO_YNNPACK}".strip()
    if sys.platform == "linux" and "GLIBC_TUNABLES" not in os.environ:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, "GLIBC_TUNABLES": HUGE_PAGES})
