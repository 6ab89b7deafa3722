"""Speed: training steps (tokens/s, model FLOP/s, MFU, compile time, peak memory), or sampling.

    python bench.py                          # nanoGPT's CPU "baby" size
    python bench.py --arch=shakespeare-char --compare --rounds=2   # alternating, median ratio
    python bench.py --n_layer=8 --n_embd=256 --n_head=8 --batch_size=16
    python bench.py --mode=sample --arch=shakespeare-char   # KV cache vs full recompute
    python bench.py --arch=gpt2 --batch_size=16              # on a GPU: bf16, cuDNN attention, MFU
    python bench.py --suite=gpu                              # the prepared GPU benchmark: one table of rows

--compare also times the same architecture in PyTorch (eager, fused QKV,
F.scaled_dot_product_attention, AdamW) and prints the ratio of the medians. Each side runs in
its own process, so the two never share threads and each reports its own peak memory. This
machine's speed drifts by up to 2x over minutes, so --rounds=3 times the sides alternately,
three times each, and reports the median of the three ratios: drift then hits both sides.
Steps use random tokens: this measures the model and optimizer, not the data pipeline. Ctrl-C
ends it at once.

--suite=gpu times, each in a fresh process with no compilation cache (compile times are cold),
GPT-2 124M (bf16, T=1024) at B=16 and B=32, the model of config/train_tinystories.py, and GPT-2
at B=16 with one speed setting changed per row (SUITES), so one run on one card says which
settings matter. It prints one table and writes it as JSON (--json_path). It refuses to run where
jax has no NVIDIA GPU.
"""
# ruff: noqa: E402

from helpers.interrupt import exit_on_ctrl_c

if __name__ == "__main__":
    exit_on_ctrl_c("bench.py: stopped by Ctrl-C")  # first of all: nothing here is worth saving

from helpers.cpu_runtime import tune_cpu_runtime

if __name__ == "__main__":
    tune_cpu_runtime()  # as train.py does, for both sides of --compare; before jax is imported (E402 below)

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from configurator import configure
from helpers import archs
from helpers.data import (
    batch_rng,
    get_batch,
    model_vocab_size,
    open_split,
    write_meta,
    write_tokens,
)
from helpers.errors import UserError, memory_is_the_users, report_user_errors
from helpers.flops import device_peak_flops, flops_per_token
from helpers.generation import generate, generate_without_cache
from helpers.gpu_runtime import nvidia_backend_expected, set_gpu_flags
from helpers.loss import DEFAULT_LOSS_CHUNK
from helpers.optim import make_optimizer
from helpers.registry import accepts
from helpers.tokenizer import GPT2_VOCAB_SIZE
from helpers.training import (
    DTYPE_CHOICES,
    REMAT_POLICIES,
    check_remat,
    compile_ahead,
    compute_dtype,
    init_state,
    make_steps,
)
from model import GPT, attention_implementation

MODES = ("train", "sample")
GPT2 = ("--arch=gpt2", "--dtype=bfloat16")  # GPT-2 124M, T=1024, as on a GPU it trains
SUITES = {
    "gpu": [
        ("gpt2 B=16", (*GPT2, "--batch_size=16")),
        ("gpt2 B=32", (*GPT2, "--batch_size=32")),
        ("tinystories config B=64", ("--arch=modern", "--n_layer=6", "--n_head=6", "--n_embd=288", "--block_size=256",
                                     "--vocab_size=4096", "--scan_layers=False", "--batch_size=64", "--dtype=bfloat16")),
        # Each knob beside the first row, its one change named.
        ("gpt2 B=16 whole logits", (*GPT2, "--batch_size=16", "--loss_chunk=0")),
        ("gpt2 B=16 4x larger loss chunks", (*GPT2, "--batch_size=16", f"--loss_chunk={4 * DEFAULT_LOSS_CHUNK}")),
        ("gpt2 B=16 layers unrolled", (*GPT2, "--batch_size=16", "--scan_layers=False")),
        ("gpt2 B=16 scan_unroll=2", (*GPT2, "--batch_size=16", "--scan_unroll=2")),
        ("gpt2 B=16 scan_unroll=4", (*GPT2, "--batch_size=16", "--scan_unroll=4")),
        ("gpt2 B=16 steps_per_call=1", (*GPT2, "--batch_size=16", "--steps_per_call=1", "--steps=10")),
        ("gpt2 B=16 XLA GPU flags", (*GPT2, "--batch_size=16", "--gpu_flags=True")),
        ("gpt2 B=32 XLA GPU flags", (*GPT2, "--batch_size=32", "--gpu_flags=True")),
        ("gpt2 B=64 remat=dots", (*GPT2, "--batch_size=64", "--remat=dots")),
    ],
}
SIDES = ("jax", "torch")
# Sequences per step for the sizes nanoGPT benchmarks (others: 8).
BATCH_SIZES = {"baby": 12, "shakespeare-char": 64, "gpt2": 8}

