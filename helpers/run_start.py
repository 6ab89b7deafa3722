"""Where a training run starts: a new model, its own checkpoint (resume), or GPT-2's weights."""

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import optax

from helpers import archs, checkpoint, hf, optim
from helpers.data import model_vocab_size
from helpers.errors import UserError
from helpers.registry import OPTIONS, unused_option
from helpers.tokenizer import tokenizer_name, tokenizer_sha256
from helpers.training import checkpoint_config, init_state, with_dropout
from model import RUN_FIELDS, GPTConfig


def asked(settings: dict) -> dict:
    """The model fields and options this run asks for, with their values: those a config file or
    the command line set (configurator.Settings.explicit) and those of its --arch preset, with
    n_layer following a list of layers as it does for a new model."""
    explicit = set(getattr(settings, "explicit", ()))
    preset = archs.ARCHS[settings["arch"]]() if settings.get("arch") else {}
    fields = {f.name for f in dataclasses.fields(GPTConfig)} | set(OPTIONS)
    values = {k: settings[k] for k in (explicit | set(preset)) & set(settings) & fields}
    try:
        return archs.with_layer_count(values, explicit)
    except ValueError as error:
        raise UserError(str(error)) from None


def continued_config(saved: GPTConfig, settings: dict, source: str, say: Callable, run_fields=RUN_FIELDS) -> GPTConfig:
    """The architecture `source` holds (a checkpoint, or Hugging Face weights), with this run's
    `run_fields` (dropout and how the layers run, as nanoGPT takes dropout from the run). A
    field or option this run asks for that the saved model contradicts, or does not use, is an
    error, never silently dropped."""
    config = dataclasses.replace(saved, **{k: settings[k] for k in run_fields})
    held = config.as_dict()
    wanted = {k: v for k, v in asked(settings).items() if k not in run_fields}
    if unused := sorted(set(wanted) - set(held)):
        raise UserError(f"{source}: {unused_option(unused[0], 'its model')}: drop {', '.join(unused)} to continue from it")
    differ = [f"{k}={held[k]!r} (asked: {v!r})" for k, v in sorted(wanted.items()) if v != held[k]]
    if differ:
        raise UserError(f"{source} holds another architecture: {', '.join(differ)}; drop those settings to "
                        "continue from it, or train a new model in another --out_dir")
    changed = [f"{k}={getattr(config, k)!r} (the saved model's: {getattr(saved, k)!r})"
               for k in run_fields if getattr(config, k) != getattr(saved, k)]
    if changed:
        say(f"continuing with this run's {', '.join(changed)}")
    return config


def resumed_state(ckpt_path: Path, header: dict, config: GPTConfig, settings: dict,
                  optimizer: optax.GradientTransformation, say: Callable) -> dict:
    """The training state in a checkpoint, with an optimizer state for this run's optimizer:
    read as the checkpoint's optimizer settings shaped it, then, where this run's settings
    shape it otherwise (another optimizer, clipping or skipping turned on or off, other
    Newton-Schulz coefficients), converted, and the conversion announced."""
    saved = optim.saved_state_settings(header.get("settings", {}))
    saved_optimizer, _ = optim.optimizer_from_settings(settings | saved)
    # filter_eval_shape builds the state's shapes without computing anything.
    like = eqx.filter_eval_shape(init_state, config, saved_optimizer, settings["seed"])
    state = checkpoint.load(ckpt_path, like)
    wanted = eqx.filter_eval_shape(optimizer.init, eqx.filter(state["model"], eqx.is_array))
    if not optim.same_layout(wanted, like["opt_state"]):
        fresh = optimizer.init(eqx.filter(state["model"], eqx.is_array))
        iter_num = header["iter_num"]
        state["opt_state"], carried, step = optim.carried_over(state["opt_state"], fresh, iter_num)
        muon = "muon" in (saved["optimizer"], settings["optimizer"])  # else Muon's settings shape nothing
        changes = ", ".join(f"{name} {saved[name]!r} -> {settings[name]!r}" for name in saved
                            if saved[name] != settings[name] and (muon or not name.startswith("muon_")))
        total = len(jax.tree.leaves(fresh))
        kept = (f"kept all {total} of its arrays" if carried == total else
                f"kept what carries over ({carried} of {total} arrays), started the rest afresh")
        behind = f", {iter_num - step} skipped updates behind iteration {iter_num}" if step != iter_num else ""
        say(f"the optimizer state in {ckpt_path} was made for other settings ({changes}): {kept}; the "
            f"learning-rate schedule continues at its step {step}{behind}")
    return state


def starting_state(settings: dict, meta: dict, optimizer: optax.GradientTransformation, ckpt_path: Path,
                   say: Callable) -> tuple[GPTConfig, dict, int, float]:
    """The model config, the training state (as `init_state` makes it), the iteration to start
    from and the best val loss so far, for settings["init_from"]: scratch, resume, or GPT-2
    weights (a name from the local Hugging Face cache, or a directory)."""
    init_from = settings["init_from"]
    if init_from == "resume":
        header = checkpoint.read_header(ckpt_path)
        if "tokenizer" in header and tokenizer_sha256(header["tokenizer"]) != tokenizer_sha256(meta):
            fix = ("prepare the data from the text the checkpoint was trained on"
                   if header["tokenizer"]["tokenizer"] == "char"  # a character vocabulary is the text's own
                   else f"prepare the data with the checkpoint's tokenizer (prepare.py --tokenizer={ckpt_path})")
            raise UserError(f"{ckpt_path} was trained with the tokenizer {tokenizer_name(header['tokenizer'])}, but "
                            f"dataset {settings['dataset']} uses {tokenizer_name(meta)}: {fix}, or train a new model")
        config = continued_config(checkpoint_config(header, ckpt_path), settings, str(ckpt_path), say)
        state = resumed_state(ckpt_path, header, config, settings, optimizer, say)
        saved_seed = header.get("settings", {}).get("seed", settings["seed"])
        if settings["seed"] != saved_seed:  # the batches' order and the dropout keys come from the checkpoint
            say(f"continuing with the random state the checkpoint holds (seed {saved_seed}): seed={settings['seed']} "
                "applies to new runs")
        # The file holds the dropout rate the model trained with (a float beside the arrays).
        state["model"] = with_dropout(state["model"], config.dropout)
        say(f"resuming from {ckpt_path} at iteration {header['iter_num']}")
        return config, state, header["iter_num"], header["best_val_loss"]
    pretrained = None
    if init_from == "scratch":
        config = archs.config_from_settings(settings, vocab_size=model_vocab_size(meta))
    else:
        hf_dir = hf.resolve(init_from)
        say(f"initialising from {hf_dir}")
        # As a resume, except that a shorter block_size is this run's too: the first position
        # embeddings are kept (nanoGPT's crop_block_size).
        config = continued_config(hf.read_config(hf_dir), settings, str(hf_dir), say, ("block_size", *RUN_FIELDS))
        pretrained = hf.load_gpt2(hf_dir, config.block_size, config.dropout, config.scan_layers, config.scan_unroll)
    return config, init_state(config, optimizer, settings["seed"], pretrained), 0, math.inf
