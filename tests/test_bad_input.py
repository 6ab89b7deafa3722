"""Bad input to train.py and sample.py, one row per kind of mistake: each ends the script with one
line on stderr saying what is wrong and how to fix it, no traceback, and exit code 2. The rows
run in this process (conftest.run_main), since each fails before training would start; the
tests at the end launch real processes, as a user does."""

import errno
import json
import shutil

import numpy as np
import pytest

from conftest import TINY, assert_one_line, run_main, run_script
from helpers import checkpoint, run_log
from helpers.errors import UserError
from mistakes import Mistake

MISTAKES = [
    # Settings: each checked against its declaration (its line in train.py, or GPTConfig's field).
    Mistake("train.py", "unknown setting", ("--lerning_rate=1",),
            "unknown config key 'lerning_rate'; did you mean 'learning_rate'"),
    Mistake("train.py", "a value of the wrong type", ("--batch_size=1.5",), "batch_size must be int"),
    Mistake("train.py", "a count below 1", ("--batch_size=0",), "batch_size must be >= 1, got 0"),
    Mistake("train.py", "calls of no steps", ("--steps_per_call=0",), "steps_per_call must be >= 1, got 0"),
    Mistake("train.py", "an unknown compute dtype", ("--dtype=float64",),
            "unknown dtype 'float64'; valid names: auto, float32, bfloat16"),
    Mistake("train.py", "an unknown remat policy", ("--remat=some",), "unknown remat 'some'; valid names: none, dots, full"),
    Mistake("train.py", "a negative learning rate", ("--muon_learning_rate=-1",), "muon_learning_rate must be > 0, got -1"),
    Mistake("train.py", "beta1 of 1 or more", ("--beta1=1.5",), "beta1 must be < 1, got 1.5"),
    Mistake("train.py", "negative weight decay", ("--weight_decay=-1",), "weight_decay must be >= 0, got -1"),
    Mistake("train.py", "a negative clipping norm", ("--grad_clip=-1",), "grad_clip must be >= 0, got -1"),
    Mistake("train.py", "a negative target", ("--target_loss=-1",), "target_loss must be >= 0, got -1"),
    Mistake("train.py", "a negative peak FLOP/s", ("--peak_flops=-1",), "peak_flops must be >= 0, got -1"),
    Mistake("train.py", "a decay that ends at iteration 0", ("--lr_decay_iters=0",), "lr_decay_iters must be >= 1, got 0"),
    Mistake("train.py", "a negative attention window", ("--window=-4",), "window must be >= 0, got -4"),
    Mistake("train.py", "a negative rotary base", ("--position=rope", "--rope_theta=-1"), "rope_theta must be > 0, got -1"),
    Mistake("train.py", "n_embd not divisible by n_head", ("--n_embd=33",), "n_embd=33 is not divisible by n_head=2"),
    Mistake("train.py", "an unknown component", ("--mlp=relu",), "unknown mlp 'relu'; valid names: gelu, swiglu, relu2"),
    # Settings that contradict each other.
    Mistake("train.py", "more Polar Express iterations than it has", ("--optimizer=muon", "--muon_coefficients=polar_express",
            "--muon_ns_steps=6"), "muon_coefficients=polar_express has 5 iterations, and muon_ns_steps=6 asks for more"),
    Mistake("train.py", "min_lr above learning_rate", ("--min_lr=0.1",),
            "min_lr=0.1 is above learning_rate=0.003: the schedule decays from learning_rate down to min_lr"),
    Mistake("train.py", "a decay that ends before the warm-up does", ("--lr_decay_iters=2",),
            "lr_decay_iters=2 must be greater than warmup_iters=2: the decay follows the warm-up"),
    Mistake("train.py", "remat over unrolled layers", ("--remat=dots",),
            "remat=dots saves memory only over stacked, scanned layers"),
    Mistake("train.py", "several processes without a coordinator", ("--num_processes=2",),
            "a run of several processes needs --coordinator_address=HOST:PORT"),
    Mistake("train.py", "a process index out of range", ("--num_processes=2", "--process_id=2"),
            "process_id=2 must be below num_processes=2"),
    # Files and folders.
    Mistake("train.py", "out_dir that is a file", ("--out_dir=A_FILE",), "is a file: pass a directory to --out_dir"),
    Mistake("train.py", "out_dir that cannot be made", ("--out_dir=READ_ONLY/run",),
            "cannot create out_dir", "the parent folder is read-only"),
    Mistake("train.py", "resuming where only best.eqx is left", ("--init_from=resume",),
            "best.eqx is there: copy it to ckpt.eqx to go on training from it (sample.py samples it with "
            "--checkpoint=best.eqx)", "only best.eqx is left"),
    Mistake("train.py", "a compilation cache that is a file", ("--compile_cache=A_FILE",),
            "is a file: pass a directory to --compile_cache", "JAX_COMPILATION_CACHE_DIR is not set"),
    Mistake("train.py", "a log that cannot be written", ("--init_from=resume",),
            "log.jsonl (Permission denied): make it writable", "out_dir/log.jsonl is read-only"),
    Mistake("train.py", "missing dataset folder", ("--dataset=/nowhere/at/all",),
            "meta.json is missing: run the dataset's prepare.py"),
    Mistake("train.py", "missing .bin", (), "train.bin is missing: run python", "no train.bin"),
    Mistake("train.py", "val.bin shorter than block_size + 1", (), "holds 10 tokens, fewer than block_size + 1 = 33",
            "short val.bin"),
    Mistake("train.py", "token ids >= vocab_size", (), "but the vocabulary has 5 tokens", "ids beyond the vocabulary"),
    Mistake("train.py", "meta.json missing", (), "meta.json is missing", "no meta.json"),
    # Checkpoints: out_dir holds the finished run of `trained` below.
    Mistake("train.py", "a new run into a folder with checkpoints", (),
            "ckpt.eqx exists: continue that run with --init_from=resume, start over with --overwrite",
            "out_dir holds a run's checkpoints"),
    Mistake("train.py", "a resume with nothing left to train", ("--init_from=resume", "--max_iters=1"),
            "is at iteration 2 and max_iters=1: nothing to train", "out_dir holds a run's checkpoints"),
    Mistake("train.py", "a resume into another architecture", ("--init_from=resume", "--n_layer=3", "--n_embd=48"),
            "holds another architecture: n_embd=32 (asked: 48), n_layer=2 (asked: 3)", "out_dir holds a run's checkpoints"),
    Mistake("train.py", "a block_size larger than the model's", ("--init_from=resume", "--block_size=64"),
            "block_size=32 (asked: 64)", "out_dir holds a run's checkpoints"),
    Mistake("train.py", "a resume on data in another vocabulary", ("--init_from=resume",),
            "was trained with the tokenizer char (", "another vocabulary"),
    Mistake("train.py", "a truncated checkpoint", ("--init_from=resume",), "is truncated or corrupt", "truncate"),
    Mistake("train.py", "a checkpoint that is not ours", ("--init_from=resume",), "is not a nanoJAXGPT checkpoint",
            "garble"),
    Mistake("train.py", "ckpt.eqx that is a folder", ("--init_from=resume",),
            "is a directory, not a checkpoint file", "ckpt.eqx is a folder"),
    Mistake("train.py", "a header without the model", ("--init_from=resume",),
            "header lacks model_config: the file is damaged", "the header loses model_config"),
    # check.py takes train.py's settings, as they are declared there.
    Mistake("check.py", "a setting out of its range", ("--beta1=2",), "beta1 must be < 1, got 2.0"),
    Mistake("check.py", "an unknown optimizer", ("--optimizer=sgd",), "unknown optimizer 'sgd'; valid names: adamw, muon"),
    # Sampling from the same finished run.
    Mistake("sample.py", "an empty prompt file", ("--start=FILE:EMPTY",), "is empty: give some text"),
    Mistake("sample.py", "an over-long prompt", ("--start=" + "the " * 10,),
            "the prompt has 40 tokens but the model sees at most 32"),
    Mistake("sample.py", "characters outside the vocabulary", ("--start=ΩΩ",),
            "characters not in this dataset's vocabulary: 'Ω'"),
    Mistake("sample.py", "no checkpoint", ("--out_dir=/nowhere",), "no checkpoint at /nowhere/ckpt.eqx"),
    Mistake("sample.py", "a checkpoint given as out_dir", ("--out_dir=A_FILE",), "is a file, not a run's folder: pass --out_dir="),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, char_dataset):
    """A finished tiny run (ckpt.eqx and best.eqx, iteration 2) to resume, sample from and damage."""
    out = tmp_path_factory.mktemp("trained")
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    return out


