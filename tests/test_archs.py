import equinox as eqx
import jax
import pytest

from conftest import run_script
from helpers import archs, checkpoint
from helpers.generation import generate
from helpers.optim import optimizer_from_settings
from helpers.training import init_state, load_trained_model
from model import GPT, GPTConfig, swiglu_hidden


def closed_form_params(c: GPTConfig) -> int:
    """The parameter count a config implies, written out by hand."""
    C, kv = c.n_embd, c.kv_heads * c.head_size
    b = int(c.bias)
    norm = C + (b * C if c.norm == "layernorm" else 0)
    attention = C * (C + 2 * kv) + b * (C + 2 * kv) + C * C + b * C
    if c.mlp in ("gelu", "relu2"):
        mlp = 2 * 4 * C * C + b * (4 * C + C)
    else:
        hidden = swiglu_hidden(C, c.multiple_of)
        mlp = 3 * hidden * C + b * (2 * hidden + C)
    norms_per_block = 2 if c.block == "sequential" else 1
    block = attention + mlp + norms_per_block * norm
    positions = c.block_size * C if c.position == "learned" else 0
    head = 0 if c.tie_head else c.vocab_size * C
    return c.vocab_size * C + positions + c.n_layer * block + norm + head


@pytest.mark.parametrize("name", archs.ARCHS)
def test_every_preset_has_its_closed_form_parameter_count(name):
    config = archs.build(name)
    model = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    assert model.get_num_params(non_embedding=False) == closed_form_params(config)


def test_known_counts():
    count = lambda name: eqx.filter_eval_shape(GPT, archs.build(name), key=jax.random.key(0)).get_num_params(False)  # noqa: E731
    assert count("gpt2") == 124_439_808
    assert count("gpt2-xl") == 1_557_611_200  # nanoGPT's gpt2-xl, tied head
    # llama2.c's TinyStories models, with their vocabularies: the names are their sizes.
    assert [round(count(f"tinystories-{n}") / 1e6) for n in ("15m", "42m", "110m")] == [15, 42, 110]


def test_presets_derive_from_each_other():
    assert archs.ARCHS["baby"]() == archs.ARCHS["shakespeare-char"]() | dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)
    config = archs.build("tinystories-260k")
    assert (config.n_embd, config.n_layer, config.n_head, config.kv_heads) == (64, 5, 8, 4)
    assert (config.norm, config.position, config.mlp, config.bias) == ("rmsnorm", "rope", "swiglu", False)


def shrunk(name: str) -> GPTConfig:
    """The preset's architecture (every component choice) at a size a test can train."""
    config = archs.build(name)
    kv = 2 if config.n_kv_head else 0
    return archs.build(name, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32, block_size=16, vocab_size=65)


@pytest.mark.parametrize("name", archs.ARCHS)
def test_every_preset_round_trips_through_a_checkpoint(tmp_path, name):
    settings = dict(learning_rate=1e-3, warmup_iters=1, lr_decay_iters=2, min_lr=1e-4, decay_lr=True,
                    weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0)
    config = shrunk(name)
    state = init_state(config, optimizer_from_settings(settings)[0], seed=0)
    header = {"iter_num": 0, "best_val_loss": 0.0, "model_config": config.as_dict(),
              "settings": settings}
    checkpoint.save(tmp_path / "ckpt.eqx", header, state)
    model, _ = load_trained_model(tmp_path)
    assert model.config == config
    greedy = lambda m: generate(m, [1, 2, 3], 20, key=jax.random.key(0), temperature=0.0)  # noqa: E731
    assert greedy(model) == greedy(state["model"])


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_train_py_arch_then_overrides_then_sample_py(tmp_path, char_dataset, name):
    out = tmp_path / "run"
    args = [f"--arch={name}", "--n_layer=2", "--n_head=4", "--n_embd=32", "--block_size=16", "--batch_size=4",
            "--max_iters=2", "--eval_interval=2", "--eval_iters=1", f"--dataset={char_dataset}", f"--out_dir={out}"]
    result = run_script("train.py", *args)
    assert "n_layer      2" in result.stdout  # the override beat the preset
    position = "'rope'" if name == "llama" else "'learned'"
    assert f"position     {position}" in result.stdout  # the preset beat the default
    sample = run_script("sample.py", f"--out_dir={out}", "--start=the", "--max_new_tokens=10")
    assert sample.stdout.startswith("the")


def test_unknown_arch_is_one_line(tmp_path):
    result = run_script("train.py", "--arch=gpt5", check=False)
    assert result.returncode == 2 and "unknown arch 'gpt5'; valid names: gpt2," in result.stderr
    assert "Traceback" not in result.stderr
