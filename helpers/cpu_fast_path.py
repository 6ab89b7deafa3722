"""The CPU fast path: the same GPT, with a few pieces rewritten where XLA's CPU backend is slow.

model.py is the plain math. A training step on a CPU (`helpers.training.loss_fn`) runs the
model as `swapped(model)`, with some of its layers swapped for the subclasses below, which
compute the same values and gradients in a form XLA's CPU backend runs faster, and maps it over
the batch with `over_batch`. Only exact instances of model.py's classes are swapped; a
component of your own runs as you wrote it.

Each piece says what XLA does with the plain version. docs/performance.md has the
measurements; tests/test_cpu_fast_path.py checks that each piece equals the plain one, values
and gradients.
"""

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from model import GPT, CausalSelfAttention, Embedding, LayerNorm, Linear, RMSNorm, attend, causal_mask

BATCH_AXIS = "batch"  # the name of over_batch's vmap axis, for PerSequenceEmbedding


def over_batch(forward: Callable) -> Callable:
    """`forward` of one sequence (tokens and a dropout key or None) mapped over a batch, as
    jax.vmap does, with the axis named for PerSequenceEmbedding.

    Sound only where this vmap is the innermost transformation around the model, as in the
    training loss: `_fold_rows` is a custom batching rule, which JAX differentiates as the
    ordinary ops it emits.
    """
    return jax.vmap(forward, axis_name=BATCH_AXIS)


def swapped(model: GPT) -> GPT:
    """`model` with the pieces below in place of model.py's own."""
    # Two passes, the layers inside attention first, since a swapped node is not descended into.
    for swaps in ({Linear: FoldedLinear, Embedding: PerSequenceEmbedding, LayerNorm: FastLayerNorm,
                   RMSNorm: FastRMSNorm}, {CausalSelfAttention: BlockedAttention}):
        is_swapped = lambda node, swaps=swaps: type(node) in swaps  # noqa: E731
        model = jax.tree.map(lambda node, swaps=swaps: _as(swaps[type(node)], node) if is_swapped(node) else node,
                             model, is_leaf=is_swapped)
    return model


def _as(cls: type, module: eqx.Module) -> eqx.Module:
    """`module`'s fields in `cls`, a subclass that computes the same thing another way (built
    as Equinox itself rebuilds a module from its fields, without running __init__)."""
    new = object.__new__(cls)
    for field in dataclasses.fields(module):
        object.__setattr__(new, field.name, getattr(module, field.name))
    return new


# ---------------------------------------------------------------------------------------------
# The batch folded into every matmul. Under a plain vmap the weight's gradient is a contraction
# over two axes, batch and time, which XLA's CPU backend computes by first copying the
# activations' gradient into a transposed layout. Folded, (B, T, in) becomes (B*T, in), a free
# reshape, and the gradient is one ordinary matmul.


@jax.custom_batching.custom_vmap
def _fold_rows(x: Float[Array, "T in"], weight: Float[Array, "out in"]) -> Float[Array, "T out"]:
    return x @ weight.T


@_fold_rows.def_vmap
def _fold_rows_rule(
    axis_size: int, in_batched: list[bool], x: Float[Array, "*B T in"], weight: Float[Array, "*B out in"]
) -> tuple[Float[Array, "B T out"], bool]:
    x_batched, weight_batched = in_batched
    if weight_batched:  # a vmap over models, not only over sequences: the ordinary rule
        return jax.vmap(lambda a, w: a @ w.T, in_axes=(0 if x_batched else None, 0))(x, weight), True
    rows = x.reshape(-1, x.shape[-1]) @ weight.T
    return rows.reshape(*x.shape[:-1], weight.shape[0]), True


class FoldedLinear(Linear):
    """Linear with the batch folded into its matmul."""

    def __call__(self, x: Float[Array, "T in"]) -> Float[Array, "T out"]:
        y = _fold_rows(x, self.weight)
        return y if self.bias is None else y + self.bias


# ---------------------------------------------------------------------------------------------
# Every sequence looks its positions up for itself. The positions are the same for every
# sequence, so a plain vmap looks their embeddings up once and the table's gradient becomes a
# sum over the batch; XLA's CPU backend fuses that sum with the chain of residual-stream
# gradients that feeds it and recomputes the chain inside the sum. Looked up per sequence, the
# table's gradient is a scatter-add, like the token table's.


