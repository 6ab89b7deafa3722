"""bench.py: the comparison table's arithmetic, one real --compare run on a tiny model, the GPU
suite's table and JSON (from a fake child), the one-line errors, and Ctrl-C."""

import json
import re
import signal
import subprocess
import time

import pytest
from conftest import assert_one_line, launch, run_main, run_script, stopped
from mistakes import Mistake

import bench
from helpers.errors import UserError
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
    Mistake("bench.py", "the GPU suite where jax has no GPU", ("--suite=gpu",),
            "--suite=gpu measures an NVIDIA GPU, and jax has none here", "jax runs on the CPU"),
    Mistake("bench.py", "an unknown suite", ("--suite=tpu",), "unknown suite 'tpu'; valid names: gpu"),
    Mistake("bench.py", "the GPU flags for the whole suite", ("--suite=gpu", "--gpu_flags=True"),
            "--suite sets the GPU flags row by row (its rows with them are named so): drop --gpu_flags"),
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
    "jax runs on the CPU": lambda monkeypatch: monkeypatch.setenv("JAX_PLATFORMS", "cpu"),
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
    # Against a given peak far below this tiny model's FLOP/s, so that a slow, busy machine still
    # prints an MFU above the 0.0% its one decimal would round a measured peak's to.
    out = run_script("bench.py", *TINY_BENCH, "--compare", "--rounds=2", "--peak_flops=1e9").stdout.splitlines()
    sides = [line.split(":")[0].strip() for line in out[1:-1]]
    assert sides == ["jax", "torch", "jax", "torch"]
    jax_ms = [float(re.search(r"([\d.]+) ms/step", line).group(1)) for line in out[1:-1:2]]
    mfu = [float(re.search(r"([\d.]+)% MFU", line).group(1)) for line in out[1:-1:2]]
    scratch = [float(re.search(r"XLA scratch ([\d.,]+) MiB", line).group(1)) for line in out[1:-1:2]]
    assert all(ms > 0 for ms in jax_ms) and all(m > 0 for m in mfu) and all(s > 0 for s in scratch)
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


def test_the_gpu_suite_prints_and_writes_a_row_per_setting_each_run_cold(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "nvidia_backend_expected", lambda: True)
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "cache"))
    children = []

    def fake_child(args, env, timeout):  # what a child on an H100 would print, or its one-line failure
        children.append((args, env, timeout))
        if "--remat=dots" in args:
            raise UserError("out of memory on the device")
        ms = 50.0 if "--batch_size=16" in args else 100.0
        return {"device": "NVIDIA H100 80GB HBM3", "backend": "gpu", "jax": "0.10.2", "memory_kind": "device peak",
                "peak": "989.000 TFLOP/s (H100 SXM data sheet, dense bfloat16)", "step_ms": ms,
                "tokens_per_s": 16 * 1024 / ms * 1e3, "mfu": 0.45, "memory_bytes": 17.5 * 2**30, "compile_s": 9.0,
                "host_ms": 0.12}

    rows = bench.run_suite("gpu", run=fake_child)
    bench.write_suite("gpu", rows, str(tmp_path / "suite.json"))
    out = capsys.readouterr().out.splitlines()
    suite = bench.SUITES["gpu"]
    assert out[0] == bench.SUITE_HEADER and len(out) == len(suite) + 2
    assert out[1] == f"{'gpt2 B=16':<32}     50.0    327,680  45.0%    17.50       9.0     0.12"
    assert out[len(suite)] == f"{'gpt2 B=64 remat=dots':<32} failed: out of memory on the device"
    assert out[-1] == ("NVIDIA H100 80GB HBM3, jax 0.10.2, MFU of 989.000 TFLOP/s (H100 SXM data sheet, dense "
                       f"bfloat16); peak memory: device peak; written to {tmp_path / 'suite.json'}")
    for (args, env, timeout), (label, row_args) in zip(children, suite, strict=True):
        assert list(args) == [*row_args, "--side=jax"] and timeout == bench.ROW_TIMEOUT_S
        assert env["JAX_ENABLE_COMPILATION_CACHE"] == "false" and "JAX_COMPILATION_CACHE_DIR" not in env
    written = json.loads((tmp_path / "suite.json").read_text())
    assert [row["row"] for row in written["rows"]] == [label for label, _ in suite]
    assert written["device"] == "NVIDIA H100 80GB HBM3" and written["rows"][0]["step_ms"] == 50.0


def test_a_suite_whose_children_land_on_the_cpu_refuses(monkeypatch):
    monkeypatch.setattr(bench, "nvidia_backend_expected", lambda: True)
    with pytest.raises(UserError, match="jax fell back to the CPU"):
        bench.run_suite("gpu", run=lambda args, env, timeout: {"backend": "cpu"})


@pytest.mark.parametrize("label, args", bench.SUITES["gpu"], ids=[label for label, _ in bench.SUITES["gpu"]])
def test_every_suite_row_is_settings_bench_takes(label, args):
    # Parsed in full, each row stops only at the step count appended to it.
    result = run_main("bench.py", *args, "--steps=3", "--steps_per_call=2")
    assert_one_line(result, "steps (3) must be a multiple of steps_per_call (2)")
