"""Your own GPT, by subclassing (theseus's way): a GPT whose logits are capped at a setting of
its own, `cap`, with an extra layer added in its constructor.

    python data/python_docs_char/prepare.py           # once: the embedded corpus
    python train.py examples/capped_gpt.py --cap=15    # trains it; the checkpoint records cap=15
    python sample.py examples/capped_gpt.py            # samples from the run (cap comes back too)
    python check.py examples/capped_gpt.py             # checks the model, property by property

This file is a config file: train.py, sample.py and check.py run it first, so the class is
registered before anything is built, and each script takes the settings below that it knows.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from helpers.registry import Option
from model import GPT, MODELS, GPTConfig, Linear, init_weights


# The name goes into every checkpoint ("model": "capped"), so a checkpoint comes back as this
# class; the option `cap` is a setting like any other (--cap=15, or cap = 15.0 in a config file).
@MODELS.register("capped", cap=Option(30.0, "the capped GPT's logits stay within (-cap, cap)", above=0))
class CappedGPT(GPT):
    """GPT-2 whose logits are squashed into (-cap, cap) by cap * tanh(logits / cap), after one
    more layer on the final hidden state."""

    pre_head: Linear  # the extra layer: a residual projection of the last hidden state

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        key, extra_key = jax.random.split(key)
        super().__init__(config, key=key)
        self.pre_head = init_weights(Linear(config.n_embd, config.n_embd, config.bias), extra_key, config)

    def head(self, x: Float[Array, "T C"]) -> Float[Array, "T V"]:
        cap = self.config.option("cap")  # this config's value, or the declared default
        return cap * jnp.tanh(super().head(x + self.pre_head(x)) / cap)


# The run: a small model on the embedded corpus, a few minutes on a CPU.
model = "capped"
out_dir = "out-capped"
dataset = "python_docs_char"
max_iters = 500
lr_decay_iters = 500
eval_interval = 250
start = "The "  # sample.py's prompt