def damaged(setup: str, tmp_path, char_dataset, trained, monkeypatch) -> tuple:
    """(dataset, out_dir) with `setup` done to a copy of the dataset or of the trained run."""
    data, out = char_dataset, tmp_path / "out"
    if setup in ("no train.bin", "short val.bin", "ids beyond the vocabulary", "no meta.json", "another vocabulary"):
        data = tmp_path / "data"
        shutil.copytree(char_dataset, data)
        meta = json.loads((data / "meta.json").read_text())
        if setup == "no train.bin":
            (data / "train.bin").unlink()
        elif setup == "short val.bin":
            np.zeros(10, np.uint16).tofile(data / "val.bin")
        elif setup == "ids beyond the vocabulary":
            (data / "meta.json").write_text(json.dumps(meta | {"vocab_size": 5, "chars": meta["chars"][:5]}))
        elif setup == "no meta.json":
            (data / "meta.json").unlink()
        else:
            (data / "meta.json").write_text(json.dumps(meta | {"vocab_size": meta["vocab_size"] + 1,
                                                               "chars": meta["chars"] + "\x01"}))
    if setup in ("out_dir holds a run's checkpoints", "another vocabulary", "truncate", "garble", "ckpt.eqx is a folder",
                 "the header loses model_config", "out_dir/log.jsonl is read-only", "only best.eqx is left"):
        shutil.copytree(trained, out)
    ckpt = out / "ckpt.eqx"
    if setup == "only best.eqx is left":
        ckpt.unlink()
    elif setup == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:-1000])
    elif setup == "garble":
        ckpt.write_bytes(b"\x00garbage" + ckpt.read_bytes()[8:])
    elif setup == "ckpt.eqx is a folder":
        ckpt.unlink()
        ckpt.mkdir()
    elif setup == "the header loses model_config":
        header, rest = ckpt.read_bytes().split(b"\n", 1)
        ckpt.write_bytes(json.dumps({k: v for k, v in json.loads(header).items() if k != "model_config"}).encode()
                         + b"\n" + rest)
    elif setup == "the parent folder is read-only":  # tests may run as root, whom permissions do not stop
        def read_only_parent(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr("pathlib.Path.mkdir", read_only_parent)
    elif setup == "JAX_COMPILATION_CACHE_DIR is not set":  # the tests' own cache (conftest.py) would win
        monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    elif setup == "out_dir/log.jsonl is read-only":
        def read_only(path, mode="r", *args, **kwargs):
            if str(path).endswith("log.jsonl") and mode != "r":
                raise PermissionError(errno.EACCES, "Permission denied")
            return open(path, mode, *args, **kwargs)

        monkeypatch.setattr(run_log, "open", read_only, raising=False)
    return data, out


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_mistakes(tmp_path, char_dataset, trained, monkeypatch, mistake):
    data, out = damaged(mistake.setup, tmp_path, char_dataset, trained, monkeypatch)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "empty.txt").write_text("")
    args = [arg.replace("FILE:EMPTY", f"FILE:{tmp_path / 'empty.txt'}").replace("A_FILE", str(tmp_path / "FILE"))
            .replace("READ_ONLY", str(tmp_path / "read-only")) for arg in mistake.args]
    if mistake.script == "train.py":
        before = {path.name: path.read_bytes() for path in out.glob("*.eqx") if path.is_file()}
        result = run_main("train.py", f"--dataset={data}", f"--out_dir={out}", *TINY, "--max_iters=3", *args)
        # Refused, the run changed no checkpoint.
        assert {path.name: path.read_bytes() for path in out.glob("*.eqx") if path.is_file()} == before
    elif mistake.script == "check.py":
        result = run_main("check.py", *args)
    else:
        result = run_main("sample.py", f"--out_dir={trained}", "--max_new_tokens=5", *args)
    assert_one_line(result, mistake.prints)


