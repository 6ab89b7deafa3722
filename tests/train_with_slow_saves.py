"""train.py, with every checkpoint write slowed down (a pause before each fsync), so that a kill
from tests/test_faults.py often lands in the middle of one. Used only by that test."""

import os
import runpy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from helpers import checkpoint  # noqa: E402

real_fsync = os.fsync


def slow_fsync(fd):
    time.sleep(0.05)
    real_fsync(fd)


checkpoint.os.fsync = slow_fsync
sys.argv = [str(ROOT / "train.py"), *sys.argv[1:]]
runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
