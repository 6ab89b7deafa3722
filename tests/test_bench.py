"""bench.py: the comparison table's arithmetic, one real --compare run on a tiny model, the
one-line errors, and Ctrl-C."""

import re
import signal
import subprocess
import time

import pytest
from conftest import assert_one_line, launch, run_main, run_script, stopped
from mistakes import Mistake

import bench
from helpers.interrupt import EXIT_CODE
from model import GPTConfig

TINY_BENCH = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--steps=4",
              "--steps_per_call=2"]

# Made with TINY_BENCH's settings first.
ROWS = [
    Mistake("bench.py", "an unknown mode", ("--mode=foo",), "unknown mode 'foo'; valid names: train, sample"),
    Mistake("bench.py", "a negative batch size", ("--batch_size=-1",), "batch_size must be >= 0, got -1"),
    Mistake("bench.py", "a dtype it does not compute in", ("--dtype=float16",),
            "unknown dtype 'float16'; valid names: auto, float32, bfloat16"),
    Mistake("bench.py", "an unknown remat policy", ("--remat=some",), "unknown remat 'some'; valid names: none, dots, full"),
    Mistake("bench.py", "no timed steps", ("--steps=0",), "steps must be >= 1, got 0"),
    Mistake("bench.py", "steps not a multiple of steps_per_call", ("--steps=3", "--steps_per_call=2"),
            "steps (3) must be a multiple of steps_per_call (2)"),
    Mistake("bench.py", "no rounds", ("--compare", "--rounds=0"), "rounds must be >= 1, got 0"),
    Mistake("bench.py", "an unknown side", ("--side=both",), "unknown side 'both'; valid names: jax, torch"),
    Mistake("bench.py", "a negative thread count", ("--threads=-1",), "threads must be >= 0, got -1"),
    Mistake("bench.py", "more threads than cores", ("--threads=100000",),
            "threads=100000 is more than this machine's"),
    Mistake("bench.py", "no new tokens", ("--mode=sample", "--new_tokens=0"), "new_tokens must be >= 1, got 0"),
    Mistake("bench.py", "a negative peak FLOP/s", ("--peak_flops=-1",), "peak_flops must be >= 0, got -1"),
    Mistake("bench.py", "an unknown arch", ("--arch=gpt5",), "unknown arch 'gpt5'"),
    Mistake("bench.py", "--compare in sample mode", ("--mode=sample", "--compare"),
            "--compare times training steps, not --mode=sample: drop one of them"),
    Mistake("bench.py", "sampling from a one-token window", ("--mode=sample", "--block_size=1"),
            "a model with block_size=1 cannot generate"),
    Mistake("bench.py", "a side that crashes without a word", ("--compare",),
            "the jax side failed: it ended with exit code -11, saying nothing", "the side's process crashes"),
]
CTRL_C = Mistake("bench.py", "Ctrl-C while starting", ("--steps=100000",), "bench.py: stopped by Ctrl-C",
                 "Ctrl-C 0.3 s after the launch, while it restarts itself or imports")
MISTAKES = [*ROWS, CTRL_C]


def crashes(*args, **kwargs) -> subprocess.CompletedProcess:
    """A side's process killed by a signal before it wrote anything."""
    return subprocess.CompletedProcess(args, -signal.SIGSEGV, "", "")


SETUP = {
    "": lambda monkeypatch: None,
    "the side's process crashes": lambda monkeypatch: monkeypatch.setattr(subprocess, "run", crashes),
}


def row(side: str, step_ms: float) -> dict:
    return {"side": side, "step_ms": step_ms, "tokens_per_s": 1.0, "compile_s": 0.0, "memory_bytes": 0,
            "memory_kind": "process peak RSS", "device": "test"}


def test_rounds_report_the_median_of_their_ratios(capsys):
    # torch / jax per round: 2.0, 3.0, 2.5 -> 2.5, whichever round the machine was fast in.
    rows = [row("jax", 10), row("torch", 20), row("jax", 20), row("torch", 60), row("jax", 4), row("torch", 10)]
    bench.print_table(GPTConfig(), 12, rows)
    assert capsys.readouterr().out.splitlines()[-1] == "jax / torch speed: 2.50x (median of 3 rounds: 2.00x, 3.00x, 2.50x)"


def test_one_round_reports_one_ratio(capsys):
    bench.print_table(GPTConfig(), 12, [row("jax", 10), row("torch", 15)])
    assert capsys.readouterr().out.splitlines()[-1] == "jax / torch speed: 1.50x"


def test_compare_times_both_sides_alternately():
    out = run_script("bench.py", *TINY_BENCH, "--compare", "--rounds=2").stdout.splitlines()
    sides = [line.split(":")[0].strip() for line in out[1:-1]]
    assert sides == ["jax", "torch", "jax", "torch"]
    jax_ms = [float(re.search(r"([\d.]+) ms/step", line).group(1)) for line in out[1:-1:2]]
    mfu = [float(re.search(r"([\d.]+)% MFU", line).group(1)) for line in out[1:-1:2]]
    scratch = [float(re.search(r"XLA scratch ([\d.,]+) MiB", line).group(1)) for line in out[1:-1:2]]
    assert all(ms > 0 for ms in jax_ms) and all(0 < m < 100 for m in mfu) and all(s > 0 for s in scratch)
    assert re.fullmatch(r"jax / torch speed: [\d.]+x \(median of 2 rounds: [\d.]+x, [\d.]+x\)", out[-1])


@pytest.mark.parametrize("mistake", ROWS, ids=lambda m: m.id)
def test_mistakes_are_one_line(monkeypatch, mistake):
    SETUP[mistake.setup](monkeypatch)
    result = run_main("bench.py", *TINY_BENCH, *mistake.args)
    assert_one_line(result, mistake.prints)
    assert result.stdout == ""


def test_ctrl_c_while_starting():
    proc = launch("bench.py", *TINY_BENCH, *CTRL_C.args)
    time.sleep(0.3)  # jax takes about a second to import
    result = stopped(proc)
    assert_one_line(result, CTRL_C.prints, EXIT_CODE)
    assert result.stdout == ""
