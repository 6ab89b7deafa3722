"""The optimizer: AdamW (nanoGPT's) or Muon, with gradient clipping and nanoGPT's learning-rate
schedule, in optax.

Muon (Keller Jordan's, in the speedrun that trains GPT-2 fastest) updates each hidden weight
matrix by its momentum made orthogonal: the matrix with the same singular vectors and every
singular value 1, computed by a few Newton-Schulz iterations. Every direction the gradient
points in then moves at the same rate, where Adam lets a few dominant directions take most of
the step. It is defined for matrices that map one activation to another, so it gets the
blocks' Linear weights only; the embeddings and the head (lookups and scores, not maps between
hidden states), the norm gains and the biases stay on AdamW with their own learning rate.
"""

import equinox as eqx
import jax
import optax

from model import NORMS, Embedding

# Each optimizer's one-line description, for --list.
OPTIMIZERS = {
    "adamw": "nanoGPT's AdamW on every array, with weight decay on the weight matrices only",
    "muon": "Muon on the hidden weight matrices; AdamW (no weight decay) on embeddings, head, gains and biases",
}
# A Linear weight is (out, in), PyTorch's layout: Muon's matrix maps the last axis (in) to the one
# before (out). Any axis before those, the layer axis of stacked blocks, is a batch axis: each
# layer's matrix is made orthogonal on its own.
LINEAR_MATRIX = optax.contrib.MuonDimensionNumbers(reduction_axis=-1, output_axis=-2)
# How Muon's Newton-Schulz iterations are weighted. Each iteration maps the normalised update X to
# aX + b(XXᵀ)X + c(XXᵀ)²X, an odd polynomial applied to every singular value at once, each pushing
# them toward 1; the names are --muon_coefficients' choices.
MUON_COEFFICIENTS = {
    "quintic": "one quintic for every iteration, tuned to raise small singular values fast (Muon's own, optax's default)",
    "polar_express": "a quintic of its own for each of up to 5 iterations (Polar Express): nearer orthogonal after all 5",
}
# Polar Express (Amsel, Persson, Musco and Gower, 2025): each iteration's polynomial is the best
# for the singular values the one before leaves, so that five of them end nearer 1 than five of
# the quintic. These are the five the GPT-2 speedrun uses. A run of fewer iterations uses the
# first ones, which leave the smallest singular values further from 1 than as many of the
# quintic; whether that trains worse is the run's to measure (docs/performance.md).
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
# They were made for an update normalised to a norm of 1.02 rather than 1, so that no singular
# value starts above 1 after rounding. optax normalises to 1: the first polynomial takes the
# 1.02 in, as p(x / s) = (a / s) x + (b / s³) x³ + (c / s⁵) x⁵.
POLAR_EXPRESS_SAFETY = 1.02


def newton_schulz_coefficients(name: str, steps: int) -> tuple:
    """optax's ns_coeffs for `steps` iterations of the named kind: one (a, b, c), or one per
    iteration."""
    if name == "quintic":
        return (3.4445, -4.775, 2.0315)
    if steps > len(POLAR_EXPRESS):
        raise ValueError(f"muon_coefficients=polar_express has {len(POLAR_EXPRESS)} iterations, and muon_ns_steps="
                         f"{steps} asks for more: set muon_ns_steps to at most {len(POLAR_EXPRESS)}")
    (a, b, c), *rest = POLAR_EXPRESS[:steps]
    s = POLAR_EXPRESS_SAFETY
    return ((a / s, b / s**3, c / s**5), *rest)


# Norms, whose weights are gains, not matrices, even when stacked layers make them 2-D.
EQUINOX_NORMS = (eqx.nn.LayerNorm, eqx.nn.RMSNorm, eqx.nn.GroupNorm)


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


def weight_layers(model) -> list[tuple[tuple, eqx.Module]]:
    """(path, layer) for every layer of `model` with a weight matrix: any module whose `weight`
    has two axes or more per layer and that is not a norm (ours or Equinox's): Linear and
    Embedding, ours or Equinox's, and a layer of your own built the same way. The layers of a
    stacked `h` (GPT's alike layers) carry one more axis, the layer axis, which does not count."""
    norms = (*NORMS.values(), *EQUINOX_NORMS)
    stacked = isinstance(getattr(model, "h", None), eqx.Module)  # one module of stacked layers, not a tuple

    def has_weight(node) -> bool:
        return isinstance(node, eqx.Module) and hasattr(getattr(node, "weight", None), "ndim")

    found = []
    for path, node in jax.tree_util.tree_leaves_with_path(model, is_leaf=has_weight):
        layer_axes = 1 if stacked and path[0] == jax.tree_util.GetAttrKey("h") else 0
        if has_weight(node) and not isinstance(node, norms) and node.weight.ndim - layer_axes >= 2:
            found.append((path, node))
    return found


