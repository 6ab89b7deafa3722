"""One training run per out_dir, one prepare per dataset folder: a second launch into a folder in
use refuses (a training run's names the first).

Two runs in one folder would overwrite each other's checkpoints and interleave their logs. The
guard is an advisory lock (flock) on out_dir/lock: the kernel releases it when its process
ends, however it ends (even SIGKILL or a power cut), so a crashed run never leaves the folder
stuck, and no stale-lock cleanup is ever needed. The file holds who took it, for the message.
"""

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

from helpers.errors import UserError


def lock_out_dir(out: Path) -> IO:
    """Take out/lock for as long as the returned file stays open (keep a reference to it)."""
    try:
        handle = open(Path(out) / "lock", "a+")
    except OSError as error:
        raise UserError(f"cannot open {Path(out) / 'lock'} ({error.strerror or error}): make it writable or "
                        "pass another --out_dir") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that has just started"
        handle.close()
        raise UserError(f"{out} is in use by another training run ({holder}): wait for it to end, stop it, "
                        "or pass another --out_dir") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def lock_dataset_dir(folder: Path) -> int:
    """Lock the folder itself (a prepare's dataset folder holds no lock file) until the returned
    descriptor is closed: two prepares at once would leave one's bins beside the other's meta.json."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise UserError(f"{folder} is being written by another prepare: wait for it to end, or pass another "
                        "--out_dir") from None
    return handle
