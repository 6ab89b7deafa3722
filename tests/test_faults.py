"""Nothing lost: SIGKILL at random moments (many inside a checkpoint write), then resume."""

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

KILLS = 20


def last_saved(out) -> int:
    path = out / "ckpt.eqx"
    return path.stat().st_mtime_ns if path.exists() else 0


def test_killed_runs_always_leave_a_checkpoint_and_resume_exactly(tmp_path, char_dataset):
    common = [f"--dataset={char_dataset}", *TINY, "--max_iters=150", "--eval_interval=1", "--eval_iters=1",
              "--always_save_checkpoint=True", "--log_interval=50"]
    run_script("train.py", *common, f"--out_dir={tmp_path / 'straight'}")

    out = tmp_path / "killed"
    # JAX's compilation cache lets each relaunch skip recompiling what the last one compiled.
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    rng = random.Random(0)
    kills, mid_write, failures = 0, 0, []
    while kills < KILLS:
        init = "resume" if (out / "ckpt.eqx").exists() else "scratch"
        proc = subprocess.Popen([sys.executable, "tests/train_with_slow_saves.py", *common, f"--out_dir={out}",
                                 f"--init_from={init}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # Once this run is saving checkpoints (past start-up and compilation), kill it at a
        # random moment: a training step, an evaluation, or the middle of a write.
        saved_before = last_saved(out)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and last_saved(out) == saved_before:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            failures.append(f"the run ended before its kill: {proc.stderr.read().decode()[-300:]}")
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        mid_write += (out / "ckpt.eqx.tmp").exists()
        if (out / "ckpt.eqx").exists():
            try:
                load_trained_model(out)
            except checkpoint.CheckpointError as error:
                failures.append(f"kill {kills}: {error}")
    run_script("train.py", *common, f"--out_dir={out}", "--init_from=resume")
    print(f"\n{kills} kills ({mid_write} during a checkpoint write), {len(failures)} failures")
    assert not failures, failures
    assert mid_write >= 1  # the test did reach the dangerous moment
    straight, _ = load_trained_model(tmp_path / "straight")
    resumed, header = load_trained_model(out)
    assert header["iter_num"] == 150
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(a, b)
