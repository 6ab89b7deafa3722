"""Train a GPT.

    python train.py                      # a small model on the embedded corpus, minutes on a CPU
    python train.py config/train_shakespeare_char.py --max_iters=2000 --dropout=0.0

Settings are the globals below, overridden by config files and then by --key=value arguments
(`python train.py --help` lists them). The defaults are a small run that a laptop finishes in a
few minutes; the configs hold the big ones (config/train_gpt2.py: GPT-2 small on OpenWebText).
Checkpoints go to out_dir/ckpt.eqx; init_from=resume continues from there exactly as if
training had never stopped. Ctrl-C stops after the steps under way and saves a checkpoint (before
the first step, there is nothing to save: it stops at once).
"""
# ruff: noqa: E402

from helpers.interrupt import exit_on_ctrl_c

if __name__ == "__main__":
    # Until the first training step there is nothing to save: Ctrl-C ends the run at once.
    exit_on_ctrl_c("interrupted before the first training step: nothing to save, no checkpoint written or changed")

import math
import os
import time
from pathlib import Path

# What --target_loss's time counts from: the process's start, compilation and evaluations
# included. tune_cpu_runtime's restart hands it on in the environment, and it is taken back out
# at once, so that no process this one starts inherits a start time that is not its own.
STARTED = float(os.environ.pop("NANOJAXGPT_STARTED", time.time()))

from helpers.cpu_runtime import tune_cpu_runtime

if __name__ == "__main__":
    # Before jax is imported or allocates anything (E402 below).
    tune_cpu_runtime(restart_env={"NANOJAXGPT_STARTED": str(STARTED)})

import jax
import numpy as np

