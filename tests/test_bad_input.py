"""Bad input, one test per kind of mistake (the README lists the common ones): each is one line on stderr saying what is
wrong and how to fix it, no traceback, and a non-zero exit."""

import errno
import json
import shutil

import numpy as np
import pytest

from conftest import TINY, run_script
from helpers import checkpoint
from helpers.errors import UserError


@pytest.fixture(scope="module")
def trained(tmp_path_factory, char_dataset):
    """A finished tiny run (ckpt.eqx and best.eqx) to resume, sample from and damage."""
    out = tmp_path_factory.mktemp("trained")
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    return out


def dataset_variant(tmp_path, char_dataset, change: str):
    data = tmp_path / "data"
    shutil.copytree(char_dataset, data)
    meta = json.loads((data / "meta.json").read_text())
    if change == "no train.bin":
        (data / "train.bin").unlink()
    elif change == "short val.bin":
        np.zeros(10, np.uint16).tofile(data / "val.bin")
    elif change == "ids beyond the vocabulary":
        (data / "meta.json").write_text(json.dumps(meta | {"vocab_size": 5, "chars": meta["chars"][:5]}))
    elif change == "no meta.json":
        (data / "meta.json").unlink()
    elif change == "another vocabulary":
        (data / "meta.json").write_text(json.dumps(meta | {"vocab_size": meta["vocab_size"] + 1,
                                                           "chars": meta["chars"] + "\x01"}))
    return data


TRAIN_ROWS = [
    ("unknown config key", [], ["--lerning_rate=1"], "unknown config key 'lerning_rate'; did you mean 'learning_rate'"),
    ("wrong value type", [], ["--batch_size=1.5"], "batch_size must be int"),
    ("missing dataset folder", [], ["--dataset=/nowhere/at/all"], "meta.json is missing: run the dataset's prepare.py"),
    ("missing .bin", ["no train.bin"], [], "train.bin is missing: run python"),
    ("val.bin shorter than block_size + 1", ["short val.bin"], [], "holds 10 tokens, fewer than block_size + 1 = 33"),
    ("token ids >= vocab_size", ["ids beyond the vocabulary"], [], "but the vocabulary has 5 tokens"),
    ("meta.json missing", ["no meta.json"], [], "meta.json is missing"),
    ("n_embd not divisible by n_head", [], ["--n_embd=33"], "n_embd=33 is not divisible by n_head=2"),
    ("batch_size <= 0", [], ["--batch_size=0"], "batch_size must be positive"),
    ("unknown component", [], ["--mlp=relu"], "unknown mlp 'relu'; valid names: gelu, swiglu, relu2"),
]


@pytest.mark.parametrize("row, data_change, args, message", TRAIN_ROWS, ids=[r[0] for r in TRAIN_ROWS])
def test_train_mistakes(tmp_path, char_dataset, row, data_change, args, message):
    data = dataset_variant(tmp_path, char_dataset, data_change[0]) if data_change else char_dataset
    result = run_script("train.py", f"--dataset={data}", f"--out_dir={tmp_path / 'out'}", *TINY,
                        "--max_iters=1", *args, check=False)
    assert_one_line(result, message)


def test_out_dir_that_is_a_file(tmp_path, char_dataset):
    (tmp_path / "file").write_text("x")
    result = run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'file'}", *TINY, check=False)
    assert_one_line(result, "is a file: pass a directory to --out_dir")


RESUME_ROWS = [
    ("checkpoint from another architecture", [], ["--n_layer=3", "--n_embd=48"],
     "holds another architecture: n_embd=32 (asked: 48), n_layer=2 (asked: 3)"),
    ("block_size larger than the model's", [], ["--block_size=64"], "block_size=32 (asked: 64)"),
    ("meta.json mismatched with the model", ["another vocabulary"], [],
     "was trained with the tokenizer char ("),
    ("truncated checkpoint", ["truncate"], [], "is truncated or corrupt"),
    ("corrupt checkpoint", ["garble"], [], "is not a nanoJAXGPT checkpoint"),
]


@pytest.mark.parametrize("row, change, args, message", RESUME_ROWS, ids=[r[0] for r in RESUME_ROWS])
def test_resume_mistakes(tmp_path, char_dataset, trained, row, change, args, message):
    out = tmp_path / "out"
    shutil.copytree(trained, out)
    data = char_dataset
    ckpt = out / "ckpt.eqx"
    if change == ["truncate"]:
        ckpt.write_bytes(ckpt.read_bytes()[:-1000])
    elif change == ["garble"]:
        ckpt.write_bytes(b"\x00garbage" + ckpt.read_bytes()[8:])
    elif change:
        data = dataset_variant(tmp_path, char_dataset, change[0])
    result = run_script("train.py", f"--dataset={data}", f"--out_dir={out}", "--init_from=resume",
                        "--max_iters=3", "--eval_iters=1", *args, check=False)
    assert_one_line(result, message)


SAMPLE_ROWS = [
    ("empty prompt", ["--start=FILE:EMPTY"], "is empty: give some text"),
    ("over-long prompt", ["--start=" + "the " * 10], "the prompt has 40 tokens but the model sees at most 32"),
    ("characters outside the vocabulary", ["--start=ΩΩ"], "characters not in this dataset's vocabulary: 'Ω'"),
    ("no checkpoint", ["--out_dir=/nowhere"], "no checkpoint at /nowhere/ckpt.eqx"),
]


@pytest.mark.parametrize("row, args, message", SAMPLE_ROWS, ids=[r[0] for r in SAMPLE_ROWS])
def test_sample_mistakes(tmp_path, trained, row, args, message):
    (tmp_path / "empty.txt").write_text("")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")) for a in args]
    result = run_script("sample.py", f"--out_dir={trained}", "--max_new_tokens=5", *args, check=False)
    assert_one_line(result, message)


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
    result = run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}", *RUN_FLAGS,
                        f"--init_from={tmp_path / 'hf'}", check=False)
    assert_one_line(result, "missing: h.0.attn.c_attn.weight")


def test_hf_model_with_another_vocabulary(tmp_path, char_dataset):
    from test_hf import random_hf_model

    vocab = json.loads((char_dataset / "meta.json").read_text())["vocab_size"]
    random_hf_model(dict(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=vocab + 1)).save_pretrained(
        tmp_path / "hf", safe_serialization=True)
    result = run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'out'}", *RUN_FLAGS,
                        f"--init_from={tmp_path / 'hf'}", check=False)
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
    assert_one_line(result, "at iteration")
    assert "is nan" in result.stderr or "is inf" in result.stderr
    assert "the last good checkpoint is" in result.stderr or "no checkpoint was written" in result.stderr
    if (out / "ckpt.eqx").exists():
        from helpers.training import load_trained_model

        import jax

        model, _ = load_trained_model(out)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(model))


def assert_one_line(result, message: str):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr, result.stderr
