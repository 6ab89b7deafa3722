"""One file per checkpoint: a JSON header line, then the training state's arrays.

The header (config, iteration, best val loss, library versions) is plain JSON, so a checkpoint
can be inspected with `head -1` and the model skeleton rebuilt before any array is read. The
arrays follow as `eqx.tree_serialise_leaves` writes them: raw numpy arrays, no pickle, so
loading a checkpoint can never run code.
"""

import contextlib
import json
import os
import platform
from pathlib import Path

import equinox as eqx
import jax
import optax

from helpers.errors import UserError

FORMAT = "nanojaxgpt-checkpoint-v1"


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, corrupt, or for a different model."""


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "jax": jax.__version__,
        "equinox": eqx.__version__,
        "optax": optax.__version__,
    }


def save(path: Path, header: dict, state) -> None:
    """Write atomically: to a temporary file, flushed to disk, then renamed over `path`.

    A rename is all-or-nothing, so a crash at any moment leaves either the old checkpoint or
    the new one, never half of one.
    """
    path = Path(path)
    header = {"format": FORMAT, **header, "versions": versions()}
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(header).encode() + b"\n")
            eqx.tree_serialise_leaves(f, state)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:  # a full disk, a read-only or vanished folder, ...
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write {path} ({error.strerror or error}); any previous checkpoint there is "
            "intact: free some space or pick a writable --out_dir, then resume"
        ) from None
    # The rename itself lives in the directory: sync it too, so it survives a power cut.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_header(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        best = path.with_name("best.eqx")
        if path.name == "ckpt.eqx" and best.exists():  # the latest is gone, the best is not
            raise CheckpointError(f"no checkpoint at {path}, but {best} is there: copy it to {path.name} to go on "
                                  "training from it (sample.py samples it with --checkpoint=best.eqx)")
        raise CheckpointError(f"no checkpoint at {path}: train first, or point --out_dir at one")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file: point --out_dir at the run's folder, "
                              "which holds ckpt.eqx")
    try:
        with open(path, "rb") as f:
            line = f.readline()
    except OSError as error:
        raise CheckpointError(f"cannot read {path} ({error.strerror or error}): check its permissions") from None
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nanoJAXGPT checkpoint (its first line is not our header)")
    return header


def load(path: Path, like):
    """The state saved in `path`, shaped like `like` (a PyTree of arrays or ShapeDtypeStructs,
    cheaply made with eqx.filter_eval_shape)."""
    path = Path(path)
    read_header(path)
    with open(path, "rb") as f:
        f.readline()
        try:
            state = eqx.tree_deserialise_leaves(f, like)
        except Exception as error:  # numpy and equinox raise several kinds for a bad file
            raise CheckpointError(
                f"{path} is truncated or corrupt ({type(error).__name__}); "
                "delete it and resume from another checkpoint, or train again"
            ) from error
        if f.read(1):
            raise CheckpointError(f"{path} has data after its last array: it is corrupt")
    return state