from configurator import configure
from helpers import archs, checkpoint, registries, sharding
from helpers.batches import Batches
from helpers.data import bytes_per_token, dataset_dir, read_meta
from helpers.errors import UserError, memory_is_the_users, report_user_errors
from helpers.flops import device_peak_flops, flops_per_token
from helpers.gpu_runtime import set_gpu_flags
from helpers.interrupt import StopRequest, restore_default_ctrl_c, stopped
from helpers.lock import lock_out_dir
from helpers.optim import (
    MUON_COEFFICIENTS,
    OPTIMIZERS,
    describe_groups,
    newton_schulz_coefficients,
    optimizer_from_settings,
    parameter_groups,
)
from helpers.registry import accepts
from helpers.run_log import RunLog, TimeSplit
from helpers.run_start import starting_state
from helpers.tokenizer import tokenizer_fields
from helpers.training import (
    DTYPE_CHOICES,
    REMAT_POLICIES,
    check_remat,
    compile_ahead,
    compute_dtype,
    eval_loss,
    make_steps,
)
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------------------------
# Each setting: its default, its help after the #, and (`name: accepts(...) = ...`, an annotation
# that is no type) the values it accepts, which configurator.py checks wherever a value comes from.
# I/O
out_dir = "out"  # where ckpt.eqx and log.jsonl are written
eval_interval: accepts(low=1) = 500  # evaluate every this many iterations (and at the last one)
log_interval: accepts(low=1) = 50  # print a log line every this many iterations
eval_iters: accepts(low=1) = 20  # batches per split in each evaluation
eval_train = True  # estimate the train loss at each evaluation too (it costs as much as the val loss)
eval_at_start = True  # evaluate before the first step (a run that only chases a target can skip it)
eval_only = False  # evaluate once, then exit
target_loss: accepts(low=0) = 0.0  # stop at the first evaluation with a val loss at or below this, and say when; 0: off
target_bpb: accepts(low=0) = 0.0  # the same, for val bits per byte (comparable across tokenizers); 0.0: off
always_save_checkpoint = True  # checkpoint at every eval, not only when val loss improves
overwrite = False  # a new run (not resume) may replace the checkpoints and log already in out_dir
init_from = "scratch"  # scratch: a new model; resume: out_dir/ckpt.eqx; gpt2, gpt2-medium, gpt2-large, gpt2-xl or an HF directory: finetune
# wandb logging (the API key comes from the environment, WANDB_API_KEY, never from here)
wandb_log = False  # log losses, learning rate, tokens/s and MFU to Weights & Biases (pip install wandb)
wandb_project = "nanojaxgpt"  # wandb project name
wandb_run_name = "gpt"  # wandb run name
# data
dataset = "python_docs_char"  # a folder under data/, or a path to one: train.bin, val.bin, meta.json
gradient_accumulation_steps: accepts(low=1) = 1  # micro-batches per optimizer step
steps_per_call: accepts(low=1) = 10  # optimizer steps per compiled call, looped on the device (cut short by an evaluation or the end)
batch_size: accepts(low=1) = 12  # sequences per micro-batch
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
scan_unroll = 1
cpu_fast_path = True  # on a CPU, train with helpers/cpu_fast_path.py's equal, faster pieces; False: model.py's own
remat: accepts(choices=REMAT_POLICIES) = "none"  # gradient checkpointing; dots: recompute all but matmuls; full: all
loss_chunk: accepts(low=0) = 33_554_432  # the loss runs the head over at most this many logits (batch x positions x vocabulary) at a time; 0: all at once
# optimizer
optimizer: accepts(choices=OPTIMIZERS) = "adamw"  # adamw: nanoGPT's; muon: Muon on the blocks' matrices, AdamW elsewhere
learning_rate: accepts(above=0) = 1e-3  # peak learning rate (with muon: of the AdamW side)
muon_learning_rate: accepts(above=0) = 0.02  # with muon: peak learning rate of the Muon side
muon_momentum: accepts(low=0, below=1) = 0.95  # with muon: Muon's momentum
muon_ns_steps: accepts(low=1) = 5  # with muon: Newton-Schulz iterations per update (fewer: cheaper, rougher)
muon_coefficients: accepts(choices=MUON_COEFFICIENTS) = "quintic"  # with muon: each iteration's polynomial (polar_express: at most 5)
max_iters: accepts(low=0) = 2500  # optimizer steps in total
weight_decay: accepts(low=0) = 1e-1  # weight decay, on weight matrices (and with adamw, embeddings) only
beta1: accepts(low=0, below=1) = 0.9  # AdamW beta1
beta2: accepts(low=0, below=1) = 0.99  # AdamW beta2
grad_clip: accepts(low=0) = 1.0  # clip gradients to this global norm; 0.0 turns clipping off
# learning-rate schedule
decay_lr = True  # warm up then cosine-decay the learning rate; False keeps it constant
warmup_iters: accepts(low=0) = 100  # iterations of linear warmup
lr_decay_iters: accepts(low=1) = 2500  # iteration at which the cosine reaches min_lr (about max_iters)
min_lr: accepts(low=0) = 1e-4  # final learning rate (about learning_rate / 10)
# devices
mesh = ""  # device mesh: "" puts every device on the data axis; e.g. data:8, fsdp:8, data:2,fsdp:4
coordinator_address = ""  # multi-host: host:port of process 0 (or env JAX_COORDINATOR_ADDRESS)
num_processes: accepts(low=1) = 1  # multi-host: processes in all (or env JAX_NUM_PROCESSES)
process_id: accepts(low=0) = 0  # multi-host: this process's index, 0 .. num_processes - 1 (or env JAX_PROCESS_ID)
skip_nonfinite = False  # skip updates whose gradients are NaN or infinite instead of stopping (a skipped update leaves the optimizer state, its learning-rate schedule too, as it was)
# system
dtype: accepts(choices=DTYPE_CHOICES) = "auto"  # compute dtype; auto: bfloat16 on a GPU or TPU, float32 on a CPU
seed = 1337  # seeds the model init, dropout and the order of batches
peak_flops: accepts(low=0) = 0.0  # device peak FLOP/s for MFU; 0.0 looks it up or measures it
compile_cache = "~/.cache/nanojaxgpt/jax"  # JAX's persistent compilation cache: a run reuses what earlier runs compiled; "": off
gpu_flags = False  # on an NVIDIA GPU, set the XLA flags JAX's GPU performance guide names (helpers/gpu_runtime.py)
# -----------------------------------------------------------------------------------------------

