"""check.py: every property passes for a sound model, and each fails, in one line, for a model
broken in its way."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import check
from conftest import run_script
from configurator import run_config_file
from helpers.contract import build_model
from model import GPTConfig

# Components broken on purpose, in a file of their own as a user's would be.
BROKEN = '''
import equinox as eqx
import jax.numpy as jnp

from model import MIXERS, GPTConfig, Linear


@MIXERS.register("test-forgetful")
class Forgetful(eqx.Module):
    """Token shift (each position mixes itself and the one before) whose decode forgets the
    position before: wrong for every token after the first."""

    c_proj: Linear

    def __init__(self, config: GPTConfig, spec: dict):
        self.c_proj = Linear(2 * config.n_embd, config.n_embd, config.bias)

    def __call__(self, x, *, key=None):
        previous = jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]])
        return self.c_proj(jnp.concatenate([x, previous], axis=-1))

    def empty_cache(self, layers, length, dtype=jnp.float32):
        return jnp.zeros((layers, 1), dtype)

    def decode(self, x, cache, layer, pos):
        return self(x), cache


@MIXERS.register("test-raising")
class Raising(Forgetful):
    def decode(self, x, cache, layer, pos):
        raise RuntimeError("this decode always fails\\nsecond line")


@MIXERS.register("test-running-sum")
class RunningSum(eqx.Module):
    """A recurrent mixer (a running sum) that does not say its cache cannot be rewound: its
    decode equals the full forward pass, but a padded prompt's padding gets into the sum."""

    c_proj: Linear
    unused: jnp.ndarray  # a parameter nothing reads: no gradient reaches it

    def __init__(self, config: GPTConfig, spec: dict):
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.unused = jnp.ones(3)

    def __call__(self, x, *, key=None):
        return self.c_proj(jnp.cumsum(x, axis=0) / 8)

    def empty_cache(self, layers, length, dtype=jnp.float32):
        return jnp.zeros((layers, self.c_proj.weight.shape[-1]), dtype)

    def decode(self, x, cache, layer, pos):
        sums = cache[layer] + jnp.cumsum(x, axis=0)
        return self.c_proj(sums / 8), cache.at[layer].set(sums[-1])


@MIXERS.register("test-running-sum-declared")
class DeclaredRunningSum(RunningSum):
    cache_rewinds = False  # what the class above should say: prompts then go unpadded
'''


@pytest.fixture(scope="module")
def broken_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("broken") / "broken.py"
    path.write_text(BROKEN)
    run_config_file(path)  # registers them in this process too
    return path


def model_and_tokens(**fields):
    config = GPTConfig(**dict(block_size=32, vocab_size=40, n_layer=2, n_head=2, n_embd=32) | fields)
    return check.perturbed(build_model(config, jax.random.key(0)), jax.random.key(1)), jnp.arange(32) % 40


def test_a_sound_hybrid_passes_every_property(char_dataset):
    # The issue's own command: attention, then a conv layer with its own kernel size.
    result = run_script("check.py", '--layers=("attention", "mixer=conv,kernel_size=8")', f"--dataset={char_dataset}")
    lines = result.stdout.splitlines()
    assert lines[-1] == "9 of 9 properties hold" and sum(line.startswith("pass  ") for line in lines) == 9
    assert "mesh: the loss on a mesh of 2 devices" in result.stdout


def test_a_broken_cache_fails_its_properties_in_one_line_each(broken_file, char_dataset):
    result = run_script("check.py", broken_file, '--layers=("attention", "test-forgetful")', f"--dataset={char_dataset}",
                        check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("fail  ")]
    assert [line.split(":")[0] for line in failed] == ["fail  cache", "fail  generate"]
    assert "differs from the full forward pass by" in failed[0] and "differ from the cache-less model's" in failed[1]
    assert result.stdout.splitlines()[-1] == "7 of 9 properties hold"


def test_a_component_that_raises_fails_with_the_reason(broken_file, capsys):
    model, idx = model_and_tokens(layers=("attention", "test-raising"))
    assert not check.run("cache", lambda: check.cached_decode(model, idx))
    assert capsys.readouterr().out == "fail  cache: RuntimeError: this decode always fails\n"


def test_a_cache_that_cannot_rewind_fails_generation_but_not_decoding(broken_file):
    # The guide's own "cached decode equals the full forward" holds; generate's padded prompt
    # does not, unless the class says cache_rewinds = False.
    model, idx = model_and_tokens(layers=("attention", "test-running-sum"))
    check.cached_decode(model, idx)
    with pytest.raises(AssertionError, match="generate's logits differ from the cache-less model's"):
        check.cached_generation(model, idx)
    declared, idx = model_and_tokens(layers=("attention", "test-running-sum-declared"))
    check.cached_generation(declared, idx)


def test_a_parameter_no_gradient_reaches_fails(broken_file):
    model, idx = model_and_tokens(layers=("attention", "test-running-sum"))
    with pytest.raises(AssertionError, match=r"no gradient reaches \.h\[1\]\.attn\.unused"):
        check.gradients(model, idx)


def test_a_model_whose_matrices_the_optimizer_cannot_find_fails():
    class Opaque(eqx.Module):
        """A model whose one matrix is a bare array: no layer with a weight holds it."""

        matrix: jax.Array

    with pytest.raises(AssertionError, match=r"adamw with weight decay \(matrices\) gets no array"):
        check.optimizer_groups(Opaque(jnp.zeros((4, 4))), {"optimizer": "adamw"})
    model, _ = model_and_tokens()
    assert check.optimizer_groups(model, {"optimizer": "muon"}).startswith("muon (hidden matrices): 4 arrays")


def test_a_model_that_does_not_build_fails_the_first_line(tmp_path, char_dataset):
    broken = tmp_path / "unbuildable.py"
    broken.write_text("from model import MODELS, GPT\n\n\n@MODELS.register('test-unbuildable')\nclass Unbuildable(GPT):\n"
                      "    def __init__(self, config, *, key):\n        raise RuntimeError('cannot build')\n\n\n"
                      "model = 'test-unbuildable'\n")
    result = run_script("check.py", broken, f"--dataset={char_dataset}", check=False)
    assert result.returncode == 1 and result.stdout.strip() == "fail  builds: RuntimeError: cannot build"


def test_features_and_a_head_that_do_not_make_the_logits_fail_the_loss():
    from model import GPT, MODELS

    @MODELS.register("test-split-wrong")
    class SplitWrong(GPT):
        """Defines features and __call__ together, but its logits are not head(features)."""

        def features(self, idx, *, key=None):
            return super().features(idx, key=key)[::-1]  # the positions reversed

        def __call__(self, idx, *, key=None):
            return self.head(super().features(idx, key=key))

    model, idx = model_and_tokens(model="test-split-wrong")
    with pytest.raises(AssertionError, match=r"model\(idx\) must be head\(features\(idx\)\)"):
        check.chunked_loss(model, idx)
    plain, idx = model_and_tokens()
    assert check.chunked_loss(plain, idx).startswith("the loss over chunks")
