"""The compiled pieces of training: the loss, one optimizer step, and evaluation; and the
training state a run starts from and a checkpoint holds."""

import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from helpers import checkpoint, cpu_fast_path
from helpers.contract import build_model
from helpers.errors import UserError
from helpers.loss import DEFAULT_LOSS_CHUNK, cross_entropy, plain_cross_entropy, splits_head
from helpers.optim import optimizer_from_settings
from model import GPT, GPTConfig


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# The model's init runs once, so its compile time is most of its cost. On a CPU, LLVM's lighter
# optimisation level compiles it markedly faster and draws bit-identical weights
# (tests/test_training.py checks it).
INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 1}}
DTYPE_CHOICES = ("auto", *COMPUTE_DTYPES)
# Gradient checkpointing: what the backward pass may keep of each layer's forward pass; the
# rest it recomputes from the layer's input. PyTorch's torch.utils.checkpoint keeps only the
# inputs; `jax.checkpoint` takes a policy, so a layer can keep its matmuls, the costly part, and
# recompute only the cheap elementwise work (norms, activations, softmax) around them.
REMAT_POLICIES = {
    "none": None,  # keep everything: no recomputation, the most memory
    "dots": jax.checkpoint_policies.dots_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
}


def compute_dtype(name: str):
    """The dtype the model computes in (parameters and optimizer state stay float32).

    "auto" is bfloat16 on a GPU or TPU, whose matrix units run it several times faster than
    float32, and float32 on a CPU, where XLA's bfloat16 matmuls are no faster than float32 ones.
    """
    if name == "auto":
        name = "float32" if jax.default_backend() == "cpu" else "bfloat16"
    return COMPUTE_DTYPES[name]


def init_state(
    config: GPTConfig, optimizer: optax.GradientTransformation, seed: int, model: GPT | None = None
) -> dict:
    """Everything a training run carries from step to step, as a checkpoint stores it.

    The model is drawn from the seed, or given (pretrained weights to finetune)."""
    seed %= 2**32  # any integer: jax's keys and the batch sampler take 32 bits
    model_key, dropout_key = jax.random.split(jax.random.key(seed))
    if model is None:
        # Built by one compiled call: run eagerly, init's hundreds of small ops (a draw and a
        # tree_at per weight) would each be dispatched on their own, which takes longer.
        # Under eqx.filter_eval_shape (a checkpoint's skeleton) the key is a tracer, and jax takes
        # compiler options only on an outermost jit.
        traced = isinstance(model_key, jax.core.Tracer)
        options = None if traced else INIT_COMPILER_OPTIONS.get(jax.default_backend())
        model = eqx.filter_jit(build_model, compiler_options=options)(config, model_key)
    return {
        "model": model,
        "opt_state": optimizer.init(eqx.filter(model, eqx.is_array)),
        # Key data (two uint32s), since typed PRNG keys do not serialise.
        "dropout_key": jax.random.key_data(dropout_key),
        # Batches are a pure function of (data_seed, iteration): this is the sampler's state.
        "data_seed": jnp.array(seed, jnp.uint32),
    }


def checkpoint_config(header: dict, path: Path) -> GPTConfig:
    """The model config a checkpoint's header holds, or a clear error when this process cannot
    build it: a component (mixer, model class, ...) registered by a file it was not given."""
    if missing := [key for key, kind in (("iter_num", int), ("model_config", dict)) if not isinstance(header.get(key), kind)]:
        raise UserError(f"{path}'s header lacks {' and '.join(missing)}: the file is damaged; resume from another "
                        "checkpoint (best.eqx), or train again")
    # remat was a model field in checkpoints written before it became a training setting.
    values = {k: v for k, v in header["model_config"].items() if k != "remat"}
    try:
        return GPTConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise UserError(
            f"{path} cannot be rebuilt here: {error}. If it was trained with components of your own, "
            "pass the file that registers them first, as in training (python sample.py my_model.py --out_dir=...)"
        ) from None


CHECKPOINTS = ("ckpt.eqx", "best.eqx")  # what train.py writes in out_dir: the latest state, the best val loss


def load_trained_model(out_dir: Path, name: str = "ckpt.eqx") -> tuple[GPT, dict]:
    """The model in a run's checkpoint (one of CHECKPOINTS), and its header."""
    if Path(out_dir).is_file():
        raise UserError(f"{out_dir} is a file, not a run's folder: pass --out_dir={Path(out_dir).parent}")
    ckpt_path = Path(out_dir) / name
    header = checkpoint.read_header(ckpt_path)
    config = checkpoint_config(header, ckpt_path)
    # The file holds the whole training state; rebuild its shapes from the header (no compute,
    # no allocation), read it all, and keep the model.
    optimizer, _ = optimizer_from_settings(header["settings"])
    like = eqx.filter_eval_shape(init_state, config, optimizer, 0)
    return checkpoint.load(ckpt_path, like)["model"], header


