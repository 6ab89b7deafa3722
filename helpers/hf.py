"""Hugging Face GPT-2 checkpoints, in and out, without torch.

A Hugging Face GPT-2 directory holds config.json and model.safetensors (or several shards named
by model.safetensors.index.json). Our parameter names are GPT-2's own, so the map between the
two is short, and kept as data below: their blocks are numbered (h.0., h.1., ...) where ours
are stacked; their four projections are Conv1D layers, whose weight is (in, out), the
transpose of our Linear's (out, in); their causal-mask buffers are dropped; their head is
tied to wte, like ours.

pytorch_model.bin files are pickles, and no load path here unpickles anything: convert such a
checkpoint to safetensors first (see the error message).
"""

import dataclasses
import functools
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from helpers.errors import UserError
from model import GPT, GPTConfig

GPT2_NAMES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
GPT2_EOT_ID = 50256

TOP_PARAMS = ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias")
BLOCK_PARAMS = (
    "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
    "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias",
)
CONV1D_WEIGHTS = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal masks, not parameters
OPTIONAL_PREFIX = "transformer."
TIED_HEAD = "lm_head.weight"

# config.json fields that must hold these values for the checkpoint to be this architecture.
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # both GPT-2's tanh-approximated GELU
REQUIRED_FLAGS = {
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "tie_word_embeddings": True,
    "add_cross_attention": False,
}


class HFError(UserError):
    """A Hugging Face directory that cannot be read as (or written from) a GPT-2."""


def read_config(hf_dir: Path) -> GPTConfig:
    """Our config for an HF GPT-2 config.json; anything we cannot reproduce exactly is refused."""
    path = Path(hf_dir) / "config.json"
    if not path.is_file():
        raise HFError(f"{path} is missing: a Hugging Face GPT-2 directory needs config.json")
    hf = json.loads(path.read_text())
    problems = []
    if hf.get("model_type", "gpt2") != "gpt2":
        problems.append(f"model_type is {hf['model_type']!r}, not 'gpt2'")
    if hf.get("activation_function", "gelu_new") not in GPT2_ACTIVATIONS:
        problems.append(f"activation_function {hf['activation_function']!r} (supported: {', '.join(GPT2_ACTIVATIONS)})")
    for flag, wanted in REQUIRED_FLAGS.items():
        if hf.get(flag, wanted) != wanted:
            problems.append(f"{flag}={hf[flag]!r} (only {wanted!r} is supported)")
    if hf.get("n_inner") not in (None, 4 * hf.get("n_embd", 0)):
        problems.append(f"n_inner={hf['n_inner']} (only 4 * n_embd is supported)")
    if problems:
        raise HFError(f"{path} describes a model this GPT cannot reproduce: " + "; ".join(problems))
    try:
        return GPTConfig(
            block_size=hf["n_positions"], vocab_size=hf["vocab_size"], n_layer=hf["n_layer"],
            n_head=hf["n_head"], n_embd=hf["n_embd"], bias=True, mlp="gelu",
            options={"eps": hf.get("layer_norm_epsilon", 1e-5)},  # the norms' epsilon
        )
    except (KeyError, ValueError) as error:
        raise HFError(f"{path}: {type(error).__name__} {error}") from None


