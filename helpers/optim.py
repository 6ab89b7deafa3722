"""The optimizer: AdamW with gradient clipping and nanoGPT's learning-rate schedule, in optax."""

import equinox as eqx
import jax
import optax

from model import weight_matrices


def lr_schedule(
    learning_rate: float, warmup_iters: int, lr_decay_iters: int, min_lr: float, decay_lr: bool
) -> optax.Schedule:
    """Linear warmup, then cosine decay to min_lr at lr_decay_iters, then min_lr.

    Warmup starts at learning_rate / (warmup_iters + 1), not at 0: a step with a zero learning
    rate would be a wasted step.
    """
    if not decay_lr:
        return optax.constant_schedule(learning_rate)
    warmup = optax.linear_schedule(
        learning_rate / (warmup_iters + 1), learning_rate, transition_steps=warmup_iters
    )
    cosine = optax.cosine_decay_schedule(
        learning_rate, decay_steps=max(lr_decay_iters - warmup_iters, 1), alpha=min_lr / learning_rate
    )
    return optax.join_schedules([warmup, cosine], boundaries=[warmup_iters])


def decay_mask(params):
    """True for the Linear and Embedding weights, False for biases and norm gains: decaying
    the latter only pulls them toward zero for no benefit."""
    mask = jax.tree.map(lambda _: False, params)
    return eqx.tree_at(weight_matrices, mask, replace_fn=lambda _: True)


def make_optimizer(
    schedule: optax.Schedule, weight_decay: float, beta1: float, beta2: float, grad_clip: float
) -> optax.GradientTransformation:
    adamw = optax.adamw(schedule, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask)
    if grad_clip == 0.0:
        return adamw
    return optax.chain(optax.clip_by_global_norm(grad_clip), adamw)


def optimizer_from_settings(settings: dict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer train.py builds from its settings (also used to rebuild a checkpoint's)."""
    schedule = lr_schedule(
        settings["learning_rate"], settings["warmup_iters"], settings["lr_decay_iters"],
        settings["min_lr"], settings["decay_lr"],
    )
    optimizer = make_optimizer(
        schedule, settings["weight_decay"], settings["beta1"], settings["beta2"], settings["grad_clip"]
    )
    if settings.get("skip_nonfinite"):
        # optax skips (and counts) any update whose gradients are not all finite.
        optimizer = optax.apply_if_finite(optimizer, max_consecutive_errors=100)
    return optimizer, schedule