def with_dropout(model: GPT, rate: float) -> GPT:
    """`model` with every dropout layer's rate set to `rate` (what a resumed run asks for)."""
    is_dropout = lambda node: isinstance(node, eqx.nn.Dropout)  # noqa: E731
    return jax.tree.map(lambda node: eqx.nn.Dropout(rate) if is_dropout(node) else node, model, is_leaf=is_dropout)


def cast_floats(model: GPT, dtype) -> GPT:
    """A copy of `model` whose float arrays are `dtype`: the compute copy for mixed precision.

    Parameters stay fp32 in the optimizer; gradients flow back through this cast to them.
    """
    return jax.tree.map(
        lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, model
    )


class Checkpointed(eqx.Module):
    """A block whose forward pass the backward pass recomputes from the block's input, keeping
    only what the REMAT_POLICIES policy lets it keep."""

    block: eqx.Module
    policy: str = eqx.field(static=True)

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        # filter_checkpoint is jax.checkpoint for a function of a Module: the block's arrays
        # are traced, its other fields (dropout's rate, names) stay static.
        run = eqx.filter_checkpoint(lambda block, x, key: block(x, key=key), policy=REMAT_POLICIES[self.policy])
        return run(self.block, x, key)


def check_remat(model: GPT, remat: str) -> None:
    """Remat a model can use: its blocks in `h`, stacked and scanned. Unrolled (or a stack of
    differing layers, a tuple), XLA is free to run the recomputation as early as the forward
    pass and keep what remat was to free (docs/performance.md): refused, not silently useless."""
    if remat not in REMAT_POLICIES:
        raise UserError(f"remat must be one of {', '.join(REMAT_POLICIES)}, got {remat!r}")
    if remat == "none":
        return
    if not hasattr(model, "h"):
        raise UserError(f"remat={remat} recomputes the blocks in model.h, and {type(model).__name__} has no h: "
                        "use remat=none")
    if isinstance(model.h, tuple) or not getattr(getattr(model, "config", None), "scan_layers", True):
        raise UserError(f"remat={remat} saves memory only over stacked, scanned layers (scan_layers=True, every "
                        "layer alike): add --scan_layers=True, or use remat=none")


def with_remat(model: GPT, remat: str) -> GPT:
    """`model` with its stacked blocks recomputed in the backward pass (remat "dots" or "full"):
    one Checkpointed around them, which the scan slices per layer."""
    check_remat(model, remat)
    if remat == "none":
        return model
    return eqx.tree_at(lambda m: m.h, model, Checkpointed(model.h, remat))


def loss_fn(
    model: GPT,
    x: Int[Array, "B T"],
    y: Int[Array, "B T"],
    key: PRNGKeyArray | None,
    compute_dtype=jnp.float32,
    remat: str = "none",
    fast_path: bool = True,
    loss_chunk: int = DEFAULT_LOSS_CHUNK,
) -> Float[Array, ""]:
    """Mean next-token cross-entropy over a batch, in fp32 whatever the compute dtype, its
    head run over at most `loss_chunk` logits at a time (helpers/loss.py; 0: all at once).
    `fast_path=False` runs model.py's own classes on a CPU too (slower, the same values)."""
    model = with_remat(cast_floats(model, compute_dtype), remat)
    keys = None if key is None else jax.random.split(key, x.shape[0])  # one dropout key per row
    # The model takes one sequence; vmap maps it over the batch. On a CPU, the CPU fast path
    # does (the same values and gradients, in a form XLA's CPU backend runs faster).
    over_batch = jax.vmap
    if fast_path and jax.default_backend() == "cpu":
        model, over_batch = cpu_fast_path.swapped(model), cpu_fast_path.over_batch
    if not splits_head(model):
        return plain_cross_entropy(over_batch(lambda idx, k: model(idx, key=k))(x, keys), y)
    features = over_batch(lambda idx, k: model.features(idx, key=k))(x, keys)
    return cross_entropy(model.head, features, y, loss_chunk)