def read_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor in the directory's safetensors file or shards, as numpy arrays."""
    from safetensors.numpy import load_file

    hf_dir = Path(hf_dir)
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (hf_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    elif (hf_dir / "pytorch_model.bin").is_file():
        raise HFError(
            f"{hf_dir} holds only pytorch_model.bin, a pickle, which is never loaded here: convert "
            "it once with transformers (GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir, "
            "safe_serialization=True)) to get model.safetensors"
        )
    else:
        raise HFError(f"{hf_dir} has no model.safetensors (or model.safetensors.index.json)")
    tensors = {}
    for name in files:
        if not (hf_dir / name).is_file():
            raise HFError(f"shard {hf_dir / name} named by the index is missing")
        tensors.update(load_file(hf_dir / name))
    return tensors


def expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The HF names and shapes a GPT-2 of this config stores."""
    C, V = config.n_embd, config.vocab_size
    block = {
        "ln_1.weight": (C,), "ln_1.bias": (C,), "attn.c_attn.weight": (C, 3 * C),
        "attn.c_attn.bias": (3 * C,), "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
        "ln_2.weight": (C,), "ln_2.bias": (C,), "mlp.c_fc.weight": (C, 4 * C),
        "mlp.c_fc.bias": (4 * C,), "mlp.c_proj.weight": (4 * C, C), "mlp.c_proj.bias": (C,),
    }
    shapes = {"wte.weight": (V, C), "wpe.weight": (config.block_size, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(config.n_layer):
        shapes.update({f"h.{i}.{name}": shape for name, shape in block.items()})
    return shapes


def normalise_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop the optional "transformer." prefix, the mask buffers and a tied lm_head."""
    out = {}
    for name, array in tensors.items():
        name = name.removeprefix(OPTIONAL_PREFIX)
        if name.endswith(BUFFER_SUFFIXES):
            continue
        out[name] = array
    head = out.pop(TIED_HEAD, None)
    if head is not None and "wte.weight" in out and not np.array_equal(head, out["wte.weight"]):
        raise HFError("lm_head.weight differs from wte.weight: untied heads are not supported")
    return out


def get_path(tree, dotted: str):
    return functools.reduce(getattr, dotted.split("."), tree)


def load_gpt2(hf_dir: Path, block_size: int | None = None, dropout: float = 0.0, scan_layers: bool = True,
              scan_unroll: int = 1) -> GPT:
    """Our GPT holding an HF GPT-2 checkpoint's weights (fp32).

    block_size below the checkpoint's n_positions keeps only the first position embeddings
    (nanoGPT's crop_block_size); dropout and how the layers run (scan_layers, scan_unroll) are
    ours to choose, as in nanoGPT.
    """
    config = read_config(hf_dir)
    tensors = normalise_names(read_tensors(hf_dir))
    shapes = expected_shapes(config)
    missing = sorted(set(shapes) - set(tensors))
    unexpected = sorted(set(tensors) - set(shapes))
    misshaped = [f"{k} {tuple(tensors[k].shape)} (expected {shapes[k]})"
                 for k in sorted(set(shapes) & set(tensors)) if tuple(tensors[k].shape) != shapes[k]]
    if missing or unexpected or misshaped:
        parts = [f"{label}: {', '.join(items[:20])}{' ...' if len(items) > 20 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)) if items]
        raise HFError(f"{hf_dir} is not a GPT-2 of the shape its config.json describes; " + "; ".join(parts))

    block_size = block_size or config.block_size
    if block_size > config.block_size:
        raise HFError(f"block_size {block_size} exceeds the checkpoint's n_positions {config.block_size}")
    arrays = {name: np.asarray(tensors[name], np.float32) for name in TOP_PARAMS}
    arrays["wpe.weight"] = arrays["wpe.weight"][:block_size]
    for name in BLOCK_PARAMS:
        layers = [tensors[f"h.{i}.{name}"] for i in range(config.n_layer)]
        if name in CONV1D_WEIGHTS:
            layers = [layer.T for layer in layers]
        arrays[f"h.{name}"] = np.stack(layers).astype(np.float32)

    config = dataclasses.replace(config, block_size=block_size, dropout=dropout, scan_layers=scan_layers,
                                 scan_unroll=scan_unroll)
    # The skeleton has shapes only (eval_shape): no random init for weights about to be replaced.
    skeleton = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0))
    names = list(arrays)
    return eqx.tree_at(lambda m: [get_path(m, n) for n in names], skeleton, [jax.numpy.asarray(arrays[n]) for n in names])


