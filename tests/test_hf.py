"""Hugging Face GPT-2 import and export, against transformers itself (test-only dependency)."""

import dataclasses
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import TINY, run_script
from helpers import hf
from helpers.generation import generate
from model import GPT, GPTConfig

SHAPES = [
    dict(n_layer=2, n_head=4, n_embd=32, n_positions=24, vocab_size=61),
    dict(n_layer=3, n_head=3, n_embd=48, n_positions=32, vocab_size=50),  # head size 16, 3 heads
]


def random_hf_model(shape: dict, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 with every parameter random (biases and norm gains too), so that a dropped or
    misplaced tensor shows up in the logits."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**shape)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


def hf_logits(model: GPT2LMHeadModel, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(tokens)).logits.numpy()


def our_logits(model: GPT, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(jax.vmap(model)(jnp.asarray(tokens, jnp.int32)))


def hf_greedy(model: GPT2LMHeadModel, prompt: list[int], n: int) -> list[int]:
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens])).logits[0, -1].argmax()))
    return tokens[len(prompt):]


@pytest.mark.parametrize("shape", SHAPES)
def test_import_matches_transformers(tmp_path, shape):
    theirs = random_hf_model(shape)
    theirs.save_pretrained(tmp_path, safe_serialization=True)
    ours = hf.load_gpt2(tmp_path)
    tokens = np.random.default_rng(0).integers(0, shape["vocab_size"], (2, shape["n_positions"]))
    assert np.abs(our_logits(ours, tokens) - hf_logits(theirs, tokens)).max() <= 1e-4
    prompt = [int(t) for t in tokens[0, :3]]  # 3 + 20 tokens fit both shapes' n_positions
    assert generate(ours, prompt, 20, key=jax.random.key(0), temperature=0.0)[0] == hf_greedy(theirs, prompt, 20)


def test_a_wrong_transpose_fails_the_parity_check(tmp_path, monkeypatch):
    # attn.c_proj is square, so only the numbers can tell whether it was transposed.
    theirs = random_hf_model(SHAPES[0])
    theirs.save_pretrained(tmp_path, safe_serialization=True)
    monkeypatch.setattr(hf, "CONV1D_WEIGHTS", hf.CONV1D_WEIGHTS - {"attn.c_proj.weight"})
    tokens = np.random.default_rng(0).integers(0, 61, (2, 24))
    assert np.abs(our_logits(hf.load_gpt2(tmp_path), tokens) - hf_logits(theirs, tokens)).max() > 1e-2


def test_sharded_checkpoint_with_buffers_and_no_prefix(tmp_path):
    theirs = random_hf_model(SHAPES[0])
    theirs.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    # The same weights as an old-style single file: no "transformer." prefix, mask buffers kept.
    tensors = {k.removeprefix("transformer."): v.numpy() for k, v in theirs.state_dict().items()}
    tensors["h.0.attn.bias"] = np.tril(np.ones((1, 1, 24, 24), np.float32))
    tensors["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    (tmp_path / "flat").mkdir()
    save_file(tensors, tmp_path / "flat" / "model.safetensors", metadata={"format": "pt"})
    theirs.config.to_json_file(tmp_path / "flat" / "config.json")
    a, b = hf.load_gpt2(tmp_path / "sharded"), hf.load_gpt2(tmp_path / "flat")
    tokens = np.random.default_rng(1).integers(0, 61, (1, 24))
    np.testing.assert_array_equal(our_logits(a, tokens), our_logits(b, tokens))


@pytest.mark.parametrize("bias", [True, False])
def test_export_loads_in_transformers_and_round_trips(tmp_path, bias):
    config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=3, n_embd=24, mlp="gelu", bias=bias)
    ours = GPT(config, key=jax.random.key(3))
    hf.save_gpt2(ours, tmp_path)
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    tokens = np.random.default_rng(0).integers(0, 40, (2, 16))
    assert np.abs(our_logits(ours, tokens) - hf_logits(theirs, tokens)).max() <= 1e-4
    again = hf.load_gpt2(tmp_path)
    if bias:  # import(export(x)) is x, bit for bit
        for name in hf.TOP_PARAMS + tuple(f"h.{p}" for p in hf.BLOCK_PARAMS):
            np.testing.assert_array_equal(hf.get_path(again, name), hf.get_path(ours, name))


def test_block_size_crop_and_dropout_override(tmp_path):
    random_hf_model(SHAPES[0]).save_pretrained(tmp_path, safe_serialization=True)
    full, cropped = hf.load_gpt2(tmp_path), hf.load_gpt2(tmp_path, block_size=8, dropout=0.1)
    assert cropped.config.block_size == 8 and cropped.config.dropout == 0.1
    tokens = np.random.default_rng(0).integers(0, 61, (1, 8))
    np.testing.assert_allclose(our_logits(eqx.nn.inference_mode(cropped), tokens), our_logits(full, tokens), atol=1e-6)


def test_every_bad_key_is_reported_at_once(tmp_path):
    random_hf_model(SHAPES[0]).save_pretrained(tmp_path, safe_serialization=True)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    tensors["transformer.h.0.extra"] = np.zeros(3, np.float32)
    tensors["transformer.ln_f.weight"] = np.zeros(7, np.float32)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(hf.HFError) as error:
        hf.load_gpt2(tmp_path)
    message = str(error.value)
    assert "missing: h.1.mlp.c_fc.bias" in message and "unexpected: h.0.extra" in message
    assert "wrong shape: ln_f.weight (7,) (expected (32,))" in message


