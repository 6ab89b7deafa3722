"""Train a GPT.

    python train.py                      # a small model on the embedded corpus, minutes on a CPU
    python train.py config/train_shakespeare_char.py --max_iters=2000 --dropout=0.0

Settings are the globals below, overridden by config files and then by --key=value arguments
(`python train.py --help` lists them). The defaults are a small run that a laptop finishes in a
few minutes; the configs hold the big ones (config/train_gpt2.py: GPT-2 small on OpenWebText).
Checkpoints go to out_dir/ckpt.eqx; init_from=resume continues from there exactly as if
training had never stopped. Ctrl-C stops after the steps under way and saves a checkpoint.
"""
# ruff: noqa: E402

import math
import os
import time
from pathlib import Path

# What --target_loss's time counts from: the process's start, compilation and evaluations
# included. Kept in the environment, which survives tune_cpu_runtime's restart of the process.
STARTED = float(os.environ.setdefault("NANOJAXGPT_STARTED", str(time.time())))

from helpers.cpu_runtime import tune_cpu_runtime

if __name__ == "__main__":
    tune_cpu_runtime()  # before jax is imported or allocates anything (E402 below)

import jax
import numpy as np

from configurator import configure
from helpers import archs, checkpoint, registries, sharding
from helpers.batches import Batches
from helpers.data import bytes_per_token, dataset_dir, read_meta
from helpers.errors import UserError, report_user_errors
from helpers.flops import device_peak_flops, flops_per_token
from helpers.interrupt import StopRequest, stopped
from helpers.lock import lock_out_dir
from helpers.optim import OPTIMIZERS, describe_groups, optimizer_from_settings, parameter_groups
from helpers.run_log import RunLog
from helpers.run_start import starting_state
from helpers.tokenizer import tokenizer_fields
from helpers.training import DTYPE_CHOICES, REMAT_POLICIES, compute_dtype, eval_loss, make_steps
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------------------------
# I/O
out_dir = "out"  # where ckpt.eqx and log.jsonl are written
eval_interval = 500  # evaluate every this many iterations (and at the last one)
log_interval = 50  # print a log line every this many iterations
eval_iters = 20  # batches per split in each evaluation
eval_train = True  # estimate the train loss at each evaluation too (it costs as much as the val loss)
eval_at_start = True  # evaluate before the first step (a run that only chases a target can skip it)
eval_only = False  # evaluate once, then exit
target_loss = 0.0  # stop at the first evaluation whose val loss is at or below this, and say when; 0.0: off
target_bpb = 0.0  # the same, for val bits per byte (comparable across tokenizers); 0.0: off
always_save_checkpoint = True  # checkpoint at every eval, not only when val loss improves
init_from = "scratch"  # scratch: a new model; resume: out_dir/ckpt.eqx; gpt2, gpt2-medium, gpt2-large, gpt2-xl or an HF directory: finetune
# wandb logging (the API key comes from the environment, WANDB_API_KEY, never from here)
wandb_log = False  # log losses, learning rate, tokens/s and MFU to Weights & Biases (pip install wandb)
wandb_project = "nanojaxgpt"  # wandb project name
wandb_run_name = "gpt"  # wandb run name
# data
dataset = "python_docs_char"  # a folder under data/, or a path to one: train.bin, val.bin, meta.json
gradient_accumulation_steps = 1  # micro-batches per optimizer step
steps_per_call = 10  # optimizer steps per compiled call, looped on the device (an evaluation or the end cuts a call short)
batch_size = 12  # sequences per micro-batch
block_size = 64  # tokens per sequence
# model: the fields of model.GPTConfig, whose declarations say what each means and accepts
# (--help prints them); vocab_size comes from the dataset. Options that components declare
# (--list shows them) are settings too.
arch = ""  # a preset from helpers/archs.py, applied before --key=value; --arch=help lists them
model = "gpt"
n_layer = 4
n_head = 4
n_kv_head = 0
n_embd = 128
dropout = 0.0
bias = False
mixer = "attention"
mlp = "swiglu"
norm = "layernorm"
position = "learned"
block = "sequential"
window = 0
multiple_of = 1
rope_theta = 10000.0
qk_norm = False
softcap = 0.0
tie_head = True
zero_init_residual = False
layers = ()
scan_layers = False  # False unrolls the layers: faster on a CPU for shallow models
remat = "none"  # gradient checkpointing: none, dots (recompute all but matmuls) or full (recompute each layer)
# optimizer
optimizer = "adamw"  # adamw (nanoGPT's), or muon: Muon on the blocks' matrices, AdamW on the rest
learning_rate = 1e-3  # peak learning rate (with muon: of the AdamW side)
muon_learning_rate = 0.02  # with muon: peak learning rate of the Muon side
muon_momentum = 0.95  # with muon: Muon's momentum
muon_ns_steps = 5  # with muon: Newton-Schulz iterations that orthogonalise each update (fewer: cheaper, rougher)
max_iters = 2500  # optimizer steps in total
weight_decay = 1e-1  # weight decay, on weight matrices (and with adamw, embeddings) only
beta1 = 0.9  # AdamW beta1
beta2 = 0.99  # AdamW beta2
grad_clip = 1.0  # clip gradients to this global norm; 0.0 turns clipping off
# learning-rate schedule
decay_lr = True  # warm up then cosine-decay the learning rate; False keeps it constant
warmup_iters = 100  # iterations of linear warmup
lr_decay_iters = 2500  # iteration at which the cosine reaches min_lr (about max_iters)
min_lr = 1e-4  # final learning rate (about learning_rate / 10)
# devices
mesh = ""  # device mesh: "" puts every device on the data axis; e.g. data:8, fsdp:8, data:2,fsdp:4
coordinator_address = ""  # multi-host: host:port of process 0 (or env JAX_COORDINATOR_ADDRESS)
num_processes = 1  # multi-host: processes in all (or env JAX_NUM_PROCESSES)
process_id = 0  # multi-host: this process's index, 0 .. num_processes - 1 (or env JAX_PROCESS_ID)
skip_nonfinite = False  # skip updates whose gradients are NaN or infinite instead of stopping
# system
dtype = "auto"  # compute dtype: auto (bfloat16 on a GPU or TPU, float32 on a CPU), float32, bfloat16
seed = 1337  # seeds the model init, dropout and the order of batches
peak_flops = 0.0  # device peak FLOP/s for MFU; 0.0 looks it up or measures it
# -----------------------------------------------------------------------------------------------

