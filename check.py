"""Check a model: build what train.py would build from the same arguments, then test it, one line
per property, pass or fail.

    python check.py                                                   # train.py's default model
    python check.py --layers='("attention", "mixer=conv,kernel_size=8")'
    python check.py examples/capped_gpt.py                            # a model of your own

The properties: no logit depends on a later token; decoding with the cache gives the full
forward pass's logits; `generate` with the cache gives the cache-less model's logits along its
own path (a padded prompt, a crop at block_size); the gradient reaches every parameter array;
the training loss run over chunks of positions equals the whole logits' loss; a checkpoint
gives back the same model; the optimizer finds the model's matrices; Hugging Face
export is exact or refused; a mesh of two devices computes one device's loss. They run on the
model with its weights perturbed away from their init (zero-initialised projections would
otherwise hide a broken part behind exact zeros), with block_size cut to check_block_size.

Exit status 1 when any property fails. A broken component fails its property, with the reason
in one line; it never stops the others.
"""
# ruff: noqa: E402

import os
import sys

from helpers.cpu_runtime import cpu_backend_expected

if __name__ == "__main__" and cpu_backend_expected() and "host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Two CPU devices, for the mesh property; the flag must be set before jax starts.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

import tempfile
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import train
from configurator import configure, settings_of
from helpers import archs, checkpoint, hf, registries, sharding
from helpers.data import dataset_dir, model_vocab_size, read_meta
from helpers.errors import UserError, report_user_errors
from helpers.generation import generate, steps_without_cache
from helpers.loss import plain_cross_entropy, splits_head
from helpers.optim import describe_groups, optimizer_from_settings, parameter_groups
from helpers.training import eval_loss, init_state, load_trained_model, loss_fn

# -----------------------------------------------------------------------------------------------
# Every train.py setting is check.py's too (below), so the same arguments build the same model.
check_block_size = 64  # the checks run with block_size cut to at most this, so that they take seconds
tolerance = 1e-4  # largest logit difference allowed, relative to the largest logit
# -----------------------------------------------------------------------------------------------
globals().update({k: v for k, v in settings_of(vars(train)).items() if k not in globals()})


def model_vocab(dataset: str) -> int:
    """The dataset's vocabulary, as train.py takes it; 64 when the dataset is not prepared."""
    try:
        return model_vocab_size(read_meta(dataset_dir(dataset)))
    except UserError:
        return 64


def perturbed(model, key):
    """The model with every float array moved away from its init by small noise."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [p + 0.02 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
    return eqx.combine(jax.tree.unflatten(tree, noisy), static)


def close(a, b) -> tuple[bool, float]:
    """Whether two sets of logits agree within `tolerance` of the larger's scale, and by how much."""
    a, b = np.asarray(a), np.asarray(b)
    difference = float(np.abs(a - b).max())
    return difference <= tolerance * max(1.0, float(np.abs(b).max())), difference


# Each compiled once, then called on every input: run eagerly, every small op would be dispatched
# on its own, which takes far longer.
forward = eqx.filter_jit(lambda model, idx: model(idx))
decode = eqx.filter_jit(lambda model, idx, cache, pos: model.decode(idx, cache, pos))


