"""bench.py: the comparison table's arithmetic, one real --compare run on a tiny model, and
the one-line errors."""

import re

import pytest
from conftest import run_script

import bench
from model import GPTConfig

TINY_BENCH = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--steps=4",
              "--steps_per_call=2"]


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


@pytest.mark.parametrize(
    "args, message",
    [
        (["--compare", "--rounds=0"], "error: rounds must be at least 1, got 0"),
        (["--arch=gpt5"], "error: unknown arch 'gpt5'"),
        (["--side=both"], "error: side must be jax or torch, got 'both'"),
        (["--steps=3"], "error: steps (3) must be a positive multiple of steps_per_call (2)"),
    ],
)
def test_mistakes_print_one_line(args, message):
    result = run_script("bench.py", *TINY_BENCH, *args, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1