# donate="all" lets XLA write the new model and optimizer state into the old ones' memory.
@eqx.filter_jit(donate="all")
def make_step(
    model: GPT,
    opt_state: optax.OptState,
    x: Int[Array, "A B T"],
    y: Int[Array, "A B T"],
    key: PRNGKeyArray,
    optimizer: optax.GradientTransformation,
    compute_dtype=jnp.float32,
    remat: str = "none",
    fast_path: bool = True,
    loss_chunk: int = DEFAULT_LOSS_CHUNK,
) -> tuple[GPT, optax.OptState, Float[Array, ""]]:
    """One optimizer update from A micro-batches of B sequences (gradient accumulation).

    The micro-batches run inside this one compiled function (a scan that sums gradients), so
    the host dispatches once per update however large A is.
    """
    params, static = eqx.partition(model, eqx.is_array)

    def micro_step(grad_sum, batch):
        xb, yb, kb = batch
        # filter_value_and_grad differentiates with respect to the model's float arrays only.
        loss, grads = eqx.filter_value_and_grad(loss_fn)(
            eqx.combine(params, static), xb, yb, kb, compute_dtype, remat, fast_path, loss_chunk
        )
        return jax.tree.map(jnp.add, grad_sum, grads), loss

    zeros = jax.tree.map(jnp.zeros_like, params)
    keys = jax.random.split(key, x.shape[0])
    grad_sum, losses = jax.lax.scan(micro_step, zeros, (x, y, keys))
    grads = jax.tree.map(lambda g: g / x.shape[0], grad_sum)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.apply_updates(model, updates), opt_state, losses.mean()


@eqx.filter_jit(donate="all")
def make_steps(
    model: GPT,
    opt_state: optax.OptState,
    x: Int[Array, "S A B T"],
    y: Int[Array, "S A B T"],
    key: PRNGKeyArray,
    first_iter: Int[Array, ""],
    optimizer: optax.GradientTransformation,
    compute_dtype=jnp.float32,
    remat: str = "none",
    fast_path: bool = True,
    loss_chunk: int = DEFAULT_LOSS_CHUNK,
) -> tuple[GPT, optax.OptState, Float[Array, " S"]]:
    """S optimizer updates (make_step S times) in one compiled call; the loss of each.

    Update i uses dropout key fold_in(key, first_iter + i), as if each step were its own call,
    so how many steps run per call never changes the result. Why bother: every call of a
    compiled step pays a fixed cost besides the step itself. On a CPU it is mostly memory: XLA
    maps the step's scratch afresh on each call and the kernel zeroes it page by page, while
    the scan's iterations share one allocation (docs/performance.md).
    """
    params, static = eqx.partition(model, eqx.is_array)

    def one_step(carry, batch):
        params, opt_state = carry
        xb, yb, iteration = batch
        model, opt_state, loss = make_step(
            eqx.combine(params, static), opt_state, xb, yb, jax.random.fold_in(key, iteration), optimizer, compute_dtype,
            remat, fast_path, loss_chunk,
        )
        return (eqx.filter(model, eqx.is_array), opt_state), loss

    iterations = first_iter + jnp.arange(x.shape[0])
    (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), (x, y, iterations))
    return eqx.combine(params, static), opt_state, losses


def compile_ahead(function, *args):
    """`function` (filter_jit's) compiled for `args` ahead of its first call, which then reuses
    the program, so that compiling can be timed on its own."""
    with warnings.catch_warnings():  # the integer batches cannot be donated; the calls say nothing of it either
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        return function.lower(*args).compile()


# Evaluation batches run a few at a time, up to this many tokens: a small batch's matmuls alone
# leave a CPU's cores idle between them, while groups much larger than this ran slower again
# (docs/performance.md).
EVAL_GROUP_TOKENS = 4096


def eval_group(batches: int, tokens_per_batch: int) -> int:
    """How many of `batches` batches to evaluate at once: the most that divide them evenly (no
    second program for a remainder) within EVAL_GROUP_TOKENS."""
    fit = max(1, EVAL_GROUP_TOKENS // tokens_per_batch)
    return max(k for k in range(1, min(fit, batches) + 1) if batches % k == 0)


@eqx.filter_jit
def eval_loss(
    model: GPT, x: Int[Array, "N B T"], y: Int[Array, "N B T"], compute_dtype=jnp.float32, fast_path: bool = True,
    loss_chunk: int = DEFAULT_LOSS_CHUNK,
) -> Float[Array, ""]:
    """Mean loss over N batches with dropout off (inference mode), a group of batches at a time
    (`eval_group`): the mean of the batches' losses, as one at a time would give."""
    model = eqx.nn.inference_mode(model)
    group = eval_group(x.shape[0], x.shape[1] * x.shape[2])
    # A group is one batch to the loss's chunks (lax.map vmaps the loss over it), so each batch
    # gets its share of the logits budget.
    chunk = max(1, loss_chunk // group) if loss_chunk else 0
    losses = jax.lax.map(lambda batch: loss_fn(model, *batch, None, compute_dtype, "none", fast_path, chunk),
                         (x, y), batch_size=group if group > 1 else None)
    return losses.mean()
