"""Two process-wide settings that make training on a CPU faster, which the training scripts
(train.py, bench.py) apply first thing, before jax starts. Both apply only when jax's backend
will be the CPU: on an accelerator the host does little of the work, so a restart buys nothing.

1. Transparent huge pages. XLA's CPU backend allocates every large intermediate of a step
   afresh, each with its own mmap, and the kernel hands those pages over 4 KiB at a time,
   zeroing each on first touch, so a large step spends much of its time page faulting.
   `glibc.malloc.hugetlb=1` makes malloc mark its memory for 2 MiB pages: one fault where
   there were 512. glibc reads it from the environment only at start-up, so the script
   restarts itself once with it set.
2. XLA's own matmul code instead of the YNNPACK library. Recent XLA releases hand matmuls
   (and what they fuse into them) to YNNPACK by default; for attention's many small batched
   (per-head) matmuls XLA's own code was the faster of the two, and whole training steps
   were faster with YNNPACK off (docs/performance.md). XLA reads the flag when the backend starts
   and aborts the process on a flag it does not know, so the flag is added only when the
   installed jaxlib has it.

Anything the user has set already (GLIBC_TUNABLES, the flag in XLA_FLAGS) is left alone.
"""

import importlib.util
import mmap
import os
import pkgutil
import re
import signal
import sys
from pathlib import Path

HUGE_PAGES = "glibc.malloc.hugetlb=1"
YNN_FLAG = "xla_cpu_experimental_ynn_fusion_type"
NO_YNNPACK = f"--{YNN_FLAG}="  # an empty list of fusion types: YNNPACK does none of them
# Top-level packages of jax's accelerator runtimes (jax[cuda12], jax[cuda13], jax[rocm], jax[tpu]).
ACCELERATOR_PACKAGES = re.compile(r"jax_(cuda|rocm)\d+_plugin|libtpu")
SHARED_LIBRARY_SUFFIXES = {".so", ".dylib", ".pyd", ".dll"}


def cpu_backend_expected() -> bool:
    """Whether jax's default backend will be the CPU, decided without importing jax: asking
    jax would start it, and both settings must be in place before that (glibc reads its
    tunables when the process starts, XLA its flags when the backend does)."""
    platforms = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME")
    if platforms:  # jax uses the first platform listed as the default
        return platforms.split(",")[0].strip().lower() == "cpu"
    # Otherwise jax picks an accelerator whenever a runtime for one is installed; any module
    # in the jax_plugins namespace is a PJRT plugin, which jax prefers to the CPU.
    if importlib.util.find_spec("jax_plugins") is not None:
        return False
    return not any(ACCELERATOR_PACKAGES.fullmatch(module.name) for module in pkgutil.iter_modules())


def jaxlib_knows(flag: str) -> bool:
    """Whether the installed jaxlib accepts the XLA flag, told without loading it: every flag's
    name is compiled into jaxlib's shared libraries (libjax_common.so, searched first, in
    recent releases), so a byte search of those files finds it."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return False
    libraries = [path for directory in spec.submodule_search_locations for path in Path(directory).rglob("*")
                 if path.suffix in SHARED_LIBRARY_SUFFIXES and path.is_file() and path.stat().st_size]
    libraries.sort(key=lambda path: path.name != "libjax_common.so")
    for path in libraries:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if data.find(flag.encode()) >= 0:
                return True
    return False


def tune_cpu_runtime(restart_env: dict[str, str] | None = None) -> None:
    """Apply both settings if jax will run on the CPU; call it before jax is imported.
    May restart the script, with Ctrl-C held back (blocked) across the restart: install your
    Ctrl-C handler before calling it, as train.py and bench.py do. `restart_env` goes into the
    restarted process's environment alone (train.py's start time, which it takes back out);
    without a restart the environment stays as it was."""
    # The restarted process (or one that was not restarted) takes a Ctrl-C held back for it now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not cpu_backend_expected():
        return
    # The restart comes first, so that only the process that goes on to run searches jaxlib.
    if sys.platform == "linux" and "GLIBC_TUNABLES" not in os.environ:
        sys.stdout.flush()
        # A Ctrl-C between here and the new process's own handler would end it with a
        # traceback. Blocked, it waits (the mask and the pending signal survive the exec) until
        # the new process, its handler in place, calls this function again.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]],
                  {**os.environ, "GLIBC_TUNABLES": HUGE_PAGES, **(restart_env or {})})
    flags = os.environ.get("XLA_FLAGS", "")
    if YNN_FLAG not in flags and jaxlib_knows(YNN_FLAG):
        os.environ["XLA_FLAGS"] = f"{flags} {NO_YNNPACK}".strip()