def causal(model, idx) -> str:
    logits = forward(model, idx)
    for t in range(0, len(idx) - 1, max(1, len(idx) // 4)):
        changed = forward(model, idx.at[t + 1 :].set((idx[t + 1 :] + 1) % model.config.vocab_size))
        same, difference = close(changed[: t + 1], logits[: t + 1])
        if not same:
            raise AssertionError(f"changing tokens after position {t} moved its logits by {difference:.3g}")
    return "no logit depends on a later token"


def cached_decode(model, idx) -> str:
    prefill = len(idx) // 2
    logits, cache = decode(model, idx[:prefill], model.empty_cache(), jnp.int32(0))
    steps = [logits]
    for pos in range(prefill, len(idx)):
        logits, cache = decode(model, idx[pos : pos + 1], cache, jnp.int32(pos))
        steps.append(logits)
    same, difference = close(jnp.concatenate(steps), forward(model, idx))
    if not same:
        raise AssertionError(f"decoding with the cache differs from the full forward pass by {difference:.3g}")
    return f"a {prefill}-token prefill, then one token at a time, gives the full forward's logits ({difference:.1e})"


def cached_generation(model, idx) -> str:
    # A prompt that is padded up to its bucket, and enough tokens to cross a crop at block_size.
    prompt, new = [int(t) for t in idx[:5]], model.config.block_size + 4
    seen = []
    path = generate(model, prompt, new, key=jax.random.key(0), temperature=0.0,
                    on_logits=lambda logits: seen.append(np.asarray(logits)[0]))[0]
    reference = [logits for logits, _ in steps_without_cache(model, prompt, new, forced=path)]
    if len(seen) != new:
        raise AssertionError(f"generate produced {len(seen)} steps' logits for {new} tokens")
    for i, (cached, plain) in enumerate(zip(seen, reference)):
        same, difference = close(cached, plain)
        if not same:
            raise AssertionError(f"at new token {i} (position {len(prompt) + i}) generate's logits differ from the "
                                 f"cache-less model's by {difference:.3g}")
    return f"{new} greedy tokens after a 5-token prompt, across a crop: the cache-less model's logits"


def gradients(model, idx) -> str:
    targets = jnp.roll(idx, -1)
    loss = lambda model: optax.softmax_cross_entropy_with_integer_labels(model(idx), targets).mean()  # noqa: E731
    grads = eqx.filter_jit(eqx.filter_grad(loss))(model)
    paths = jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_inexact_array))
    dead = [jax.tree_util.keystr(path) for path, grad in paths if not jnp.any(grad != 0)]
    if dead:
        raise AssertionError(f"no gradient reaches {', '.join(dead)}")
    return f"every one of {len(paths)} parameter arrays gets a gradient"


def chunked_loss(model, idx) -> str:
    if not splits_head(model):
        return "trained through its own __call__ (no features and head of its own): the loss holds the whole logits"
    x, y = idx[None], jnp.roll(idx, -1)[None]
    whole = lambda model: plain_cross_entropy(model(idx)[None], y)  # noqa: E731  (the model's own logits)
    plain_loss, plain_grads = eqx.filter_jit(eqx.filter_value_and_grad(whole))(model)
    per_chunk = 3 * model.config.vocab_size  # three positions a chunk, the last one padded
    loss, grads = eqx.filter_jit(eqx.filter_value_and_grad(loss_fn))(model, x, y, None, loss_chunk=per_chunk)
    same, difference = close(loss, plain_loss)
    if not same:
        raise AssertionError(f"the loss over chunks of head(features(idx)) differs from the whole logits' by "
                             f"{difference:.3g}: model(idx) must be head(features(idx))")
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(eqx.filter(grads, eqx.is_inexact_array)),
                            jax.tree.leaves(eqx.filter(plain_grads, eqx.is_inexact_array)), strict=True):
        same, difference = close(a, b)
        if not same:
            raise AssertionError(f"over chunks, the gradient of {jax.tree_util.keystr(path)} differs by {difference:.3g}")
    return "the loss over chunks of positions has the whole logits' value and gradients"


def round_trip(model, idx, config, settings) -> str:
    state = init_state(config, optimizer_from_settings(settings)[0], 0, model)
    with tempfile.TemporaryDirectory() as out:
        header = {"iter_num": 0, "best_val_loss": 0.0, "model_config": config.as_dict(), "settings": dict(settings)}
        checkpoint.save(Path(out) / "ckpt.eqx", header, state)
        loaded, _ = load_trained_model(Path(out))
    if type(loaded) is not type(model) or not np.array_equal(forward(loaded, idx), forward(model, idx)):
        raise AssertionError("the model read back from a checkpoint computes other logits")
    return f"written and read back, it is a {type(loaded).__name__} with the same logits"