def check_settings(settings: dict) -> None:
    """What no single setting's declaration can say: settings that contradict each other (each
    setting's own range is on its line above, checked as it is set). A combination that makes
    the run meaningless is refused; one that is merely unusual gets a note."""
    if settings["decay_lr"]:
        if settings["min_lr"] > settings["learning_rate"]:
            raise UserError(f"min_lr={settings['min_lr']} is above learning_rate={settings['learning_rate']}: the "
                            "schedule decays from learning_rate down to min_lr, so lower min_lr")
        if settings["lr_decay_iters"] <= settings["warmup_iters"]:
            raise UserError(f"lr_decay_iters={settings['lr_decay_iters']} must be greater than warmup_iters="
                            f"{settings['warmup_iters']}: the decay follows the warm-up")
        if settings["warmup_iters"] > settings["max_iters"]:
            # Kept as asked, not shortened: a run extended later (resume with a larger max_iters)
            # must follow the schedule it started on.
            print(f"note: warmup_iters={settings['warmup_iters']} is longer than this run's max_iters="
                  f"{settings['max_iters']}: the learning rate never reaches learning_rate")
    if settings["optimizer"] == "muon":
        try:
            newton_schulz_coefficients(settings["muon_coefficients"], settings["muon_ns_steps"])
        except ValueError as error:
            raise UserError(str(error)) from None
    if settings["process_id"] >= settings["num_processes"]:
        raise UserError(f"process_id={settings['process_id']} must be below num_processes={settings['num_processes']}")
    if int(os.environ.get("JAX_NUM_PROCESSES", settings["num_processes"])) > 1 and not (
            settings["coordinator_address"] or os.environ.get("JAX_COORDINATOR_ADDRESS")):
        raise UserError("a run of several processes needs --coordinator_address=HOST:PORT (process 0's), the same "
                        "in every process; on one machine, one process uses every device: drop --num_processes")