mode: accepts(choices=MODES) = "train"  # train: time optimizer steps; sample: time generation with and without KV cache
arch = "baby"  # a preset from helpers/archs.py; the model settings below default to its values
n_layer = 4  # transformer blocks (default: the arch's)
n_head = 4  # attention heads (default: the arch's)
n_embd = 128  # residual width (default: the arch's)
block_size = 64  # tokens per sequence (default: the arch's)
vocab_size = 65  # vocabulary (default: the arch's)
mlp = "gelu"  # the MLP (default: the arch's)
scan_layers = False  # scan over the layers, or unroll them (default: the arch's)
scan_unroll: accepts(low=1) = 1  # with scan_layers: layers per scan iteration
remat: accepts(choices=REMAT_POLICIES) = "none"  # gradient checkpointing; dots: recompute all but matmuls; full: all
loss_chunk: accepts(low=0) = 33_554_432  # as train.py's: the head and loss over at most this many logits at a time; 0: all at once
batch_size: accepts(low=0) = 0  # sequences per step (0: 12 for baby, 64 for shakespeare-char, 8 otherwise)
dtype: accepts(choices=DTYPE_CHOICES) = "auto"  # compute dtype; auto: bfloat16 on a GPU or TPU, float32 on a CPU
steps: accepts(low=1) = 20  # timed steps (a multiple of steps_per_call); the median is reported
steps_per_call: accepts(low=1) = 10  # optimizer steps per compiled call, as train.py runs them; our side's median is over calls
compare = False  # also time PyTorch on the same architecture and print the ratio
rounds: accepts(low=1) = 1  # with --compare: time the two sides this many times, alternately; the median ratio counts
side: accepts(choices=SIDES) = "jax"  # which implementation this process times
peak_flops: accepts(low=0) = 0.0  # peak FLOP/s for MFU; 0.0 uses the data sheet or measures a matmul
threads: accepts(low=0) = 0  # PyTorch intra-op threads (0: PyTorch's default, one per core)
new_tokens: accepts(low=1) = 500  # sample mode: tokens generated after a one-token prompt
gpu_flags = False  # on an NVIDIA GPU, set the XLA flags JAX's GPU guide names (helpers/gpu_runtime.py), as train.py's setting does
suite = ""  # gpu: the prepared GPU benchmark, a row per model and speed setting (ignores the settings above)
json_path = "bench_gpu.json"  # with --suite: where the table is also written, as JSON


def check_settings() -> None:
    """What no single declaration above can say."""
    if steps % steps_per_call:
        raise UserError(f"steps ({steps}) must be a multiple of steps_per_call ({steps_per_call})")
    if suite and suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}; valid names: {', '.join(SUITES)}")
    if suite and gpu_flags:
        raise UserError("--suite sets the GPU flags row by row (its rows with them are named so): drop --gpu_flags")
    if compare and mode != "train":
        raise UserError(f"--compare times training steps, not --mode={mode}: drop one of them")
    if threads > os.cpu_count():
        raise UserError(f"threads={threads} is more than this machine's {os.cpu_count()} CPU cores, which only slows "
                        f"PyTorch down: pick at most {os.cpu_count()}, or 0 for PyTorch's default")