@pytest.mark.parametrize("change, message", [
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({"activation_function": "relu"}, "activation_function 'relu'"),
    ({"n_inner": 100}, "n_inner=100"),
])
def test_unsupported_config_is_refused(tmp_path, change, message):
    random_hf_model(SHAPES[0]).save_pretrained(tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(hf.HFError, match=message):
        hf.load_gpt2(tmp_path)


def test_pickle_checkpoints_are_refused_and_names_resolve_offline(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text("{}")
    (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(hf.HFError, match="never loaded here"):
        hf.read_tensors(tmp_path / "bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(hf.HFError, match="nothing is downloaded silently"):
        hf.resolve("gpt2-medium")
    with pytest.raises(hf.HFError, match="neither a directory nor one of"):
        hf.resolve("gpt3")
    snapshot = tmp_path / "hub" / "models--gpt2-medium" / "snapshots" / "abc123"
    random_hf_model(SHAPES[0]).save_pretrained(snapshot, safe_serialization=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    assert hf.resolve("gpt2-medium") == snapshot


def test_finetune_from_an_hf_directory_and_resume(tmp_path, char_dataset):
    meta = json.loads((char_dataset / "meta.json").read_text())
    hf_dir = tmp_path / "hf"
    shape = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=meta["vocab_size"])
    random_hf_model(shape).save_pretrained(hf_dir, safe_serialization=True)
    args = ["train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'run'}", *TINY, "--eval_interval=2"]
    first = run_script(*args, f"--init_from={hf_dir}", "--max_iters=2", "--dropout=0.1")
    assert "from " + str(hf_dir) in first.stdout
    header = json.loads((tmp_path / "run" / "ckpt.eqx").open("rb").readline())
    assert header["model_config"]["block_size"] == 32 and header["model_config"]["dropout"] == 0.1
    resumed = run_script(*args, "--init_from=resume", "--max_iters=4")
    assert "resuming from" in resumed.stdout and "step 4:" in resumed.stdout


def test_export_refuses_what_gpt2_cannot_express(tmp_path):
    from model import MODELS

    @MODELS.register("test-hf-subclass")
    class Subclass(GPT):
        pass

    config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=24, mlp="gelu")
    subclass = Subclass(GPTConfig.from_dict(config.as_dict() | {"model": "test-hf-subclass"}), key=jax.random.key(0))
    with pytest.raises(hf.HFError, match="GPT-2 cannot express model 'test-hf-subclass'"):
        hf.save_gpt2(subclass, tmp_path / "a")
    with pytest.raises(hf.HFError, match=r"cannot express this model \(mlp='swiglu'\)"):
        hf.save_gpt2(GPT(GPTConfig.from_dict(config.as_dict() | {"mlp": "swiglu"}), key=jax.random.key(0)), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_layers_listed_alike_are_gpt2_and_export(tmp_path):
    config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=24, mlp="gelu",
                       layers=("attention", "mixer=attention"))
    ours = GPT(config, key=jax.random.key(0))
    hf.save_gpt2(ours, tmp_path)
    tokens = np.random.default_rng(0).integers(0, 40, (1, 16))
    assert np.abs(our_logits(ours, tokens) - our_logits(hf.load_gpt2(tmp_path), tokens)).max() <= 1e-6
    with pytest.raises(hf.HFError, match=r"layers=\('attention', 'window=4'\)"):
        hf.save_gpt2(GPT(dataclasses.replace(config, layers=("attention", "window=4")), key=jax.random.key(0)),
                     tmp_path / "windowed")


def test_a_norm_epsilon_of_its_own_exports_exactly(tmp_path):
    config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=24, mlp="gelu", options={"eps": 0.5})
    ours = GPT(config, key=jax.random.key(3))
    hf.save_gpt2(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["layer_norm_epsilon"] == 0.5
    theirs = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    tokens = np.random.default_rng(0).integers(0, 40, (2, 16))
    assert np.abs(our_logits(ours, tokens) - hf_logits(theirs, tokens)).max() <= 1e-4
    assert hf.load_gpt2(tmp_path).config.option("eps") == 0.5


def test_finetuning_refuses_flags_that_contradict_the_weights(tmp_path, char_dataset):
    # As a resume does: GPT-2 weights bring their architecture; a flag that differs is an error,
    # never silently dropped, while this run's dropout and a shorter block_size apply.
    meta = json.loads((char_dataset / "meta.json").read_text())
    hf_dir = tmp_path / "hf"
    random_hf_model(dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=meta["vocab_size"])).save_pretrained(
        hf_dir, safe_serialization=True)
    capped = tmp_path / "capped.py"
    capped.write_text("from model import GPT, MODELS\n\n\n@MODELS.register('test-hf-capped')\nclass Capped(GPT):\n    pass\n")
    result = run_script("train.py", capped, f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'run'}",
                        f"--init_from={hf_dir}", "--model=test-hf-capped", "--n_layer=3", "--softcap=5", "--max_iters=1",
                        check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert (f"{hf_dir} holds another architecture: model='gpt' (asked: 'test-hf-capped'), n_layer=2 (asked: 3), "
            "softcap=0.0 (asked: 5.0)") in result.stderr