def make_folder(setting: str, path: str) -> Path:
    """The folder the setting names (`~` expanded), made with its parents if missing; a file in
    its place or a folder this process cannot write is refused in one line."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{setting} {folder} is a file: pass a directory to --{setting}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {setting} {folder} ({error.strerror or error}): pass a writable --{setting}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{setting} {folder} is not writable: pass a writable --{setting}")
    return folder


def claim_out_dir(out: Path, main_process: bool) -> None:
    """A new run (init_from scratch or GPT-2 weights) that would replace the checkpoints of an
    earlier one is refused unless --overwrite says so: a forgotten --init_from=resume must not
    cost a trained model. Every process checks, so that all stop together; process 0 clears
    the folder for the new run, which starts its own log."""
    if init_from == "resume" or eval_only:
        return
    held = [path for path in (out / "ckpt.eqx", out / "best.eqx") if path.exists()]
    if held and not overwrite:
        raise UserError(f"{held[0]} exists: continue that run with --init_from=resume, start over with --overwrite "
                        f"(which deletes {' and '.join(path.name for path in held)}), or pass another --out_dir")
    if main_process:  # no file of the old run stays beside the new run's
        for path in (*held, out / "log.jsonl"):
            path.unlink(missing_ok=True)


def stop_non_finite(what: str, iter_num: int, steps_run: int, last_saved: tuple[Path, int] | None):
    """A NaN or infinity is never saved over a good checkpoint: stop, saying what can have caused
    it and which checkpoint of this run to go back to."""
    if steps_run == 0:
        raise UserError(f"{what} at iteration {iter_num}, before this run's first step: the model's weights or "
                        "settings make it, not the learning rate (a component or option of your own? a layer spec?)")
    rates = f"learning_rate={learning_rate}" + (f", muon_learning_rate={muon_learning_rate}" if optimizer == "muon" else "")
    clip = "turn clipping on (--grad_clip=1.0)" if grad_clip == 0 else f"clip harder (grad_clip={grad_clip})"
    last, again = ((f"this run's last checkpoint is {last_saved[0]} (iteration {last_saved[1]})", "resume")
                   if last_saved else ("this run saved no checkpoint", "train again"))
    raise UserError(f"{what} at iteration {iter_num}: the updates diverged; {last}. Lower {rates}, raise warmup_iters "
                    f"or {clip} and {again}, or pass --skip_nonfinite to skip such updates")


def use_compile_cache(path: Path) -> None:
    """Keep compiled programs in `path`, so that a run whose step an earlier run compiled loads it
    instead of compiling it again. JAX keys every entry by the program, the jax and jaxlib
    versions, the compiler's flags and the device, so a changed model or library compiles anew."""
    jax.config.update("jax_compilation_cache_dir", str(path))
    # JAX's default keeps only programs that took a second or more to compile; an evaluation or
    # the model's init takes less, and loading either is still faster than compiling it.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_compilation_cache_max_size", 2**30)  # the least recently used go beyond 1 GiB


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
    losses = {split: float(eval_loss(model, *batches.evaluation(split, iter_num, eval_iters), dtype_used, cpu_fast_path,
                                       loss_chunk))
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
@memory_is_the_users("lower batch_size (gradient_accumulation_steps keeps the tokens per step), block_size or "
                     "the model's size, or recompute layers with --remat=dots and --scan_layers=True")
def main():
    time_split = TimeSplit(STARTED)
    time_split.charge("start-up (Python and imports)")
    settings = configure(globals(), preset=archs.preset_settings, models=True, listing=registries.describe)
    check_settings(settings)
    if gpu_flags:
        set_gpu_flags()  # before anything starts jax's backend, which reads the flags once
    if compile_cache and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the environment's choice wins
        use_compile_cache(make_folder("compile_cache", compile_cache))
    start_processes(settings)
    device_mesh = sharding.make_mesh(mesh)
    # Only process 0 talks and writes; every process computes.
    main_process = jax.process_index() == 0
    out = make_folder("out_dir", out_dir)
    ckpt_path = out / "ckpt.eqx"
    lock = lock_out_dir(out) if main_process else None  # noqa: F841 (held until the process ends)
    claim_out_dir(out, main_process)
    log = RunLog(out, settings, main_process)

    data_dir = dataset_dir(dataset)
    meta = read_meta(data_dir)
    optimizer, schedule = optimizer_from_settings(settings)
    config, state, iter_num, best_val_loss = starting_state(settings, meta, optimizer, ckpt_path, log.say)
    if init_from == "resume" and iter_num >= max_iters and not eval_only:
        raise UserError(f"{ckpt_path} is at iteration {iter_num} and max_iters={max_iters}: nothing to train; raise "
                        "--max_iters to train on, or pass --eval_only to evaluate it")
    start_iter = iter_num
    last_saved = (ckpt_path, iter_num) if init_from == "resume" else None  # this run's latest good checkpoint
    state = sharding.place(state, config, device_mesh)
    model, opt_state = state["model"], state["opt_state"]
    check_remat(model, remat)
    dropout_key = jax.random.wrap_key_data(state["dropout_key"])
    dtype_used = compute_dtype(dtype)
    tokenizer = tokenizer_fields(meta, data_dir)  # what every checkpoint carries, to decode without the dataset
    batches = Batches(data_dir, meta, config, batch_size, int(state["data_seed"]), device_mesh)
    tokens_per_iter = gradient_accumulation_steps * batches.rows * config.block_size
    flops_per_iter, peak = describe_run(log, config, model, tokens_per_iter, dtype_used)
    time_split.charge("setup (data and model)")

    def finish() -> None:
        time_split.charge("the log and its picture")
        log.say(f"time: {time_split}")

    def save(best: bool):
        """ckpt.eqx is the latest state (what resume continues); best.eqx the best one."""
        nonlocal last_saved
        full_state = sharding.gather({**state, "model": model, "opt_state": opt_state})
        header = {"iter_num": iter_num, "best_val_loss": best_val_loss, "model_config": config.as_dict(),
                  "tokenizer": tokenizer, "settings": settings}
        if main_process:
            checkpoint.save(ckpt_path, header, full_state)
            if best:
                checkpoint.save(out / "best.eqx", header, full_state)
        last_saved = (ckpt_path, iter_num)

    def evaluate_and_save() -> bool:
        """Evaluates, logs and checkpoints; True when val loss reached target_loss, or val bits
        per byte target_bpb."""
        nonlocal best_val_loss
        if iter_num > start_iter:
            jax.block_until_ready(model)  # the steps under way count as training
            time_split.charge("training")
        losses, bits_per_byte = evaluate(model, batches, meta, iter_num, dtype_used)
        time_split.charge("evaluating")
        seconds = time.time() - STARTED  # before the saving and drawing that follow
        if not all(math.isfinite(v) for v in losses.values()):
            log.evaluation(iter_num, losses, bits_per_byte)
            stop_non_finite(f"the evaluated loss is {losses['val']}", iter_num, iter_num - start_iter, last_saved)
        improved = losses["val"] < best_val_loss
        best_val_loss = min(best_val_loss, losses["val"])
        if iter_num > 0 and not eval_only and (improved or always_save_checkpoint):  # a score changes no checkpoint
            save(best=improved)
            time_split.charge("saving")
        log.evaluation(iter_num, losses, bits_per_byte)  # after the save: the log and its picture cannot cost it
        if reached := target_reached(losses, bits_per_byte):
            log.target_reached(iter_num, seconds, *reached)
        time_split.charge("the log and its picture")
        return reached is not None

    compile_ahead(eval_loss, model, *batches.evaluation("val", iter_num, eval_iters), dtype_used, cpu_fast_path,
                  loss_chunk)
    time_split.charge("compiling the evaluation")
    if eval_only or (iter_num == 0 and eval_at_start):
        if evaluate_and_save() or eval_only:
            return finish()
    # From the first step on, Ctrl-C asks to stop after the steps under way, with a checkpoint
    # (helpers/interrupt.py). A multi-process run gets Python's default back: one process alone
    # cannot leave the others' collectives.
    stop = StopRequest() if jax.process_count() == 1 else restore_default_ctrl_c()
    def next_call(first: int) -> tuple[int, tuple]:
        """The steps of the call that starts at `first`, and their batches. A call never runs past
        the next evaluation or the end; short of one, the steps run a call each: every other
        count would compile a loop of its own."""
        before_pause = min(max_iters - first, eval_interval - first % eval_interval)
        count = steps_per_call if before_pause >= steps_per_call else 1
        return count, batches.train(first, count, gradient_accumulation_steps)

    if iter_num < max_iters:  # --max_iters=0 trains nothing, so compiles no step
        count, (x, y) = next_call(iter_num)
        compile_ahead(make_steps, model, opt_state, x, y, dropout_key, np.int32(iter_num), optimizer, dtype_used, remat,
                      cpu_fast_path, loss_chunk)
        time_split.charge("compiling the step")
    log.restart_clock(iter_num)
    while iter_num < max_iters:
        model, opt_state, losses = make_steps(
            model, opt_state, x, y, dropout_key, np.int32(iter_num), optimizer, dtype_used, remat, cpu_fast_path, loss_chunk)
        first, iter_num = iter_num, iter_num + count
        if iter_num < max_iters:
            # The call above runs on the device while the host draws the next call's batches
            # and sends them: the device never waits for data, even when logging waits for it.
            count, (x, y) = next_call(iter_num)

        logged = [i for i in range(first + 1, iter_num + 1) if i % log_interval == 0 or i == max_iters]
        if logged:
            losses = np.asarray(losses)  # waits for the call; iterations logged from one call share its pace
            seconds_per_iter = log.seconds_per_iter(iter_num)
            for i in logged:
                loss = float(losses[i - first - 1])
                if not math.isfinite(loss) and not skip_nonfinite:
                    stop_non_finite(f"the training loss is {loss}", i, i - start_iter, last_saved)
                log.iteration(i, loss, float(schedule(i - 1)), seconds_per_iter, tokens_per_iter,
                              flops_per_iter / seconds_per_iter / peak)
        if iter_num % eval_interval == 0 or iter_num == max_iters:
            if evaluate_and_save():
                return finish()
            log.restart_clock(iter_num)  # evaluation time is not training time
        if stop and stop.requested:
            save(best=False)
            stopped(f"interrupted at iteration {iter_num}: saved {ckpt_path}; continue with --init_from=resume")

    finish()
    if jax.process_count() > 1:  # every process says what it holds, so a run can check they all agree
        print(f"process {jax.process_index()}: parameter digest {sharding.parameter_digest(model)}")


if __name__ == "__main__":
    main()