def optimizer_groups(model, settings) -> str:
    groups = parameter_groups(model, settings["optimizer"])
    special = next(iter(groups))
    if not groups[special]:
        raise AssertionError(f"{special} gets no array: {describe_groups(groups)}; say which arrays are matrices "
                             "(weight_matrices, hidden_matrices: helpers/optim.py)")
    return describe_groups(groups)


def hf_export(model, idx) -> str:
    with tempfile.TemporaryDirectory() as out:
        try:
            hf.save_gpt2(model, Path(out))
        except hf.HFError as error:
            return f"refused, as it must be: {str(error).split(';')[0]}"
        again = hf.load_gpt2(Path(out), dropout=model.config.dropout)
    if not np.array_equal(forward(again, idx), forward(model, idx)):
        raise AssertionError("the exported GPT-2 computes other logits")
    return "exported as GPT-2 and read back: the same logits"


def data_parallel(model, idx) -> str:
    if jax.device_count() < 2:
        return "skipped: one device (check.py makes two CPU devices when it starts on a CPU)"
    batch = jnp.stack([idx, jnp.roll(idx, 3)])[None]
    x, y = batch[..., :-1], batch[..., 1:]
    single = eval_loss(model, x, y)
    devices = sharding.make_mesh("")  # every device on the data axis: each takes one sequence
    placed = sharding.place({"model": model}, model.config, devices)["model"]
    rows = sharding.batch_sharding(devices)
    sharded = eval_loss(placed, jax.device_put(x, rows), jax.device_put(y, rows))
    same, difference = close(sharded, single)
    if not same:
        raise AssertionError(f"the loss on {jax.device_count()} devices differs by {difference:.3g}")
    return f"the loss on a mesh of {jax.device_count()} devices is one device's ({difference:.1e})"


def one_line(error: Exception) -> str:
    """An exception as one line: a failed property's own reason, or the exception's first line."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (text if isinstance(error, AssertionError) else f"{type(error).__name__}: {text}")[:400]


def run(name: str, prove: Callable[[], str]) -> bool:
    """Runs one property; prints `pass  name: what held` or `fail  name: why`, one line."""
    try:
        print(f"pass  {name}: {prove()}")
        return True
    except Exception as error:  # a broken component fails its property, whatever it raises
        print(f"fail  {name}: {one_line(error)}")
        return False


@report_user_errors
def main():
    settings = configure(globals(), preset=archs.preset_settings, models=True, listing=registries.describe,
                         borrowed=vars(train))
    train.check_settings(settings)
    size, seed = min(settings["block_size"], check_block_size), settings["seed"]
    config = archs.config_from_settings(settings, vocab_size=model_vocab(settings["dataset"]), block_size=size,
                                        dropout=0.0)
    try:
        state = init_state(config, optimizer_from_settings(settings)[0], seed)
    except UserError:
        raise
    except Exception as error:
        print(f"fail  builds: {one_line(error)}")
        sys.exit(1)
    model = perturbed(state["model"], jax.random.key(seed + 1))
    idx = jax.random.randint(jax.random.key(seed + 2), (size,), 0, config.vocab_size)
    print(f"model {config.model!r} ({type(model).__name__}), {config.n_layer} layers, "
          f"{model.get_num_params() / 1e6:.2f}M parameters, block_size {size}")
    properties = {
        "causal": lambda: causal(model, idx),
        "cache": lambda: cached_decode(model, idx),
        "generate": lambda: cached_generation(model, idx),
        "gradients": lambda: gradients(model, idx),
        "loss": lambda: chunked_loss(model, idx),
        "checkpoint": lambda: round_trip(model, idx, config, settings),
        "optimizer": lambda: optimizer_groups(model, settings),
        "hf export": lambda: hf_export(model, idx),
        "mesh": lambda: data_parallel(model, idx),
    }
    held = sum(run(name, prove) for name, prove in properties.items())
    print(f"{held} of {len(properties)} properties hold")
    sys.exit(0 if held == len(properties) else 1)


if __name__ == "__main__":
    main()