def save_gpt2(model: GPT, out_dir: Path, vocab_size: int | None = None) -> None:
    """Write `model` as an HF GPT-2 directory that GPT2LMHeadModel.from_pretrained loads.

    Only a model GPT-2 expresses exactly exports: our own GPT class (no subclass: it may
    compute anything), GELU, LayerNorm, learned positions, full multi-head attention; anything
    else is refused, so an export never loads in transformers as a different model. A model
    without biases exports zero biases, which compute the same thing. vocab_size, when the
    model's head is padded past its tokenizer's vocabulary, keeps only the tokenizer's rows, so
    the export pairs with that tokenizer.
    """
    from safetensors.numpy import save_file

    config = model.config
    if type(model) is not GPT:
        raise HFError(f"GPT-2 cannot express model {config.model!r} ({type(model).__qualname__}): only model.GPT "
                      "itself exports, since a class of its own may compute what GPT-2 does not")
    gpt2_choices = {"mlp": "gelu", "norm": "layernorm", "position": "learned", "block": "sequential",
                    "mixer": "attention", "window": 0, "qk_norm": False, "softcap": 0.0, "tie_head": True, "model": "gpt"}
    differ = [f"{k}={getattr(config, k)!r}" for k, v in gpt2_choices.items() if getattr(config, k) != v]
    if any(spec != config.spec() for spec in config.layer_specs()):  # a layer unlike the others
        differ.append(f"layers={config.layers!r}")
    if config.kv_heads != config.n_head:
        differ.append(f"n_kv_head={config.n_kv_head}")
    differ += [f"{k}={v!r}" for k, v in config.options if k != "eps"]
    if differ:
        raise HFError(f"GPT-2 cannot express this model ({', '.join(differ)}); only GPT-2's own "
                      f"architecture exports: {', '.join(f'{k}={v!r}' for k, v in gpt2_choices.items())}")
    tensors = {}
    for name in TOP_PARAMS:
        tensors[name] = _array_or_zeros(get_path(model, name), (config.n_embd,))
    vocab_size = vocab_size or config.vocab_size
    tensors["wte.weight"] = tensors["wte.weight"][:vocab_size]
    for name in BLOCK_PARAMS:
        stacked = get_path(model.h, name)
        if stacked is None:  # a bias=False model: GPT-2 has biases, so they are zeros
            # Shaped like the weight's output axis: (L, out, in) for Linear, (L, C) for LayerNorm.
            owner = get_path(model.h, name.rsplit(".", 1)[0] + ".weight")
            stacked = np.zeros((config.n_layer, owner.shape[1]), np.float32)
        for i in range(config.n_layer):
            layer = np.asarray(stacked[i], np.float32)
            tensors[f"h.{i}.{name}"] = np.ascontiguousarray(layer.T if name in CONV1D_WEIGHTS else layer)
    hf_config = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "n_positions": config.block_size, "n_ctx": config.block_size, "vocab_size": vocab_size,
        "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
        "layer_norm_epsilon": config.option("eps"), "tie_word_embeddings": True,
    }
    if vocab_size > GPT2_EOT_ID:  # GPT-2's vocabulary: its end-of-text token
        hf_config |= {"bos_token_id": GPT2_EOT_ID, "eos_token_id": GPT2_EOT_ID}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Each file is written beside its final name and renamed into place: never half a file.
    save_file(tensors, out_dir / "model.safetensors.tmp", metadata={"format": "pt"})
    os.replace(out_dir / "model.safetensors.tmp", out_dir / "model.safetensors")
    (out_dir / "config.json.tmp").write_text(json.dumps(hf_config, indent=1) + "\n")
    os.replace(out_dir / "config.json.tmp", out_dir / "config.json")


def _array_or_zeros(array, shape) -> np.ndarray:
    return np.asarray(array, np.float32) if array is not None else np.zeros(shape, np.float32)


def hf_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloaded models, by its environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return [home / "hub"]


def resolve(init_from: str) -> Path:
    """The directory for init_from: a path to an HF directory, or a GPT-2 name looked up in
    the local Hugging Face cache. Nothing is downloaded."""
    path = Path(init_from).expanduser()
    if path.is_dir():
        return path
    if init_from not in GPT2_NAMES:
        raise HFError(
            f"init_from={init_from!r} is neither a directory nor one of: scratch, resume, {', '.join(GPT2_NAMES)}"
        )
    for cache in hf_cache_dirs():
        snapshots = cache / f"models--{init_from}" / "snapshots"
        ref = cache / f"models--{init_from}" / "refs" / "main"
        candidates = [snapshots / ref.read_text().strip()] if ref.is_file() else []
        candidates += sorted(snapshots.glob("*")) if snapshots.is_dir() else []
        for snapshot in candidates:
            if (snapshot / "config.json").is_file() and (
                (snapshot / "model.safetensors").is_file() or (snapshot / "model.safetensors.index.json").is_file()
            ):
                return snapshot
    raise HFError(
        f"no local copy of {init_from}'s weights (looked in {', '.join(map(str, hf_cache_dirs()))}); "
        f"nothing is downloaded silently: fetch them once with `huggingface-cli download {init_from} "
        "config.json model.safetensors`, or pass --init_from=PATH to a directory holding those two files"
    )


if __name__ == "__main__":
    import sys

    from configurator import run_config_file
    from helpers.errors import report_user_errors
    from helpers.training import load_trained_model

    @report_user_errors
    def export(args: list[str]) -> None:
        """python -m helpers.hf [FILE.py ...] OUT_DIR HF_DIR: a training run's model as an HF GPT-2
        directory. FILE.py: the files that register the run's components, as train.py was given."""
        *files, out_dir, hf_dir = args if len(args) >= 2 else ("", "")
        if not out_dir or any(not f.endswith(".py") for f in files):
            raise UserError("usage: python -m helpers.hf [FILE.py ...] OUT_DIR HF_DIR (the files that register the "
                            "run's components, as train.py was given them; the run's folder; the new directory)")
        for file in files:
            run_config_file(file)
        model, header = load_trained_model(Path(out_dir))
        save_gpt2(model, Path(hf_dir), header.get("tokenizer", {}).get("vocab_size"))
        print(f"wrote {hf_dir}/config.json and model.safetensors")

    export(sys.argv[1:])