def test_overwrite_starts_a_new_run_over_an_old_one(tmp_path, char_dataset, trained):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    old_log = (out / "log.jsonl").read_text()
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=1", "--overwrite",
               "--eval_at_start=False")
    assert checkpoint.read_header(out / "ckpt.eqx")["iter_num"] == 1
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert old_log and [r["iter"] for r in records] == [1, 1]  # its own log: one step and one evaluation


# TINY without its shape: GPT-2 weights bring their own, and a differing one is refused.
RUN_FLAGS = [arg for arg in TINY if not arg.startswith(("--n_layer", "--n_head", "--n_embd"))]


def test_hf_directory_with_missing_keys(tmp_path, char_dataset):
    from safetensors.numpy import load_file, save_file
    from test_hf import random_hf_model

    vocab = json.loads((char_dataset / "meta.json").read_text())["vocab_size"]
    random_hf_model(dict(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=vocab)).save_pretrained(
        tmp_path / "hf", safe_serialization=True)
    tensors = load_file(tmp_path / "hf" / "model.safetensors")
    del tensors["transformer.h.0.attn.c_attn.weight"]
    save_file(tensors, tmp_path / "hf" / "model.safetensors", metadata={"format": "pt"})
    result = run_main("train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}", *RUN_FLAGS,
                      f"--init_from={tmp_path / 'hf'}")
    assert_one_line(result, "missing: h.0.attn.c_attn.weight")



