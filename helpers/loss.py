"""The training loss, mean next-token cross-entropy, without the whole (B, T, V) logits at once.

At GPT-2's vocabulary the logits are a step's largest array by far: B=16, T=1024 makes 824M of
them, 3.3 GB in fp32, and the plain loss writes and reads them several times (the softmax, its
gradient, the head's two gradient matmuls). Here the head and the loss run over a few positions
of every sequence at a time, and each chunk's gradients are computed as soon as its loss is, so
no more than one chunk of logits ever exists: the backward pass has nothing left to do with
them. Where the logits are small (a 65-token vocabulary) it all runs as one plain chunk.

A model takes part when it splits its forward pass as `model(idx) == model.head(model.features(idx))`
(GPT does; see `splits_head`); any other model's logits go through the plain loss.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

# The most logits (positions x batch x vocabulary) a chunk holds: 128 MiB of fp32.
DEFAULT_LOSS_CHUNK = 2**25


def splits_head(model) -> bool:
    """Whether `model` computes its logits as head(features(idx)) with the two methods as it
    defines them: a subclass that overrides __call__ below the class that defines `features`
    may compute something else, so it keeps the plain loss."""
    def owner(name: str) -> type | None:
        return next((cls for cls in type(model).__mro__ if name in vars(cls)), None)

    features, head, call = owner("features"), owner("head"), owner("__call__")
    return features is not None and head is not None and issubclass(features, call)


def plain_cross_entropy(logits: Float[Array, "B T V"], targets: Int[Array, "B T"]) -> Float[Array, ""]:
    """The mean cross-entropy of the whole logits, in fp32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()


def chunk_length(batch: int, length: int, vocab: int, loss_chunk: int) -> int:
    """Positions per chunk: as many as keep batch x positions x vocab within loss_chunk (at
    least one), spread evenly over the chunks that takes. 0 means no chunks: all of `length`."""
    if not loss_chunk or batch * length * vocab <= loss_chunk:
        return length
    chunks = -(-length // max(1, loss_chunk // (batch * vocab)))  # ceiling division
    return -(-length // chunks)


def cross_entropy(
    head: Callable,
    features: Float[Array, "B T C"],
    targets: Int[Array, "B T"],
    loss_chunk: int = DEFAULT_LOSS_CHUNK,
) -> Float[Array, ""]:
    """Mean cross-entropy of head(features) against targets, the head run over chunks of
    positions (chunk_length's), each holding every sequence of the batch, so a batch split over
    devices stays split. The same value and gradients as the plain loss, to float rounding."""
    batch, length, _ = features.shape
    vocab = jax.eval_shape(head, features[0, :1]).shape[-1]
    chunk = chunk_length(batch, length, vocab, loss_chunk)
    per_sequence_head = jax.vmap(head)  # the head is written for one sequence, as the model is
    if chunk == length:
        return plain_cross_entropy(per_sequence_head(features), targets)

    # Positions padded to whole chunks weigh nothing; each real one weighs 1 / (B T), so the
    # chunks' sum is the mean.
    chunks = -(-length // chunk)
    pad = chunks * chunk - length
    weights = jnp.full((batch, length), 1 / (batch * length), jnp.float32)

    def in_chunks(a: Array) -> Array:  # (B, T, ...) -> (chunks, B, chunk, ...)
        a = jnp.pad(a, ((0, 0), (0, pad)) + ((0, 0),) * (a.ndim - 2))
        return jnp.moveaxis(a.reshape(batch, chunks, chunk, *a.shape[2:]), 1, 0)

    def chunk_loss(h: Float[Array, "B t C"], y: Int[Array, "B t"], w: Float[Array, "B t"]) -> Float[Array, ""]:
        losses = optax.softmax_cross_entropy_with_integer_labels(per_sequence_head(h).astype(jnp.float32), y)
        return (losses * w).sum()

    parts = (in_chunks(features), in_chunks(targets), in_chunks(weights))
    # jax.custom_vjp differentiates only its explicit inputs; closure_convert turns the arrays
    # the head closes over (its weights, as tracers being differentiated) into such inputs.
    converted, head_arrays = jax.closure_convert(chunk_loss, *(part[0] for part in parts))
    return _summed_over_chunks(converted, head_arrays, *parts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _summed_over_chunks(
    chunk_loss: Callable, head_arrays: list, features: Float[Array, "N B t C"], targets: Int[Array, "N B t"],
    weights: Float[Array, "N B t"],
) -> Float[Array, ""]:
    """The sum of chunk_loss over the chunks, one at a time (what runs without gradients)."""
    def add_chunk(total, chunk):
        return total + chunk_loss(*chunk, *head_arrays), None

    return jax.lax.scan(add_chunk, jnp.zeros((), jnp.float32), (features, targets, weights))[0]


def _summed_forward(chunk_loss, head_arrays, features, targets, weights):
    """The sum and its gradients together, chunk by chunk: each chunk's logits are made, used
    for its loss and its gradients, and dropped before the next chunk's."""
    def add_chunk(carry, chunk):
        total, head_grads = carry
        h, y, w = chunk
        loss, pullback = jax.vjp(lambda h, arrays: chunk_loss(h, y, w, *arrays), h, head_arrays)
        h_grad, arrays_grad = pullback(jnp.ones_like(loss))
        # Summed in fp32 whatever the compute dtype, as one matmul over every position would.
        head_grads = [s + g.astype(jnp.float32) for s, g in zip(head_grads, arrays_grad)]
        return (total + loss, head_grads), h_grad

    zeros = [jnp.zeros(a.shape, jnp.float32) for a in head_arrays]
    (total, head_grads), feature_grads = jax.lax.scan(add_chunk, (jnp.zeros((), jnp.float32), zeros),
                                                      (features, targets, weights))
    head_grads = [g.astype(a.dtype) for g, a in zip(head_grads, head_arrays)]
    return total, (head_grads, feature_grads)


def _summed_backward(chunk_loss, saved, total_grad):
    head_grads, feature_grads = saved
    scale = lambda g: (total_grad * g).astype(g.dtype)  # noqa: E731
    # Integer targets and the fixed weights take no gradient: None says so.
    return [scale(g) for g in head_grads], scale(feature_grads), None, None


_summed_over_chunks.defvjp(_summed_forward, _summed_backward)
