"""Nothing lost: SIGKILL in the middle of checkpoint writes (for certain) and at random moments,
then resume; the result equals a run that was never killed."""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from conftest import ROOT, TINY, run_script
from helpers import checkpoint
from helpers.training import load_trained_model

# Kills in order: "write" waits until a checkpoint write is half done (the slow-save helper
# announces it and then holds it open), "random" strikes at a random moment once the run saves.
PLAN = ["random", "write", "random", "write"]


def last_saved(out) -> int:
    path = out / "ckpt.eqx"
    return path.stat().st_mtime_ns if path.exists() else 0


def test_killed_runs_always_leave_a_checkpoint_and_resume_exactly(tmp_path, char_dataset):
    common = [f"--dataset={char_dataset}", *TINY, "--max_iters=150", "--eval_interval=1", "--eval_iters=1",
              "--always_save_checkpoint=True", "--log_interval=50"]
    run_script("train.py", *common, f"--out_dir={tmp_path / 'straight'}")

    out, marker = tmp_path / "killed", tmp_path / "writing"
    # JAX's compilation cache lets each relaunch skip recompiling what the last one compiled.
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", SLOW_SAVE_MARKER=str(marker))
    rng = random.Random(0)
    failures = []
    for number, kind in enumerate(PLAN, 1):
        marker.unlink(missing_ok=True)
        init = "resume" if (out / "ckpt.eqx").exists() else "scratch"
        pause = "60" if kind == "write" else "0.05"
        proc = subprocess.Popen([sys.executable, "tests/train_with_slow_saves.py", *common, f"--out_dir={out}",
                                 f"--init_from={init}"], cwd=ROOT, env=dict(env, SLOW_SAVE_PAUSE=pause),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        saved_before = last_saved(out)
        deadline = time.time() + 120
        if kind == "write":
            while time.time() < deadline and proc.poll() is None and not marker.exists():
                time.sleep(0.01)
        else:
            while time.time() < deadline and proc.poll() is None and last_saved(out) == saved_before:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is not None:
            failures.append(f"kill {number}: the run ended before it: {proc.stderr.read().decode()[-300:]}")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if kind == "write":
            assert (out / "ckpt.eqx.tmp").exists(), "the kill was meant to land inside a checkpoint write"
        if (out / "ckpt.eqx").exists():
            try:
                load_trained_model(out)
            except checkpoint.CheckpointError as error:
                failures.append(f"kill {number} ({kind}): {error}")
    assert not failures, failures
    assert checkpoint.read_header(out / "ckpt.eqx")["iter_num"] < 150  # the kills did interrupt the run

    run_script("train.py", *common, f"--out_dir={out}", "--init_from=resume")
    straight, _ = load_trained_model(tmp_path / "straight")
    resumed, header = load_trained_model(out)
    assert header["iter_num"] == 150
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