def test_hf_model_with_another_vocabulary(tmp_path, char_dataset):
    from test_hf import random_hf_model

    vocab = json.loads((char_dataset / "meta.json").read_text())["vocab_size"]
    random_hf_model(dict(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=vocab + 1)).save_pretrained(
        tmp_path / "hf", safe_serialization=True)
    result = run_main("train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}", *RUN_FLAGS,
                      f"--init_from={tmp_path / 'hf'}")
    assert_one_line(result, f"the model has vocab_size {vocab + 1} but")


def test_full_disk_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    state = {"w": np.arange(4.0)}
    checkpoint.save(tmp_path / "ckpt.eqx", {"iter_num": 1}, state)
    before = (tmp_path / "ckpt.eqx").read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", no_space)
    with pytest.raises(UserError, match="No space left on device.*previous checkpoint there is intact"):
        checkpoint.save(tmp_path / "ckpt.eqx", {"iter_num": 2}, {"w": np.arange(4.0) + 1})
    assert (tmp_path / "ckpt.eqx").read_bytes() == before and not (tmp_path / "ckpt.eqx.tmp").exists()
    with pytest.raises(UserError, match="could not write"):
        checkpoint.save(tmp_path / "gone" / "ckpt.eqx", {"iter_num": 2}, state)  # a folder that is not there


def test_a_nan_loss_stops_training_without_saving_it(tmp_path, char_dataset):
    out = tmp_path / "out"
    result = run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=40",
                        "--eval_interval=2", "--always_save_checkpoint=True", "--learning_rate=1e30",
                        "--grad_clip=0.0", "--warmup_iters=0", "--decay_lr=False", check=False)
    assert_one_line(result, "the updates diverged; ")
    assert "is nan at iteration" in result.stderr or "is inf at iteration" in result.stderr
    assert "Lower learning_rate=1e+30" in result.stderr and "turn clipping on (--grad_clip=1.0)" in result.stderr
    if (out / "ckpt.eqx").exists():  # what it names is this run's, and finite
        from helpers.training import load_trained_model

        import jax

        saved = checkpoint.read_header(out / "ckpt.eqx")["iter_num"]
        assert f"this run's last checkpoint is {out / 'ckpt.eqx'} (iteration {saved})" in result.stderr
        model, _ = load_trained_model(out)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(model))
    else:
        assert "this run saved no checkpoint" in result.stderr
