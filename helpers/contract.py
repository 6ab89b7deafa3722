"""What the scripts need from a model, written down, and the one place a model is made.

train.py, sample.py, generation, the optimizer, checkpoints, sharding and the Hugging Face tools
use a model only through the methods below. A model class of your own (a GPT subclass, or one
written from scratch) and every component it is made of need exactly these pieces; `build_model`
refuses, in one line naming the missing piece, a class that lacks one, before any training.
docs/adding_a_model.md ("The contract") says the same in prose, with the cache rules.

The Protocols are documentation that the type checker also reads: nothing inherits from them.
"""

from typing import Any, Protocol

import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

import components  # noqa: F401 (the optional built-ins register their names: a config may use them)
from helpers.errors import UserError
from model import BLOCKS, MIXERS, MLPS, MODELS, NORMS, GPTConfig


class Model(Protocol):
    """A model class (registered in MODELS; GPT is one).

    Optional: a class attribute `cache_rewinds = False` on the model or any module inside it
    says that a cache cannot be rewound (cache rule 3); methods `weight_matrices()` and
    `hidden_matrices()` say which arrays the optimizer treats as matrices (helpers/optim.py);
    and methods `features(idx, *, key=None)` ((T, C) hidden states) and `head(x)` (their
    logits), with `model(idx) == head(features(idx))`, let the training loss run the head a few
    positions at a time (helpers/loss.py): without them it holds the whole logits.
    """

    config: GPTConfig  # sizes (block_size, vocab_size, ...) and the choices it was built from; static

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray): ...

    def __call__(self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T V"]:
        """Logits for one sequence (the step vmaps it over the batch); `key` drives dropout,
        None in inference mode."""

    def decode(self, idx: Int[Array, " T"], cache: Any, pos: Int[Array, ""]) -> tuple[Float[Array, "T V"], Any]:
        """Logits of the tokens at positions pos..pos+T-1 and the cache extended by them."""

    def empty_cache(self, dtype=jnp.float32) -> Any:
        """A cache (a PyTree of arrays) that has seen no token, with room for block_size."""

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters (for the run's description and MFU); non_embedding leaves out position
        embeddings, nanoGPT's convention."""


class Mixer(Protocol):
    """A mixer (MIXERS), or a block (BLOCKS): one layer's part in generation as in training."""

    def __init__(self, config: GPTConfig, spec: dict): ...

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]: ...

    def decode(self, x: Float[Array, "T C"], cache: Any, layer: Int[Array, ""], pos: Int[Array, ""]) -> tuple[Float[Array, "T C"], Any]:
        """Layer `layer`'s output for positions pos..pos+T-1; reads and extends its slice of
        the cache (the cache of a stack of `layers` alike layers, or its own)."""

    def empty_cache(self, layers: int, length: int, dtype=jnp.float32) -> Any:
        """A cache for `layers` layers like this one, with room for `length` positions."""


class MLP(Protocol):
    """An MLP (MLPS): what each position computes on its own."""

    def __init__(self, config: GPTConfig, spec: dict): ...

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]: ...


class Norm(Protocol):
    """A norm (NORMS)."""

    def __init__(self, config: GPTConfig, spec: dict): ...

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]: ...


class ContractError(UserError):
    """A model class or component that lacks a piece the scripts need."""


def methods(protocol: type) -> list[str]:
    """The methods a class needs to meet `protocol` (its constructor aside)."""
    return [name for name, value in vars(protocol).items() if callable(value) and name not in ("__init__", "__subclasshook__")
            and (not name.startswith("_") or name == "__call__")]


def lacks(cls: type, protocol: type) -> list[str]:
    """The methods of `protocol` that `cls` does not have."""
    # Looked up in the class and its bases only: getattr would find the metaclass's __call__.
    return [name for name in methods(protocol) if not any(callable(vars(base).get(name)) for base in cls.__mro__)]


def check_contract(config: GPTConfig) -> None:
    """Refuse, naming the piece, any class `config` uses that lacks part of the contract."""
    classes = [("model", config.model, MODELS[config.model], Model), ("norm", config.norm, NORMS[config.norm], Norm)]
    for spec in config.layer_specs():
        classes += [(kind, spec[kind], registry[spec[kind]], protocol) for kind, registry, protocol in
                    (("block", BLOCKS, Mixer), ("mixer", MIXERS, Mixer), ("mlp", MLPS, MLP), ("norm", NORMS, Norm))]
    for kind, name, cls, protocol in classes:
        if missing := lacks(cls, protocol):
            raise ContractError(f"{kind} {name!r} ({cls.__qualname__}) lacks {', '.join(missing)}: every {kind} needs "
                                f"{', '.join(methods(protocol))} (helpers/contract.py, docs/adding_a_model.md)")


def build_model(config: GPTConfig, key: PRNGKeyArray):
    """The model `config` describes, drawn from `key`: the registered class its `model` names,
    built once its classes are checked against the contract."""
    check_contract(config)
    model = MODELS[config.model](config, key=key)
    if getattr(model, "config", None) != config:
        raise ContractError(f"model {config.model!r} ({type(model).__qualname__}) does not keep its config as "
                            "self.config: the scripts read its sizes there")
    return model
