"""train.py, with every checkpoint write held open for a while, so that tests can stop it in the
middle of one for certain: a pause before each fsync, announced by creating a marker file.

    SLOW_SAVE_PAUSE    seconds to pause inside each write (default 0.05)
    SLOW_SAVE_MARKER   a path created when a write reaches its pause (optional)

Used by tests/test_faults.py and tests/test_interrupt.py.
"""

import os
import runpy
import stat
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import checkpoint  # noqa: E402

real_fsync = os.fsync
PAUSE = float(os.environ.get("SLOW_SAVE_PAUSE", "0.05"))
MARKER = os.environ.get("SLOW_SAVE_MARKER")


def slow_fsync(fd):
    # Only the checkpoint file's own fsync, while its .tmp holds the half-written state; not
    # the directory's, which comes after the rename, when the write is already complete.
    if stat.S_ISREG(os.fstat(fd).st_mode):
        if MARKER:
            Path(MARKER).touch()
        time.sleep(PAUSE)
    real_fsync(fd)


checkpoint.os.fsync = slow_fsync
sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
