"""A new mixer and a new block, each with an option of its own, in a per-layer stack with
attention (PhyAGI MixFormer's way).

    python train.py examples/hybrid_stack.py
    python train.py examples/hybrid_stack.py --ema_decay=0.8      # every EMA layer's decay
    python sample.py examples/hybrid_stack.py
    python check.py examples/hybrid_stack.py

The mixer is recurrent: an exponential moving average over the positions, whose generation
cache is one running average per layer. Such a state cannot be rewound to an earlier position,
so the class says `cache_rewinds = False`, and generation then prefills prompts unpadded
(docs/adding_a_model.md, "The contract"). The block scales its two branches and names its mixer
field `mixer`: a block owns its decode and empty_cache, so the GPT never looks inside it.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from helpers.registry import Option
from model import BLOCKS, MIXERS, MLPS, NORMS, GPTConfig, Linear


@MIXERS.register("ema", ema_decay=Option(0.9, "the share of its running average that the EMA mixer keeps at "
                                              "each position", above=0, below=1))
class EMAMixer(eqx.Module):
    """Each position mixes the exponential moving average of itself and every position before
    it: y_t = d y_{t-1} + (1 - d) x_t, then a projection back to the stream."""

    c_proj: Linear  # named c_proj, so GPT-2's init draws it at the residual projections' scale
    decay: float = eqx.field(static=True)
    cache_rewinds = False  # a running average forgets which positions made it

    def __init__(self, config: GPTConfig, spec: dict):
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.decay = spec["ema_decay"]

    def average(self, x: Float[Array, "T C"], state: Float[Array, " C"]) -> tuple[Float[Array, "T C"], Float[Array, " C"]]:
        """The running average after each position of x, from `state` (the one before them)."""

        def step(state, x_t):
            state = self.decay * state + (1 - self.decay) * x_t
            return state, state

        last, averages = jax.lax.scan(step, state, x)
        return averages, last

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        return self.c_proj(self.average(x, jnp.zeros(x.shape[-1], x.dtype))[0])

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32) -> Float[Array, "L C"]:
        return jnp.zeros((layers, self.c_proj.weight.shape[-1]), dtype)  # one running average per layer

    def decode(self, x: Float[Array, "T C"], cache: Float[Array, "L C"], layer: Int[Array, ""], pos: Int[Array, ""]):
        averages, last = self.average(x, cache[layer].astype(x.dtype))  # pos is not needed: the state is
        return self.c_proj(averages), cache.at[layer].set(last.astype(cache.dtype))


@BLOCKS.register("scaled", branch_scale=Option(1.0, "what the scaled block multiplies each branch by before "
                                                    "adding it to the residual stream", above=0))
class ScaledBlock(eqx.Module):
    """A pre-norm block whose mixer and MLP outputs are scaled before they join the stream."""

    norm_1: eqx.Module
    mixer: eqx.Module  # PhyAGI's name for it (our Block calls it attn, as nanoGPT does)
    norm_2: eqx.Module
    mlp: eqx.Module
    scale: float = eqx.field(static=True)

    def __init__(self, config: GPTConfig, spec: dict):
        self.norm_1, self.norm_2 = NORMS[spec["norm"]](config, spec), NORMS[spec["norm"]](config, spec)
        self.mixer = MIXERS[spec["mixer"]](config, spec)
        self.mlp = MLPS[spec["mlp"]](config, spec)
        self.scale = spec["branch_scale"]

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        mixer_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        x = x + self.scale * self.mixer(self.norm_1(x), key=mixer_key)
        return x + self.scale * self.mlp(self.norm_2(x), key=mlp_key)

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32):
        return self.mixer.empty_cache(layers, length, dtype)

    def decode(self, x: Float[Array, "T C"], cache, layer: Int[Array, ""], pos: Int[Array, ""]):
        mixed, cache = self.mixer.decode(self.norm_1(x), cache, layer, pos)
        x = x + self.scale * mixed
        return x + self.scale * self.mlp(self.norm_2(x)), cache


# The run: attention and EMA layers in turn, each EMA layer with its own decay, the last also
# with its own branch scale and norm. n_layer follows from the list.
layers = ("attention", "mixer=ema,block=scaled,ema_decay=0.9", "attention",
          "mixer=ema,block=scaled,ema_decay=0.5,branch_scale=0.5,norm=rmsnorm")
out_dir = "out-hybrid"
dataset = "python_docs_char"
max_iters = 500
lr_decay_iters = 500
eval_interval = 250
start = "The "
