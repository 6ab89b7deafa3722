"""Ctrl-C, as a terminal sends it (SIGINT to the process): one stops cleanly with a checkpoint
that resumes exactly; a second quits at once."""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from conftest import TINY, launch, run_script
from helpers import checkpoint
from helpers.interrupt import EXIT_CODE
from helpers.training import load_trained_model
from mistakes import Mistake


# What Ctrl-C prints (exit code 130), as docs/mistakes.md lists it.
MISTAKES = [
    Mistake("train.py", "Ctrl-C before the first step", (),
            "interrupted before the first training step: nothing to save, no checkpoint written or changed"),
    Mistake("train.py", "Ctrl-C once training has begun", (), "continue with --init_from=resume"),
]
BEFORE_THE_FIRST_STEP, AFTER_STEPS = (mistake.prints for mistake in MISTAKES)


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-500:]}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.02)


def trained(out) -> bool:
    log = out / "log.jsonl"
    return log.exists() and any("loss" in json.loads(line) for line in log.read_text().splitlines())


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, char_dataset):
    common = [f"--dataset={char_dataset}", *TINY, "--dropout=0.1"]
    out = tmp_path / "interrupted"
    proc = launch("train.py", *common, f"--out_dir={out}", "--max_iters=100000")
    wait_for(lambda: trained(out), proc, "a training step")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODE
    assert stderr.strip().count("\n") == 0 and "interrupted at iteration" in stderr and AFTER_STEPS in stderr
    stopped_at = checkpoint.read_header(out / "ckpt.eqx")["iter_num"]
    assert f"interrupted at iteration {stopped_at}:" in stderr and stopped_at > 0

    # Resumed for five more steps, it ends where a run that never stopped ends.
    end = f"--max_iters={stopped_at + 5}"
    run_script("train.py", *common, f"--out_dir={out}", end, "--init_from=resume")
    run_script("train.py", *common, f"--out_dir={tmp_path / 'straight'}", end)
    resumed, header = load_trained_model(out)
    straight, _ = load_trained_model(tmp_path / "straight")
    assert header["iter_num"] == stopped_at + 5
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("after", [0.1, 0.3, 0.5, 0.8, 1.2])
def test_ctrl_c_at_start_up_is_one_line_and_loses_nothing(tmp_path, char_dataset, after):
    # Start-up: the interpreter, the restart that tunes the CPU runtime, jax's import, the
    # configuration, the first compilation. Wherever the press lands, the run ends with one line.
    # A press during the interpreter's own start-up, before train.py's first line, is beyond any
    # script; on a busy machine that can last past 0.1 s. So the run starts with Ctrl-C blocked
    # (the mask is inherited), which holds a press until train.py's first line takes it over.
    out = tmp_path / "run"
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        proc = launch("train.py", f"--dataset={char_dataset}", *TINY, f"--out_dir={out}", "--max_iters=100000")
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_CODE and stderr.strip().count("\n") == 0, stderr
    if BEFORE_THE_FIRST_STEP in stderr:
        assert not (out / "ckpt.eqx").exists()
    else:  # a slow start: the steps had begun, and were saved
        assert "interrupted at iteration" in stderr and AFTER_STEPS in stderr
        stopped_at = checkpoint.read_header(out / "ckpt.eqx")["iter_num"]
        run_script("train.py", f"--dataset={char_dataset}", *TINY, f"--out_dir={out}", "--init_from=resume",
                   f"--max_iters={stopped_at + 1}")


def test_a_second_ctrl_c_quits_at_once(tmp_path, char_dataset):
    # Every checkpoint write pauses for a minute, so after the first Ctrl-C the run is still
    # saving when the second arrives: only an immediate exit ends it within the wait below.
    out, marker = tmp_path / "run", tmp_path / "writing"
    env = dict(os.environ, SLOW_SAVE_PAUSE="60", SLOW_SAVE_MARKER=str(marker))
    proc = launch("tests/train_with_slow_saves.py", f"--dataset={char_dataset}", *TINY, f"--out_dir={out}",
                  "--max_iters=100000", env=env)
    wait_for(lambda: trained(out), proc, "a training step")
    proc.send_signal(signal.SIGINT)
    wait_for(marker.exists, proc, "the checkpoint write after the first Ctrl-C")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGINT  # ended by the signal itself, not by an orderly exit
    assert not (out / "ckpt.eqx").exists()  # the half-written checkpoint never took the real name