class PerSequenceEmbedding(Embedding):
    """Embedding whose lookups are per sequence and whose unembedding is folded."""

    def __call__(self, idx: Int[Array, " T"]) -> Float[Array, "T dim"]:
        # Adding this sequence's number times zero makes idx one array per sequence, even
        # when (as for the positions) it was the same for all of them.
        return self.weight[idx + 0 * jax.lax.axis_index(BATCH_AXIS)]

    def unembed(self, x: Float[Array, "T dim"]) -> Float[Array, "T num"]:
        return _fold_rows(x, self.weight)


# ---------------------------------------------------------------------------------------------
# The norms' gradient written out, as PyTorch's LayerNorm kernel has its own backward. From
# autodiff's version, XLA's CPU backend fuses each layer's input gradient with those of all the
# layers above it and recomputes that chain in every layer: work quadratic in depth. Given the
# backward below, each layer's gradient stays in that layer.
# jax.custom_vjp plays the part of a torch.autograd.Function: a forward that also returns what
# the backward needs, and a backward from the output's gradient to the input's. eps and center
# are settings, not arrays: nondiff_argnums passes them to the backward as they are.


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def normalize(x: Float[Array, "T C"], eps: float, center: bool) -> Float[Array, "T C"]:
    """LayerNorm's normalize (center=True) or RMSNorm's (center=False), with its gradient
    written out."""
    return _normalize_forward(x, eps, center)[0]


def _normalize_forward(
    x: Float[Array, "T C"], eps: float, center: bool
) -> tuple[Float[Array, "T C"], tuple[Float[Array, "T C"], Float[Array, "T 1"]]]:
    if center:
        x = x - x.mean(-1, keepdims=True)
    std = jnp.sqrt(jnp.square(x).mean(-1, keepdims=True) + eps)
    y = x / std
    return y, (y, std)  # all the backward needs: the output and each row's std


def _normalize_backward(
    eps: float, center: bool, saved: tuple[Float[Array, "T C"], Float[Array, "T 1"]], grad: Float[Array, "T C"]
) -> tuple[Float[Array, "T C"]]:
    # y = x_c / std, with std = sqrt(mean(x_c^2) + eps), so dL/dx_c = (g - y mean(g y)) / std.
    # Centering (x_c = x - mean(x)) then subtracts that gradient's mean, mean(g) / std (y has
    # mean 0): the same as subtracting mean(g) from g first, as here.
    y, std = saved
    if center:
        grad = grad - grad.mean(-1, keepdims=True)
    return ((grad - y * (grad * y).mean(-1, keepdims=True)) / std,)


normalize.defvjp(_normalize_forward, _normalize_backward)


class FastLayerNorm(LayerNorm):
    """LayerNorm with its gradient written out."""

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        return normalize(x, self.eps, True)


class FastRMSNorm(RMSNorm):
    """RMSNorm with its gradient written out."""

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        return normalize(x, self.eps, False)


# ---------------------------------------------------------------------------------------------
# Causal attention in blocks of queries. XLA's CPU attention computes every score of the T x T
# matrix and masks the upper triangle away; queries s..e-1 can only see keys 0..e-1, so running
# them block by block skips most of that triangle while each matmul stays large.

QUERY_BLOCK = 128  # queries per block


class BlockedAttention(CausalSelfAttention):
    """Causal self-attention run in blocks of QUERY_BLOCK queries."""

    def causal_attention(
        self, q: Float[Array, "T H D"], k: Float[Array, "T Hkv D"], v: Float[Array, "T Hkv D"]
    ) -> Float[Array, "T H D"]:
        positions = jnp.arange(q.shape[0])
        visible = causal_mask(positions, positions, self.window)
        blocks = []
        for start in range(0, len(positions), QUERY_BLOCK):
            end = start + QUERY_BLOCK  # slices stop at T by themselves
            blocks.append(attend(q[start:end], k[:end], v[:end], visible[start:end, :end])[0])
        return jnp.concatenate(blocks)