def check_settings(settings: dict) -> None:
    """Mistakes that would otherwise surface as a shape error deep inside JAX."""
    for key in ("batch_size", "block_size", "gradient_accumulation_steps", "steps_per_call", "eval_iters",
                "eval_interval", "log_interval", "muon_ns_steps"):
        if settings[key] <= 0:
            raise UserError(f"{key} must be positive, got {settings[key]}")
    if settings["max_iters"] < 0:
        raise UserError(f"max_iters must be >= 0, got {settings['max_iters']}")
    if settings["learning_rate"] <= 0:
        raise UserError(f"learning_rate must be positive, got {settings['learning_rate']}")
    if settings["optimizer"] not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {settings['optimizer']!r}")
    if settings["dtype"] not in DTYPE_CHOICES:
        raise UserError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {settings['dtype']!r}")
    if settings["remat"] not in REMAT_POLICIES:
        raise UserError(f"remat must be one of {', '.join(REMAT_POLICIES)}, got {settings['remat']!r}")


def make_out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"out_dir {out} is a file: pass a directory to --out_dir")
    out.mkdir(parents=True, exist_ok=True)
    return out


def stop_non_finite(what: str, iter_num: int, ckpt_path: Path):
    """A NaN or infinity is never saved over a good checkpoint: stop and say where we are."""
    last = (f"the last good checkpoint is {ckpt_path} (iteration {checkpoint.read_header(ckpt_path)['iter_num']})"
            if ckpt_path.exists() else "no checkpoint was written")
    raise UserError(f"{what} at iteration {iter_num}; {last}. Lower learning_rate, raise warmup_iters or "
                    "clip harder and resume, or pass --skip_nonfinite to skip such updates")