def weight_matrices(model) -> list:
    """The arrays weight decay shrinks: `model.weight_matrices()` where the model says, else the
    weight of every layer `weight_layers` finds."""
    if hasattr(model, "weight_matrices"):
        return model.weight_matrices()
    return [layer.weight for _, layer in weight_layers(model)]


def hidden_matrices(model) -> list:
    """The arrays Muon updates: `model.hidden_matrices()` where the model says, else the weight
    matrices inside the model's layers. Left out are the embeddings (lookups, not maps between
    hidden states) and the layers the model holds itself rather than inside a block or a list,
    its head above all."""
    if hasattr(model, "hidden_matrices"):
        return model.hidden_matrices()
    return [layer.weight for path, layer in weight_layers(model)
            if len(path) > 1 and not isinstance(layer, (Embedding, eqx.nn.Embedding))]


def _marked(params, arrays: list):
    """A tree shaped like `params`: True for each leaf in `arrays`, False elsewhere."""
    chosen = {id(a) for a in arrays}
    return jax.tree.map(lambda leaf: id(leaf) in chosen, params)


def decay_mask(params):
    """True for the weight matrices, False for biases and norm gains: decaying the latter only
    pulls them toward zero for no benefit."""
    return _marked(params, weight_matrices(params))


def muon_dimensions(params):
    """Muon's share of the parameters: LINEAR_MATRIX for each hidden matrix, None (AdamW's) for
    every other leaf."""
    hidden = _marked(params, hidden_matrices(params))
    return jax.tree.map(lambda leaf, muon: LINEAR_MATRIX if muon else None, params, hidden)


def parameter_groups(model, optimizer: str) -> dict[str, list]:
    """The model's arrays by how `optimizer` updates them, to say so at the start of a run."""
    params = jax.tree.leaves(eqx.filter(model, eqx.is_array))
    special = hidden_matrices(model) if optimizer == "muon" else weight_matrices(model)
    chosen = {id(a) for a in special}
    rest = [p for p in params if id(p) not in chosen]
    if optimizer == "muon":
        return {"muon (hidden matrices)": special, "adamw (the rest, no weight decay)": rest}
    return {"adamw with weight decay (matrices)": special, "adamw without (gains, biases, the rest)": rest}


def describe_groups(groups: dict[str, list]) -> str:
    return "; ".join(f"{name}: {len(arrays)} arrays, {sum(a.size for a in arrays):,} parameters"
                     for name, arrays in groups.items())


def make_optimizer(
    schedule: optax.Schedule, weight_decay: float, beta1: float, beta2: float, grad_clip: float,
    muon_schedule: optax.Schedule | None = None, muon_momentum: float = 0.95, muon_ns_steps: int = 5,
    muon_coefficients: str = "quintic",
) -> optax.GradientTransformation:
    """AdamW on every leaf (decaying the matrices only); or, given `muon_schedule`, Muon on the
    blocks' matrices (decayed) and AdamW with `schedule` on the rest (not decayed). optax's Muon
    runs its AdamW side with Nesterov momentum. Each Newton-Schulz step costs three matmuls per
    matrix: on a small model, fewer steps (a rougher orthogonalisation) buy noticeably faster
    updates; `muon_coefficients` picks the polynomial each step applies."""
    if muon_schedule is None:
        update = optax.adamw(schedule, b1=beta1, b2=beta2, weight_decay=weight_decay, mask=decay_mask)
    else:
        update = optax.contrib.muon(muon_schedule, beta=muon_momentum, weight_decay=weight_decay, adam_b1=beta1,
                                    adam_b2=beta2, adam_learning_rate=schedule,
                                    muon_weight_dimension_numbers=muon_dimensions, ns_steps=muon_ns_steps,
                                    ns_coeffs=newton_schulz_coefficients(muon_coefficients, muon_ns_steps))
    if grad_clip == 0.0:
        return update
    return optax.chain(optax.clip_by_global_norm(grad_clip), update)


