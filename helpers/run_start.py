"""Where a training run starts: a new model, its own checkpoint (resume), or GPT-2's weights."""

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import optax

from helpers import archs, checkpoint, hf
from helpers.data import model_vocab_size
from helpers.errors import UserError
from helpers.tokenizer import tokenizer_name, tokenizer_sha256
from helpers.training import checkpoint_config, init_state, with_dropout
from model import RUN_FIELDS, GPTConfig


def resumed_config(settings: dict, header: dict, ckpt_path: Path, explicit: set[str], say: Callable) -> GPTConfig:
    """The checkpoint's architecture, with this run's dropout and way of running the layers
    (RUN_FIELDS), as nanoGPT takes dropout from the run. An architecture flag given explicitly
    that the checkpoint contradicts is an error, never silently dropped."""
    saved = checkpoint_config(header, ckpt_path)
    config = dataclasses.replace(saved, **{k: settings[k] for k in RUN_FIELDS})
    differ = [f"{k}={getattr(config, k)!r} (asked: {settings[k]!r})"
              for k in sorted(explicit & set(header["model_config"])) if settings[k] != getattr(config, k)]
    if differ:
        raise UserError(f"{ckpt_path} holds another architecture: {', '.join(differ)}; "
                        "drop those flags to resume it, or train a new model in another --out_dir")
    changed = [f"{k}={getattr(config, k)!r} (the checkpoint's: {getattr(saved, k)!r})"
               for k in RUN_FIELDS if getattr(config, k) != getattr(saved, k)]
    if changed:
        say(f"resuming with this run's {', '.join(changed)}")
    return config


def starting_state(settings: dict, meta: dict, optimizer: optax.GradientTransformation, ckpt_path: Path,
                   explicit: set[str], say: Callable) -> tuple[GPTConfig, dict, int, float]:
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
        config = resumed_config(settings, header, ckpt_path, explicit, say)
        # filter_eval_shape builds the state's shapes without computing anything.
        state = checkpoint.load(ckpt_path, eqx.filter_eval_shape(init_state, config, optimizer, settings["seed"]))
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
        pretrained = hf.load_gpt2(hf_dir, **{k: settings[k] for k in ("block_size", *RUN_FIELDS)})
        config = pretrained.config
    return config, init_state(config, optimizer, settings["seed"], pretrained), 0, math.inf
