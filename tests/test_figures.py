import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.image import imread

from helpers import figures
from helpers.figures import (
    attention_maps,
    attention_weights,
    latest,
    plot_attention,
    plot_losses,
    read_log,
)
from model import GPT, GPTConfig


def fake_run(scale: float) -> list[dict]:
    """Records shaped as train.py writes them: a line per logged step, one per evaluation."""
    records = []
    for it in range(0, 101, 10):
        records.append({"iter": it, "loss": scale * 4 / (1 + it / 20), "lr": 1e-3 * (1 - it / 200)})
        if it % 50 == 0:
            records.append({"iter": it, "train_loss": scale * 4 / (1 + it / 20), "val_loss": scale * 4.2 / (1 + it / 25)})
    return records


def test_loss_chart_of_one_run_and_of_several(tmp_path):
    plot_losses({"out-a": fake_run(1.0)}, tmp_path / "one.png")
    plot_losses({"out-a": fake_run(1.0), "out-b": fake_run(0.8)}, tmp_path / "two.png")
    for name in ("one.png", "two.png"):
        image = imread(tmp_path / name)
        assert image.shape[:2] == (540, 960)  # 8 x 4.5 inches at 120 dpi
        assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
    assert not list(tmp_path.glob("*.tmp.png"))  # written through a temporary file


@pytest.mark.parametrize("name, start", [("loss.svg", b"<?xml"), ("loss.pdf", b"%PDF"), ("loss.JPG", b"\xff\xd8")])
def test_a_picture_is_written_in_the_format_its_suffix_names(tmp_path, name, start):
    plot_losses({"out-a": fake_run(1.0)}, tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(start)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # the temporary file is gone


def test_lines_that_are_no_records_are_skipped_with_a_warning(tmp_path, capsys):
    records = [{"iter": 0, "loss": 4.0}, {"iter": 1, "loss": 3.0}]
    lines = [json.dumps(records[0]).encode(), b'{"iter": 1, "lo', b"\xff\xfe", b"[1, 2]", b"", json.dumps(records[1]).encode()]
    (tmp_path / "log.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert read_log(tmp_path) == records
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {tmp_path / 'log.jsonl'} line {n} is not a JSON record: skipped" for n in (2, 3, 4)]


def test_the_bits_per_byte_chart_draws_the_evaluated_bpb(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(figures, "save", lambda fig, path: saved.append(fig))
    run = [r | {f"{k[:-5]}_bpb": v / 2.77 for k, v in r.items() if k.endswith("_loss")} for r in fake_run(1.0)]
    plot_losses({"out-a": run}, tmp_path / "bpb.png", "bpb")
    ax = saved[0].axes[0]
    drawn = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert ax.get_ylabel() == "bits per byte of text"
    assert drawn["val"] == [r["val_bpb"] for r in run if "val_bpb" in r]
    assert drawn["train (evaluated)"] == [r["train_bpb"] for r in run if "train_bpb" in r]
    assert "train (each logged step)" not in drawn  # steps log a loss, not bits per byte


def test_a_resumed_run_keeps_the_later_record_of_each_iteration():
    records = [{"iter": 1, "loss": 3.0}, {"iter": 2, "loss": 2.5}, {"iter": 2, "loss": 2.4}, {"iter": 3, "loss": 2.0}]
    assert [r["loss"] for r in latest(records, "loss")] == [3.0, 2.4, 2.0]


def test_attention_maps_cover_the_attention_layers_only(tmp_path):
    config = GPTConfig(block_size=16, vocab_size=20, n_layer=3, n_head=2, n_embd=16, layers=("attention", "conv", "attention"))
    model = GPT(config, key=jax.random.key(0))
    maps = attention_maps(model, jnp.arange(10))
    assert sorted(maps) == [0, 2]
    assert all(m.shape == (2, 10, 10) for m in maps.values())
    # Layer 2's map is computed from what layers 0 and 1 made of the sequence.
    x = model.embed(jnp.arange(10), 0)
    for block in model.blocks()[:2]:
        x = block(x)
    layer = model.blocks()[2]
    np.testing.assert_allclose(maps[2], attention_weights(layer.attn, layer.ln_1(x)), atol=1e-6)
    plot_attention(maps, list("abcdefghij"), tmp_path / "attention.png", "test")
    image = imread(tmp_path / "attention.png")
    assert image.shape[0] > 300 and image.shape[1] > 400 and image[..., :3].std() > 0.05


@pytest.mark.parametrize("extra", [{}, {"n_kv_head": 2, "n_head": 4}, {"window": 3}], ids=["mha", "gqa", "window"])
def test_attention_weights_are_what_the_layer_applies(extra):
    config = GPTConfig(**dict(block_size=16, vocab_size=50, n_layer=3, n_head=2, n_embd=32) | extra)
    attn = GPT(config, key=jax.random.key(1)).blocks()[0].attn
    x = jax.random.normal(jax.random.key(2), (16, 32))
    weights = attention_weights(attn, x)
    assert weights.shape == (config.n_head, 16, 16)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    query, key = np.indices((16, 16))
    hidden = (key > query) | ((query - key >= config.window) if config.window else False)
    assert np.all(np.asarray(weights)[:, hidden] == 0.0) and np.all(np.asarray(weights)[:, ~hidden] > 0.0)
    # Weighting the values by them gives exactly what the attention layer computes.
    _, _, v = attn.heads(x, jnp.arange(16))
    v = jnp.repeat(v, config.n_head // config.kv_heads, axis=1)
    mixed = jnp.einsum("hqk,khd->qhd", weights, v).reshape(16, 32)
    np.testing.assert_allclose(attn.c_proj(mixed), attn(x), atol=1e-5)


def test_attention_maps_of_a_model_that_is_no_gpt_are_one_clear_error():
    import equinox as eqx

    from helpers.errors import UserError

    class Scratch(eqx.Module):
        weight: jax.Array

    with pytest.raises(UserError, match="attention maps are drawn from a GPT's blocks, and Scratch is no GPT"):
        attention_maps(Scratch(jnp.ones(2)), jnp.arange(4))
