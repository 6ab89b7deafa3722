"""helpers/contract.py: every class a config names is checked before anything is built."""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from helpers.contract import Mixer, Model, ContractError, build_model, lacks
from model import BLOCKS, MIXERS, MLPS, MODELS, NORMS, GPT, Block, GPTConfig

SMALL = dict(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32)


def test_every_built_in_meets_the_contract():
    from helpers import contract

    assert lacks(GPT, Model) == [] and lacks(Block, Mixer) == []
    for registry, protocol in ((MIXERS, contract.Mixer), (BLOCKS, contract.Mixer), (MLPS, contract.MLP),
                               (NORMS, contract.Norm), (MODELS, contract.Model)):
        for name, cls in registry.items():
            if cls.__module__ in ("model", "components"):  # the built-ins, not the tests' own
                assert lacks(cls, protocol) == [], (registry.kind, name)


@MODELS.register("test-no-count")
class NoCount(eqx.Module):
    """A model without get_num_params or a cache."""

    config: GPTConfig = eqx.field(static=True)

    def __init__(self, config, *, key):
        self.config = config

    def __call__(self, idx, *, key=None):
        return jnp.zeros((idx.shape[0], self.config.vocab_size))


@MODELS.register("test-forgets-config")
class ForgetsConfig(NoCount):
    def __init__(self, config, *, key):
        self.config = GPTConfig(**SMALL)  # not the config it was built from

    def decode(self, idx, cache, pos):
        return self(idx), cache

    def empty_cache(self, dtype=jnp.float32):
        return ()

    def get_num_params(self, non_embedding=True):
        return 0


@BLOCKS.register("test-no-decode")
class NoDecodeBlock(eqx.Module):
    def __init__(self, config, spec):
        pass

    def __call__(self, x, *, key=None):
        return x


@pytest.mark.parametrize("fields, message", [
    ({"model": "test-no-count"}, "model 'test-no-count' (NoCount) lacks decode, empty_cache, get_num_params: every "
                                 "model needs __call__, decode, empty_cache, get_num_params"),
    ({"block": "test-no-decode"}, "block 'test-no-decode' (NoDecodeBlock) lacks decode, empty_cache"),
    ({"model": "test-forgets-config"}, "does not keep its config as self.config"),
])
def test_a_class_that_lacks_a_piece_is_refused_naming_it(fields, message):
    with pytest.raises(ContractError) as error:
        build_model(GPTConfig(**SMALL | fields), jax.random.key(0))
    assert message in str(error.value) and "\n" not in str(error.value)
