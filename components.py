"""The optional built-in components: a causal convolution mixer, GPT-J's parallel block and the
ReLU² MLP.

Each registers exactly as a component of your own does from your own file
(docs/adding_a_model.md): one decorator with its name and the options it declares. The scripts
import this file, so these names are always there; from Python, `import components` before
building a model that names them.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from helpers.registry import Option
from model import BLOCKS, MIXERS, MLPS, Block, GeluMLP, GPTConfig, Linear


class ConvCache(eqx.Module):
    """The causal convolution's memory: every input so far, after kernel_size - 1 zeros."""

    x: Float[Array, "L S C"]


@MIXERS.register("conv", kernel_size=Option(4, "positions each output of the conv mixer mixes: its own and those before it", low=1))
class CausalConv(eqx.Module):
    """A causal depthwise convolution: each channel mixes its own last kernel_size positions.

    Far cheaper than attention and purely local; interleaved with attention layers it makes a
    hybrid model. The kernel starts as the identity (each position sees only itself).
    """

    kernel: Float[Array, "K C"]
    c_proj: Linear
    dropout: eqx.nn.Dropout
    kernel_size: int = eqx.field(static=True)

    def __init__(self, config: GPTConfig, spec: dict):
        self.kernel_size = spec["kernel_size"]
        self.kernel = jnp.zeros((self.kernel_size, config.n_embd)).at[0].set(1.0)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def mix(self, padded: Float[Array, "P C"], T: int) -> Float[Array, "T C"]:
        """Output t from padded inputs t .. t + K - 1 (the input at t and the K - 1 before it)."""
        K = self.kernel_size
        return sum(self.kernel[j] * padded[K - 1 - j : K - 1 - j + T] for j in range(K))

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        padded = jnp.concatenate([jnp.zeros((self.kernel_size - 1, x.shape[1]), x.dtype), x])
        return self.dropout(self.c_proj(self.mix(padded, x.shape[0])), key=key)

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32) -> ConvCache:
        """Room for `length` positions after the leading zeros, in each of `layers` layers."""
        return ConvCache(jnp.zeros((layers, length + self.kernel_size - 1, self.kernel.shape[-1]), dtype))

    def decode(
        self, x: Float[Array, "T C"], cache: ConvCache, layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], ConvCache]:
        K = self.kernel_size
        # Position p lives at index p + K - 1, after the zeros; the new inputs go in first.
        cache = ConvCache(jax.lax.dynamic_update_slice(cache.x, x[None].astype(cache.x.dtype), (layer, pos + K - 1, 0)))
        recent = jax.lax.dynamic_slice(cache.x[layer], (pos, 0), (x.shape[0] + K - 1, x.shape[1]))
        return self.c_proj(self.mix(recent.astype(x.dtype), x.shape[0])), cache


@BLOCKS.register("parallel")
class ParallelBlock(Block):
    """GPT-J's and CodeGen's layer: mixer and MLP read the same normed input, side by side,
    and both add to the stream; one norm instead of two, and the two matmuls can overlap."""

    def __init__(self, config: GPTConfig, spec: dict):
        super().__init__(config, spec)
        self.ln_2 = None  # both branches read ln_1's output

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        attn_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        h = self.ln_1(x)
        return x + self.attn(h, key=attn_key) + self.mlp(h, key=mlp_key)

    def decode(self, x: Float[Array, "T C"], cache, layer: Int[Array, ""], pos: Int[Array, ""]):
        h = self.ln_1(x)
        mixed, cache = self.attn.decode(h, cache, layer, pos)
        return x + mixed + self.mlp(h), cache


@MLPS.register("relu2")
class ReluSquaredMLP(GeluMLP):
    """The speedrun's MLP (modded-nanogpt, nanochat): GELU's shape with relu(x)^2, cheaper
    to compute and sparser."""

    def activation(self, h: Float[Array, "T H"]) -> Float[Array, "T H"]:
        return jnp.square(jax.nn.relu(h))