def start_processes(settings: dict) -> None:
    """Join the other processes of a multi-host run (before anything touches a device)."""
    count = int(os.environ.get("JAX_NUM_PROCESSES", settings["num_processes"]))
    if count == 1:
        return
    # Collectives between CPU processes go through gloo; GPUs and TPUs bring their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=os.environ.get("JAX_COORDINATOR_ADDRESS", settings["coordinator_address"]),
        num_processes=count,
        process_id=int(os.environ.get("JAX_PROCESS_ID", settings["process_id"])),
    )


def describe_run(log: RunLog, config: GPTConfig, model: GPT, tokens_per_iter: int, dtype_used) -> tuple[float, float]:
    """Prints the model and the run's size; returns the FLOPs of one iteration and the peak
    FLOP/s that MFU is measured against."""
    n_params = model.get_num_params()
    peak, peak_source = (peak_flops, "--peak_flops") if peak_flops else device_peak_flops(dtype_used)
    peak *= jax.device_count()
    log.say("model:\n" + "\n".join(f"  {name:<12} {value!r}" for name, value in config.as_dict().items()))
    log.say(f"optimizer groups: {describe_groups(parameter_groups(model, optimizer))}")
    log.say(f"computing in {jax.numpy.dtype(dtype_used).name} on {jax.device_count()} {jax.devices()[0].device_kind} "
            f"device(s); {n_params / 1e6:.2f}M parameters (non-embedding), {tokens_per_iter:,} tokens per iteration; "
            f"MFU against {peak / 1e9:,.0f} GFLOP/s ({peak_source})")
    return flops_per_token(config, n_params) * tokens_per_iter, peak


def evaluate(model: GPT, batches: Batches, meta: dict, iter_num: int, dtype_used) -> tuple[dict, dict]:
    """The mean loss of each split evaluated over eval_iters batches, and its bits per byte
    where the dataset counts its bytes."""
    losses = {split: float(eval_loss(model, *batches.evaluation(split, iter_num, eval_iters), dtype_used))
              for split in (("train", "val") if eval_train else ("val",))}
    # Nats per token over ln 2 are bits per token; over the bytes a token stands for, bits per byte.
    bits_per_byte = {split: loss / math.log(2) / per_token
                     for split, loss in losses.items() if (per_token := bytes_per_token(meta, split))}
    return losses, bits_per_byte


def target_reached(losses: dict, bits_per_byte: dict) -> tuple[str, float, float] | None:
    """(measure, value, target) when val loss reached target_loss or val bpb target_bpb."""
    if target_loss > 0 and losses["val"] <= target_loss:
        return "loss", losses["val"], target_loss
    if target_bpb > 0 and bits_per_byte.get("val", math.inf) <= target_bpb:
        return "bpb", bits_per_byte["val"], target_bpb
    return None