def arch_preset(settings: dict) -> dict:
    """The preset's values for the model settings above; anything given explicitly beats them."""
    values = archs.preset_settings(settings)
    if values.get("vocab_size") == GPT2_VOCAB_SIZE:  # padded, as train.py pads a GPT-2-BPE dataset's
        values["vocab_size"] = model_vocab_size({"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE})
    return values


def model_config(settings: dict):
    """The preset, with the settings above, and no dropout (neither side times it)."""
    config = archs.config_from_settings(settings, dropout=0.0)
    gpt2_style = (config.norm, config.position, config.mixer, config.block, config.layers, config.qk_norm,
                  config.softcap, config.tie_head) == (
        "layernorm", "learned", "attention", "sequential", (), False, 0.0, True) and config.kv_heads == config.n_head \
        and config.mlp in ("gelu", "swiglu")
    if compare and not gpt2_style:
        raise UserError(f"--compare times a GPT-2-style model in PyTorch; arch {arch!r} is not one")
    return config, batch_size or BATCH_SIZES.get(arch, 8)


def peak_rss_bytes() -> int:
    """This process's peak resident memory (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def time_jax(config, batch: int) -> dict:
    optimizer = make_optimizer(optax.constant_schedule(1e-3), 0.1, 0.9, 0.99, 1.0)
    state = init_state(config, optimizer, seed=0)
    model, opt_state = state["model"], state["opt_state"]
    check_remat(model, remat)
    dtype_used = compute_dtype(dtype)
    key = jax.random.key(0)
    # Batches come as train.py draws them: random windows of a memmapped token file.
    with tempfile.TemporaryDirectory() as tmp:
        write_tokens(Path(tmp) / "train.bin", np.random.default_rng(0).integers(0, config.vocab_size, 1_000_000),
                     config.vocab_size)
        write_meta(Path(tmp), {"vocab_size": config.vocab_size})
        token_file = open_split(Path(tmp), "train", config.block_size)

        # Compilation alone (ahead of time), then one untimed warm-up call.
        rows = (steps_per_call, 1, batch)  # steps, micro-batches, sequences
        example = jnp.zeros((*rows, config.block_size), jnp.int32)
        first_iter = np.int32(0)
        fast_path = True  # the CPU fast path, as train.py runs it by default
        start = time.perf_counter()
        compiled = compile_ahead(make_steps, model, opt_state, example, example, key, first_iter, optimizer, dtype_used,
                                 remat, fast_path, loss_chunk)
        compile_s = time.perf_counter() - start
        # What one call allocates besides its inputs and outputs (activations kept for the
        # backward pass, among others): exact, from the compiler, unlike a peak RSS.
        analysis = compiled.compiled.memory_analysis()  # eqx's Compiled wraps jax's
        times, host_times = [], []
        for i in range(steps // steps_per_call + 1):
            start = time.perf_counter()
            x, y = get_batch(token_file, rows, config.block_size, batch_rng(0, 0, i))
            x, y = jnp.asarray(x), jnp.asarray(y)
            host_s = time.perf_counter() - start
            model, opt_state, losses = make_steps(model, opt_state, x, y, key, first_iter, optimizer, dtype_used, remat,
                                                  fast_path, loss_chunk)
            losses.block_until_ready()
            if i > 0:
                times.append((time.perf_counter() - start) / steps_per_call)
                host_times.append(host_s / steps_per_call)
    step_s = statistics.median(times)
    peak, peak_source = (peak_flops, "--peak_flops") if peak_flops else device_peak_flops(dtype_used)
    flops = flops_per_token(config, model.get_num_params()) * batch * config.block_size / step_s
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {
        "side": "jax", "device": device.device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
        "dtype": jnp.dtype(dtype_used).name,
        # On a CPU the training step runs the CPU fast path's attention in blocks of queries.
        "attention": "blocked (CPU fast path)" if jax.default_backend() == "cpu"
        else attention_implementation(jax.default_backend(), dtype_used, config.head_size),
        "step_ms": 1e3 * step_s,
        "host_ms": 1e3 * statistics.median(host_times), "compile_s": compile_s,
        "tokens_per_s": batch * config.block_size / step_s,
        "tflops": flops / 1e12, "mfu": flops / peak, "peak": f"{peak / 1e12:.3f} TFLOP/s ({peak_source})",
        "memory_bytes": stats.get("peak_bytes_in_use", peak_rss_bytes()),
        "memory_kind": "device peak" if "peak_bytes_in_use" in stats else "process peak RSS",
        **({"scratch_bytes": analysis.temp_size_in_bytes} if analysis else {}),
    }


def time_torch(config, batch: int) -> dict:
    import torch

    from helpers.torch_reference import TorchGPT, adamw

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TorchGPT(config)
    autocast = dtype == "bfloat16"  # "auto" is float32 on this CPU-only side
    optimizer = adamw(model, 1e-3, 0.1, (0.9, 0.99))
    # Untimed first, as many steps as our side's warm-up call: PyTorch's first steps run markedly
    # slower than later ones (docs/performance.md), so both sides are timed warm.
    warmup = steps_per_call
    tokens = torch.randint(0, config.vocab_size, (warmup + steps, batch, config.block_size + 1))
    times = []
    for i in range(warmup + steps):
        x, y = tokens[i, :, :-1], tokens[i, :, 1:]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model.loss(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times[warmup:])
    return {
        "side": "torch", "device": f"torch {torch.__version__} cpu", "step_ms": 1e3 * step_s,
        "compile_s": 0.0, "tokens_per_s": batch * config.block_size / step_s,
        "memory_bytes": peak_rss_bytes(), "memory_kind": "process peak RSS",
    }


def time_sampling(config) -> None:
    """Greedy generation of new_tokens tokens from random weights, twice: with the KV cache
    and by nanoGPT's method (the whole window through the model for every token). Both
    follow the same cropping rule, so they do the same work per token but for the cache.
    Compilation is excluded from both: each runs once (or warms its shapes) before timing."""
    model = GPT(config, key=jax.random.key(0))
    prompt = [0]

    def cached():
        return generate(model, prompt, new_tokens, key=jax.random.key(0), temperature=0.0)[0]

    def naive():
        return generate_without_cache(model, prompt, new_tokens)

    cached()
    # A window of length L runs padded to a multiple of 64: compile each such length once.
    for length in range(64, min(len(prompt) + new_tokens, config.block_size) + 64, 64):
        generate_without_cache(model, [0] * min(length, config.block_size), 1)
    timings = {}
    for name, run in (("KV cache", cached), ("full recompute", naive)):
        start = time.perf_counter()
        tokens = run()
        timings[name] = time.perf_counter() - start
    print(
        f"n_layer={config.n_layer} n_head={config.n_head} n_embd={config.n_embd} "
        f"block_size={config.block_size} vocab_size={config.vocab_size}: {new_tokens} new tokens, greedy"
    )
    for name, seconds in timings.items():
        print(f"{name:>15}: {len(tokens) / seconds:9.1f} tokens/s ({seconds:.2f} s)")
    print(f"KV cache speed-up: {timings['full recompute'] / timings['KV cache']:.1f}x")


def run_child(args: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run bench.py with `args` in a child process and read back the JSON line it prints; a
    child that fails is a UserError carrying its last line."""
    try:
        result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False,
                                env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"it took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        # Its last line says why; a crash (a signal) may leave none.
        silence = f"it ended with exit code {result.returncode}, saying nothing"
        raise UserError((result.stderr.strip().splitlines() or [silence])[-1])
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_side(which: str, argv: list[str]) -> dict:
    """Time one side in a child process."""
    args = [a for a in argv if not a.startswith(("--compare", "--side", "--rounds"))]
    try:
        return run_child([*args, f"--side={which}"])
    except UserError as error:
        raise UserError(f"the {which} side failed: {error}") from None


ROW_TIMEOUT_S = 150  # a suite row that compiles or runs longer is cut off: one stuck row cannot use up the device


def cold_environment() -> dict:
    """This process's environment with JAX's persistent compilation cache off: compile times are cold."""
    return {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | {
        "JAX_ENABLE_COMPILATION_CACHE": "false"}


def run_suite(name: str, run=run_child) -> list[dict]:
    """Every row of SUITES[name], each in a fresh process, printed as it finishes; a row that
    fails (out of memory, say) keeps its reason and the rest go on."""
    if not nvidia_backend_expected():
        raise UserError(f"--suite={name} measures an NVIDIA GPU, and jax has none here (no jax[cuda12] or "
                        "jax[cuda13], or JAX_PLATFORMS names another platform): run it on a machine with one")
    rows = []
    print(SUITE_HEADER)
    for label, args in SUITES[name]:
        try:
            result = run([*args, "--side=jax"], cold_environment(), ROW_TIMEOUT_S)
        except UserError as error:
            result = {"error": str(error)}
        if result.get("backend") == "cpu":
            raise UserError(f"--suite={name} measures an NVIDIA GPU, and jax fell back to the CPU here: check that "
                            "jax sees the GPU (python -c 'import jax; print(jax.devices())')")
        rows.append({"row": label, "args": " ".join(args), **result})
        print(suite_line(rows[-1]), flush=True)
    return rows


SUITE_HEADER = f"{'row':<32} {'ms/step':>8} {'tokens/s':>10} {'MFU':>6} {'peak GiB':>8} {'compile s':>9} {'batch ms':>8}"


def suite_line(row: dict) -> str:
    """One row of the suite's table."""
    if "error" in row:
        return f"{row['row']:<32} failed: {row['error']}"
    return (f"{row['row']:<32} {row['step_ms']:8.1f} {row['tokens_per_s']:10,.0f} {100 * row['mfu']:5.1f}% "
            f"{row['memory_bytes'] / 2**30:8.2f} {row['compile_s']:9.1f} {row['host_ms']:8.2f}")


def write_suite(name: str, rows: list[dict], path: str) -> None:
    """The table's rows as JSON, with the card, jax and the peak MFU is measured against."""
    done = [row for row in rows if "error" not in row]
    about = {key: done[0][key] for key in ("device", "jax", "peak", "memory_kind")} if done else {}
    Path(path).write_text(json.dumps({"suite": name, **about, "rows": rows}, indent=1) + "\n")
    print(f"{about.get('device', 'no row ran')}, jax {about.get('jax', '?')}, MFU of {about.get('peak', '?')}; "
          f"peak memory: {about.get('memory_kind', '?')}; written to {path}")


def print_table(config, batch: int, rows: list[dict]) -> None:
    print(
        f"arch={arch} n_layer={config.n_layer} n_head={config.n_head} n_embd={config.n_embd} "
        f"block_size={config.block_size} vocab_size={config.vocab_size} batch_size={batch} "
        f"mlp={config.mlp} scan_layers={config.scan_layers} remat={remat} dtype={dtype}, {steps} steps "
        f"({steps_per_call} per compiled call on our side), medians"
    )
    for r in rows:
        mfu = f"{100 * r['mfu']:5.1f}% MFU of {r['peak']}" if "mfu" in r else ""
        # Drawing and transferring the batches (per step), which train.py does between calls.
        host = f"batch {r['host_ms']:.2f} ms ({r['host_ms'] / r['step_ms']:.1%})  " if "host_ms" in r else ""
        scratch = f"XLA scratch {r['scratch_bytes'] / 2**20:,.1f} MiB  " if "scratch_bytes" in r else ""
        attention = f", {r['dtype']}, attention: {r['attention']}" if "attention" in r else ""
        print(
            f"{r['side']:>6}: {r['step_ms']:8.1f} ms/step {r['tokens_per_s']:10,.0f} tokens/s "
            f"compile {r['compile_s']:5.1f} s  {host}{r['memory_kind']} {r['memory_bytes'] / 2**20:,.0f} MiB  {scratch}"
            f"{mfu}  [{r['device']}{attention}]"
        )
    # --compare's rows come in rounds of (jax, torch); a ratio is taken within a round only.
    ratios = [torch_row["step_ms"] / jax_row["step_ms"] for jax_row, torch_row in zip(rows[::2], rows[1::2])]
    if ratios:
        per_round = f" (median of {len(ratios)} rounds: {', '.join(f'{r:.2f}x' for r in ratios)})" if len(ratios) > 1 else ""
        print(f"jax / torch speed: {statistics.median(ratios):.2f}x{per_round}")


@report_user_errors
def main():
    argv = sys.argv[1:]
    settings = configure(globals(), argv, preset=arch_preset)
    check_settings()
    if gpu_flags:
        set_gpu_flags()
    config, batch = model_config(settings)
    with memory_is_the_users("lower batch_size, block_size or the model's size"):
        if suite:
            write_suite(suite, run_suite(suite), json_path)
        elif mode == "sample":
            time_sampling(config)
        elif compare:
            print_table(config, batch, [run_side(which, argv) for _ in range(rounds) for which in SIDES])
        elif "--side=" in " ".join(argv):
            print(json.dumps(time_jax(config, batch) if side == "jax" else time_torch(config, batch)))
        else:
            print_table(config, batch, [time_jax(config, batch)])


if __name__ == "__main__":
    main()
