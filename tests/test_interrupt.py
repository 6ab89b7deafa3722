"""Ctrl-C, as a terminal sends it (SIGINT to the process): one stops cleanly with a checkpoint
that resumes exactly; a second quits at once."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from conftest import ROOT, TINY, run_script
from helpers import checkpoint
from helpers.interrupt import EXIT_CODE
from helpers.training import load_trained_model


def launch(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


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
    assert stderr.strip().count("\n") == 0 and "interrupted at iteration" in stderr and "init_from=resume" in stderr
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