@report_user_errors
def main():
    settings = configure(globals(), preset=archs.preset_settings, models=True, listing=registries.describe)
    check_settings(settings)
    start_processes(settings)
    device_mesh = sharding.make_mesh(mesh)
    # Only process 0 talks and writes; every process computes.
    main_process = jax.process_index() == 0
    # Ctrl-C asks to stop after the steps under way (helpers/interrupt.py). A multi-process run
    # keeps Python's default: one process alone cannot leave the others' collectives.
    stop = StopRequest() if jax.process_count() == 1 else None
    out = make_out_dir(out_dir)
    ckpt_path = out / "ckpt.eqx"
    lock = lock_out_dir(out) if main_process else None  # noqa: F841 (held until the process ends)
    log = RunLog(out, settings, main_process)

    data_dir = dataset_dir(dataset)
    meta = read_meta(data_dir)
    optimizer, schedule = optimizer_from_settings(settings)
    config, state, iter_num, best_val_loss = starting_state(settings, meta, optimizer, ckpt_path, log.say)
    state = sharding.place(state, config, device_mesh)
    model, opt_state = state["model"], state["opt_state"]
    dropout_key = jax.random.wrap_key_data(state["dropout_key"])
    dtype_used = compute_dtype(dtype)
    tokenizer = tokenizer_fields(meta, data_dir)  # what every checkpoint carries, to decode without the dataset
    batches = Batches(data_dir, meta, config, batch_size, int(state["data_seed"]), device_mesh)
    tokens_per_iter = gradient_accumulation_steps * batches.rows * config.block_size
    flops_per_iter, peak = describe_run(log, config, model, tokens_per_iter, dtype_used)

    def save(best: bool):
        """ckpt.eqx is the latest state (what resume continues); best.eqx the best one."""
        full_state = sharding.gather({**state, "model": model, "opt_state": opt_state})
        header = {"iter_num": iter_num, "best_val_loss": best_val_loss, "model_config": config.as_dict(),
                  "tokenizer": tokenizer, "settings": settings}
        if main_process:
            checkpoint.save(ckpt_path, header, full_state)
            if best:
                checkpoint.save(out / "best.eqx", header, full_state)

    def evaluate_and_save() -> bool:
        """Evaluates, logs and checkpoints; True when val loss reached target_loss, or val bits
        per byte target_bpb."""
        nonlocal best_val_loss
        losses, bits_per_byte = evaluate(model, batches, meta, iter_num, dtype_used)
        seconds = time.time() - STARTED  # before the drawing and saving that follow
        log.evaluation(iter_num, losses, bits_per_byte)
        if not all(math.isfinite(v) for v in losses.values()):
            stop_non_finite(f"the evaluated loss is {losses['val']}", iter_num, ckpt_path)
        improved = losses["val"] < best_val_loss
        best_val_loss = min(best_val_loss, losses["val"])
        if iter_num > 0 and not eval_only and (improved or always_save_checkpoint):  # a score changes no checkpoint
            save(best=improved)
        if reached := target_reached(losses, bits_per_byte):
            log.target_reached(iter_num, seconds, *reached)
        return reached is not None

    if eval_only or (iter_num == 0 and eval_at_start):
        if evaluate_and_save() or eval_only:
            return
    log.restart_clock(iter_num)
    while iter_num < max_iters:
        # A call never runs past the next evaluation or the end. Short of one, the steps run a
        # call each: every other count would compile a loop of its own.
        before_pause = min(max_iters - iter_num, eval_interval - iter_num % eval_interval)
        count = steps_per_call if before_pause >= steps_per_call else 1
        x, y = batches.train(iter_num, count, gradient_accumulation_steps)
        model, opt_state, losses = make_steps(
            model, opt_state, x, y, dropout_key, np.int32(iter_num), optimizer, dtype_used, remat)
        first, iter_num = iter_num, iter_num + count

        logged = [i for i in range(first + 1, iter_num + 1) if i % log_interval == 0 or i == max_iters]
        if logged:
            losses = np.asarray(losses)  # waits for the call; iterations logged from one call share its pace
            seconds_per_iter = log.seconds_per_iter(iter_num)
            for i in logged:
                loss = float(losses[i - first - 1])
                if not math.isfinite(loss) and not skip_nonfinite:
                    stop_non_finite(f"the training loss is {loss}", i, ckpt_path)
                log.iteration(i, loss, float(schedule(i - 1)), seconds_per_iter, tokens_per_iter,
                              flops_per_iter / seconds_per_iter / peak)
        if iter_num % eval_interval == 0 or iter_num == max_iters:
            if evaluate_and_save():
                return
            log.restart_clock(iter_num)  # evaluation time is not training time
        if stop and stop.requested:
            save(best=False)
            stopped(f"interrupted at iteration {iter_num}: saved {ckpt_path}; continue with --init_from=resume")

    if jax.process_count() > 1:  # every process says what it holds, so a run can check they all agree
        print(f"process {jax.process_index()}: parameter digest {sharding.parameter_digest(model)}")


if __name__ == "__main__":
    main()