def optimizer_from_settings(settings: dict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer train.py builds from its settings (also used to rebuild a checkpoint's).
    Muon's learning rate follows the same warmup and decay, scaled to muon_learning_rate."""
    schedule = lr_schedule(
        settings["learning_rate"], settings["warmup_iters"], settings["lr_decay_iters"],
        settings["min_lr"], settings["decay_lr"],
    )
    muon_schedule = None
    if settings.get("optimizer", "adamw") == "muon":  # checkpoints from before Muon name no optimizer
        scale = settings["muon_learning_rate"] / settings["learning_rate"]
        muon_schedule = lambda step: scale * schedule(step)  # noqa: E731
    optimizer = make_optimizer(
        schedule, settings["weight_decay"], settings["beta1"], settings["beta2"], settings["grad_clip"],
        muon_schedule, settings.get("muon_momentum", 0.95), settings.get("muon_ns_steps", 5),
        settings.get("muon_coefficients", "quintic"),  # checkpoints from before this setting ran the quintic
    )
    if settings.get("skip_nonfinite"):
        # optax skips (and counts) any update whose gradients are not all finite.
        optimizer = optax.apply_if_finite(optimizer, max_consecutive_errors=100)
    return optimizer, schedule


# The settings that decide the optimizer state's shape, with the values a checkpoint's header
# implies when it predates them. Resuming with other values needs the state converted. Muon's
# state holds its Newton-Schulz coefficients: one row for the quintic, one per step for Polar Express.
STATE_SETTINGS = {"optimizer": "adamw", "grad_clip": 1.0, "skip_nonfinite": False, "muon_coefficients": "quintic",
                  "muon_ns_steps": 5}


def saved_state_settings(saved: dict) -> dict:
    """The STATE_SETTINGS a checkpoint's state was made with, from its header's settings."""
    return {name: saved.get(name, default) for name, default in STATE_SETTINGS.items()}


def same_layout(a, b) -> bool:
    """Whether two pytrees have the same structure and arrays of the same shapes and dtypes (an
    optimizer state read with one's template fits the other)."""
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        (x.shape, x.dtype) == (y.shape, y.dtype) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def carried_over(saved, fresh, iter_num: int) -> tuple[optax.OptState, int, int]:
    """A state for this run's optimizer, made from a checkpoint's state for other STATE_SETTINGS:
    `fresh` (this run's optimizer.init) with each piece of `saved` that is the same kind of state
    over the same arrays put in its place, so Adam's moments survive turning clipping or
    skipping on or off. Pieces without a match start afresh, except that a learning-rate
    schedule's step count continues where the saved schedules stood (behind `iter_num` by the
    updates skip_nonfinite skipped; at `iter_num` if the saved state has no schedule). Returns
    the state, how many of its arrays came from `saved`, and that step."""
    # optax's states are NamedTuples (ScaleByAdamState, ...), nested in tuples and dicts.
    is_state = lambda node: isinstance(node, tuple) and hasattr(node, "_fields")  # noqa: E731
    pieces = []

    def collect(node):
        if is_state(node):
            pieces.append(node)
        for child in node.values() if isinstance(node, dict) else node if isinstance(node, (tuple, list)) else ():
            collect(child)

    collect(saved)
    # A skipped update does not advance a schedule's count: the saved count, not iter_num, is where it stands.
    step = next((int(p.count) for p in pieces if isinstance(p, optax.ScaleByScheduleState)), iter_num)
    # A piece holds the pieces nested in it: once one of its arrays is placed, neither it nor any
    # piece around it may be placed again, or two places would hold one array (which a step that
    # donates its inputs refuses).
    placed = set()

    def fill(node):
        if is_state(node):
            match = next((p for p in pieces if type(p) is type(node) and same_layout(p, node)
                          and placed.isdisjoint(map(id, jax.tree.leaves(p)))), None)
            if match is not None:
                placed.update(map(id, jax.tree.leaves(match)))
                return match
            if isinstance(node, optax.ScaleByScheduleState):
                return node._replace(count=jax.numpy.asarray(step, node.count.dtype))
            return type(node)(*map(fill, node))
        if isinstance(node, dict):
            return {key: fill(child) for key, child in node.items()}
        if isinstance(node, (tuple, list)):
            return type(node)(map(fill, node))
        return node

    return fill(fresh), len(placed), step
