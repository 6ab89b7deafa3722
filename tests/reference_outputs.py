"""Logits, loss and gradients of every built-in preset and component on fixed inputs: what the
model computes, recorded once so that moving code around can be checked to change nothing.

    python tests/reference_outputs.py    # rewrites tests/reference_outputs.json

tests/test_model.py recomputes these and compares. Rerun this only for a change that is meant
to change the numbers, and say why in its commit.
"""

import json
import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import archs  # noqa: E402

RECORD = Path(__file__).with_suffix(".json")
# Built-in components beyond the presets, on the tiny preset's size.
COMPONENTS = {
    "window": dict(window=5),
    "parallel": dict(block="parallel"),
    "conv": dict(mixer="conv"),
    "hybrid": dict(n_layer=3, layers=("attention", "conv", "mixer=attention,window=4,mlp=gelu")),
    "relu2-qk-norm-softcap": dict(mlp="relu2", qk_norm=True, position="rope", softcap=3.0, tie_head=False),
}


def configs() -> dict:
    """Every preset at a size a test computes in a moment, and the components above."""
    shrunk = {}
    for name in archs.ARCHS:
        kv = 2 if archs.build(name).n_kv_head else 0
        shrunk[name] = archs.build(name, n_layer=2, n_head=4, n_kv_head=kv, n_embd=32, block_size=16, vocab_size=65,
                                   dropout=0.0)
    return shrunk | {name: archs.build("tiny", block_size=16, **fields) for name, fields in COMPONENTS.items()}


def outputs(config) -> dict:
    """Logits of a few positions, the loss, and each parameter array's gradient norm, by path."""
    from model import MODELS

    model = MODELS[config.model](config, key=jax.random.key(0))
    idx = jax.random.randint(jax.random.key(1), (2, config.block_size), 0, config.vocab_size)
    targets = jnp.roll(idx, -1, axis=1)

    def loss(model):
        logits = jax.vmap(model)(idx)
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean(), logits

    (value, logits), grads = eqx.filter_jit(eqx.filter_value_and_grad(loss, has_aux=True))(model)
    norms = {jax.tree_util.keystr(path): float(jnp.linalg.norm(g))
             for path, g in jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_array))}
    return {"logits": np.asarray(logits[:, :4, :6]).round(6).tolist(), "loss": float(value), "grad_norms": norms}


if __name__ == "__main__":
    RECORD.write_text(json.dumps({name: outputs(config) for name, config in configs().items()}, indent=1) + "\n")
    print(f"wrote {RECORD}")
