"""A GPT language model in JAX + Equinox, written to be read top to bottom.

The story: a config says how big the model is; a block is attention then an MLP, each behind
a LayerNorm and added back to a residual stream; a GPT is token and position embeddings, a
stack of blocks, a final LayerNorm and a head that reuses the token embedding matrix. Last,
`GPT.decode` runs the same model a few tokens at a time against a KV cache, for generation.

Three ways this differs from the PyTorch original (nanoGPT), each explained where it happens:
- a model is an immutable PyTree: "changing" it (init, an optimizer update) builds a new one;
- randomness is explicit: every function that needs it (init, dropout) takes a PRNG key;
- the forward pass handles ONE sequence; the training step maps it over the batch with `jax.vmap`.

This file is the plain math, and what runs on a GPU. Training on a CPU runs the same model
through the CPU fast path (helpers/cpu_fast_path.py): it swaps a few of the pieces below for
subclasses that compute the same values and gradients in a form XLA's CPU backend runs faster
(the batch folded into each matmul, the norms' gradient written out, attention in blocks of
queries), and tests check that each equals the piece it replaces.
"""

import dataclasses
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Every choice that fixes the model: sizes, and which component fills each role (by name,
    from the registries below). Frozen, so it can be hashed and compared."""

    block_size: int = 1024  # the longest sequence the model can see
    vocab_size: int = 50304  # GPT-2's 50257, padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and norms, as GPT-2 has
    n_kv_head: int = 0  # key/value heads: 0 means n_head (multi-head), 1 multi-query, else grouped
    mixer: str = "attention"  # how positions exchange information: a name from MIXERS
    mlp: str = "swiglu"  # a name from MLPS
    norm: str = "layernorm"  # a name from NORMS
    position: str = "learned"  # learned, rope or none
    block: str = "sequential"  # a name from BLOCKS
    window: int = 0  # attend to at most this many latest positions (sliding window); 0: all
    multiple_of: int = 1  # round the SwiGLU width up to a multiple of this (LLaMA: 256)
    rope_theta: float = 10000.0  # the base of the rotary frequencies
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before their dot product
    softcap: float = 0.0  # logits squashed into (-softcap, softcap) by a tanh; 0: off
    tie_head: bool = True  # the output head is the token embedding matrix (GPT-2); False: a matrix of its own
    zero_init_residual: bool = False  # the residual projections (c_proj) start at zero: each block starts as the identity
    layers: tuple[str, ...] = ()  # per-layer overrides, e.g. ("conv", "mixer=attention,window=64"); () for none
    model: str = "gpt"  # the class that puts it all together: a name from MODELS (GPT, or a registered subclass)
    # How the stack runs, not what it computes: scanned (one compiled layer, so compile time stays
    # flat in depth) or unrolled; and what the backward pass keeps of each layer, a name from
    # REMAT_POLICIES (anything but "none" trades compute for memory). docs/performance.md has
    # which is faster where.
    scan_layers: bool = True
    remat: str = "none"

    def __post_init__(self):
        # A config read back from JSON has a list here; a tuple keeps the config hashable.
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "multiple_of"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                f"pick n_embd a multiple of n_head (for example {self.n_head * 64})"
            )
        if self.n_kv_head < 0 or self.n_head % self.kv_heads:
            raise ValueError(f"n_kv_head={self.n_kv_head} must divide n_head={self.n_head} (0 means n_head)")
        if self.softcap < 0:
            raise ValueError(f"softcap must be positive (or 0 for none), got {self.softcap!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}; valid names: {', '.join(POSITIONS)}")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"rope needs an even head size, got {self.head_size}")
        NORMS.check(self.norm)
        MODELS.check(self.model)
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"unknown remat {self.remat!r}; valid names: {', '.join(REMAT_POLICIES)}")
        if self.layers and len(self.layers) != self.n_layer:
            raise ValueError(f"layers lists {len(self.layers)} layer specs but n_layer={self.n_layer}")
        self.layer_specs()  # checks every per-layer name

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    def layer_specs(self) -> list[dict]:
        """What each layer is made of: the config's choices, with that layer's overrides.

        A spec is "NAME" (the mixer) or "key=value,..." over the keys mixer, mlp, block, window.
        """
        default = {"mixer": self.mixer, "mlp": self.mlp, "block": self.block, "window": self.window}
        specs = []
        for text in self.layers or [""] * self.n_layer:
            spec = dict(default)
            for part in filter(None, text.split(",")):
                key, eq, value = part.partition("=")
                if not eq:
                    key, value = "mixer", key
                if key not in default:
                    raise ValueError(f"layer spec {text!r}: unknown option {key!r}; accepted: {', '.join(default)}")
                if key == "window" and not value.isdigit():
                    raise ValueError(f"layer spec {text!r}: window must be a whole number, got {value!r}")
                spec[key] = int(value) if key == "window" else value
            for key, registry in (("mixer", MIXERS), ("mlp", MLPS), ("block", BLOCKS)):
                registry.check(spec[key])
            specs.append(spec)
        return specs


# The fields that shape no parameter: how much dropout, how the stack runs. A resumed run takes
# them from its own settings (as nanoGPT takes dropout), the rest from the checkpoint.
RUN_FIELDS = ("dropout", "scan_layers", "remat")


class Registry(dict):
    """Components by name. A new one registers with one line, `@MIXERS.register("name")`, from
    any file; a wrong name fails listing the valid ones."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def add(component):
            if self.get(name, component) is not component:
                raise ValueError(f"{self.kind} {name!r} is already registered to {self[name].__name__}")
            self[name] = component
            return component

        return add

    def check(self, name: str) -> None:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self)}")


MIXERS, MLPS, NORMS, BLOCKS = Registry("mixer"), Registry("mlp"), Registry("norm"), Registry("block")
# The GPT itself is a component too: a checkpoint names its class, so a subclass that changes
# a step (docs/adding_a_model.md) is rebuilt as itself, never silently as a plain GPT.
MODELS = Registry("model")
POSITIONS = ("learned", "rope", "none")
# Gradient checkpointing: what the backward pass may keep of each layer's forward pass; the
# rest it recomputes from the layer's input. PyTorch's torch.utils.checkpoint keeps only the
# inputs; `jax.checkpoint` takes a policy, so a layer can keep its matmuls, the costly part, and
# recompute only the cheap elementwise work (norms, activations, softmax) around them.
REMAT_POLICIES = {
    "none": None,  # keep everything: no recomputation, the most memory
    "dots": jax.checkpoint_policies.dots_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,  # keep only each layer's input
}


# ---------------------------------------------------------------------------------------------
# The small pieces. Each holds its parameters as fields; calling it is a pure function.


class Linear(eqx.Module):
    """y = x W^T + b on a whole (T, C) sequence at once: one matmul, not a vmap over positions.

    Weights are created as zeros; `init_weights` below draws them. The layout is PyTorch's
    (out, in), so nanoGPT checkpoints map onto it directly.
    """

    weight: Float[Array, "out in"]
    bias: Float[Array, " out"] | None

    def __init__(self, in_features: int, out_features: int, bias: bool):
        self.weight = jnp.zeros((out_features, in_features))
        self.bias = jnp.zeros((out_features,)) if bias else None

    def __call__(self, x: Float[Array, "T in"]) -> Float[Array, "T out"]:
        y = x @ self.weight.T
        return y if self.bias is None else y + self.bias


class Embedding(eqx.Module):
    """A lookup table: row i is the vector for token (or position) i."""

    weight: Float[Array, "num dim"]

    def __init__(self, num: int, dim: int):
        self.weight = jnp.zeros((num, dim))

    def __call__(self, idx: Int[Array, " T"]) -> Float[Array, "T dim"]:
        return self.weight[idx]

    def unembed(self, x: Float[Array, "T dim"]) -> Float[Array, "T num"]:
        """The table read the other way: how well each vector matches every row (the output
        head, when the token table is tied to it)."""
        return x @ self.weight.T


@NORMS.register("layernorm")
class LayerNorm(eqx.Module):
    """LayerNorm with an optional bias (PyTorch's has no such switch), always computed in fp32."""

    weight: Float[Array, " C"]
    bias: Float[Array, " C"] | None
    eps: float = eqx.field(static=True)

    def __init__(self, dim: int, bias: bool, eps: float = 1e-5):
        self.weight = jnp.ones((dim,))
        self.bias = jnp.zeros((dim,)) if bias else None
        self.eps = eps

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        """Each row minus its mean, divided by its standard deviation."""
        x = x - x.mean(-1, keepdims=True)
        return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + self.eps)

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        # Normalising in bf16 loses too much precision, so statistics are taken in fp32.
        y = self.normalize(x.astype(jnp.float32)) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.astype(x.dtype)


def rms_normalize(x: Float[Array, "*N C"], eps: float = 1e-5) -> Float[Array, "*N C"]:
    """Each vector along the last axis divided by its root mean square."""
    return x * jax.lax.rsqrt(jnp.square(x).mean(-1, keepdims=True) + eps)


@NORMS.register("rmsnorm")
class RMSNorm(eqx.Module):
    """LLaMA's norm: scale by the root mean square only (no mean, no bias), in fp32."""

    weight: Float[Array, " C"]
    eps: float = eqx.field(static=True)

    def __init__(self, dim: int, bias: bool, eps: float = 1e-5):
        del bias  # RMSNorm has none; the argument keeps every norm built the same way
        self.weight = jnp.ones((dim,))
        self.eps = eps

    def normalize(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        return rms_normalize(x, self.eps)

    def __call__(self, x: Float[Array, "T C"]) -> Float[Array, "T C"]:
        return (self.normalize(x.astype(jnp.float32)) * self.weight).astype(x.dtype)


def rotate(x: Float[Array, "T H D"], positions: Int[Array, " T"], theta: float) -> Float[Array, "T H D"]:
    """Rotary position embedding (RoPE): turn each feature pair (i, i + D/2) by an angle that
    grows with the position, so that q . k depends only on how far apart two positions are."""
    half = x.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[:, None].astype(jnp.float32) * freqs  # (T, D/2)
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]
    x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1).astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# Mixers: how positions exchange information. Each one runs a whole sequence (training) or a
# few new positions against a cache of the earlier ones (generation, `decode`).


class KVCache(eqx.Module):
    """Attention's keys and values for every position so far, preallocated to block_size.

    Stacked like the layers that use it, one slice each; layer i reads and writes slice i.
    """

    k: Float[Array, "L Hkv S D"]
    v: Float[Array, "L Hkv S D"]


def causal_mask(queries: Int[Array, " T"], keys: Int[Array, " S"], window: int) -> Bool[Array, "T S"]:
    """Which key positions each query position may look at: itself and earlier ones, and with
    a window only the latest `window` of those."""
    visible = keys[None, :] <= queries[:, None]
    if window:
        visible &= keys[None, :] > queries[:, None] - window
    return visible


def attend(
    q: Float[Array, "T H D"], k: Float[Array, "S Hkv D"], v: Float[Array, "S Hkv D"], visible: Bool[Array, "T S"]
) -> tuple[Float[Array, "T H D"], Float[Array, "H T S"]]:
    """Scaled dot-product attention: each query's softmax weights over the keys it may see,
    and the values mixed by them (returned with the weights, for looking at).

    With fewer key/value heads than query heads (GQA), query head h reads key/value head
    h // group: the queries are grouped by their key head rather than the keys copied per
    query head. Heads go first so that every product is one matmul per head; the scores and
    the softmax are fp32 even for bf16 inputs.
    """
    T, H, D = q.shape
    Hkv = k.shape[1]
    q = q.reshape(T, Hkv, H // Hkv, D).transpose(1, 2, 0, 3)  # (Hkv, group, T, D)
    k, v = k.transpose(1, 0, 2), v.transpose(1, 0, 2)  # (Hkv, S, D)
    scores = jnp.einsum("kgtd,ksd->kgts", q, k, preferred_element_type=jnp.float32) / math.sqrt(D)
    weights = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)
    y = jnp.einsum("kgts,ksd->tkgd", weights.astype(v.dtype), v)
    return y.reshape(T, H, D), weights.reshape(H, T, -1)


def attention_implementation(backend: str, dtype, head_size: int) -> str:
    """Which kernel runs attention over a whole sequence. jax.nn.dot_product_attention left to
    itself picks XLA's version, which builds the whole T x T weight matrix, so the choice is
    made here: cuDNN's flash attention, which never builds it, on a GPU for the 16-bit inputs
    and head sizes (a multiple of 8, at most 128) it supports; XLA's everywhere else."""
    if backend == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16) and head_size % 8 == 0 and head_size <= 128:
        return "cudnn"
    return "xla"


@MIXERS.register("attention")
class CausalSelfAttention(eqx.Module):
    """Each position mixes in information from itself and the positions before it, never after.

    With n_kv_head < n_head, groups of query heads share one key/value head (grouped-query
    attention; multi-query at 1), which shrinks the KV cache. With a window, a position sees
    only that many latest positions.
    """

    c_attn: Linear  # queries for all heads, then keys and values, in one fused projection
    c_proj: Linear  # back to the residual stream; one of the two "residual projections"
    dropout: eqx.nn.Dropout
    n_head: int = eqx.field(static=True)
    kv_heads: int = eqx.field(static=True)
    window: int = eqx.field(static=True)
    rope_theta: float | None = eqx.field(static=True)  # None: no rotary embedding
    qk_norm: bool = eqx.field(static=True)

    def __init__(self, config: GPTConfig, spec: dict):
        kv_width = 2 * config.kv_heads * config.head_size
        self.c_attn = Linear(config.n_embd, config.n_embd + kv_width, config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)
        self.n_head, self.kv_heads, self.window = config.n_head, config.kv_heads, spec["window"]
        self.rope_theta = config.rope_theta if config.position == "rope" else None
        self.qk_norm = config.qk_norm

    def heads(
        self, x: Float[Array, "T C"], positions: Int[Array, " T"]
    ) -> tuple[Float[Array, "T H D"], Float[Array, "T Hkv D"], Float[Array, "T Hkv D"]]:
        """Queries, keys and values, split into heads (normalised with QK-norm, rotated with RoPE)."""
        T, C = x.shape
        D = C // self.n_head
        q, k, v = jnp.split(self.c_attn(x), [C, C + self.kv_heads * D], axis=-1)
        q, k, v = q.reshape(T, self.n_head, D), k.reshape(T, -1, D), v.reshape(T, -1, D)
        if self.qk_norm:
            # Unit-RMS queries and keys bound every score, whatever the weights grow to: the
            # softmax cannot saturate, so higher learning rates stay stable. In fp32, as the norms.
            q, k = (rms_normalize(a.astype(jnp.float32)).astype(a.dtype) for a in (q, k))
        if self.rope_theta is not None:
            q, k = rotate(q, positions, self.rope_theta), rotate(k, positions, self.rope_theta)
        return q, k, v

    @jax.named_scope("attn")
    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        q, k, v = self.heads(x, jnp.arange(x.shape[0]))
        y = self.causal_attention(q, k, v)
        # The fused kernel has no dropout on the attention weights, so (unlike nanoGPT) dropout
        # acts on the residual branches only, and both paths train the same model.
        return self.dropout(self.c_proj(y.reshape(x.shape)), key=key)

    def causal_attention(
        self, q: Float[Array, "T H D"], k: Float[Array, "T Hkv D"], v: Float[Array, "T Hkv D"]
    ) -> Float[Array, "T H D"]:
        """What `attend` computes for a whole sequence, by jax's fused kernel."""
        local = (self.window - 1, 0) if self.window else None  # the key itself and window - 1 before it
        implementation = attention_implementation(jax.default_backend(), q.dtype, q.shape[-1])
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local,
                                            implementation=implementation)

    def weights(self, x: Float[Array, "T C"]) -> Float[Array, "H T T"]:
        """The attention probabilities, for looking at: row i of head h says how much position
        i takes from each position."""
        positions = jnp.arange(x.shape[0])
        q, k, v = self.heads(x, positions)
        return attend(q, k, v, causal_mask(positions, positions, self.window))[1]

    @staticmethod
    def empty_cache(config: GPTConfig, n: int, dtype=jnp.float32) -> KVCache:
        shape = (n, config.kv_heads, config.block_size, config.head_size)
        return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))

    def decode(
        self, x: Float[Array, "T C"], cache: KVCache, layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], KVCache]:
        """Attention for T new tokens at positions pos..pos+T-1, against every earlier key.

        The new keys and values go into this layer's slice of the cache first; query i may
        then look at slots up to pos+i. Later slots hold stale or padding entries: masked.
        """
        T, C = x.shape
        positions = pos + jnp.arange(T)
        q, k, v = self.heads(x, positions)
        cache = KVCache(
            jax.lax.dynamic_update_slice(cache.k, k.swapaxes(0, 1)[None].astype(cache.k.dtype), (layer, 0, pos, 0)),
            jax.lax.dynamic_update_slice(cache.v, v.swapaxes(0, 1)[None].astype(cache.v.dtype), (layer, 0, pos, 0)),
        )
        keys, values = cache.k[layer].astype(q.dtype), cache.v[layer].astype(q.dtype)
        slots = jnp.arange(keys.shape[1])
        y, _ = attend(q, keys.swapaxes(0, 1), values.swapaxes(0, 1), causal_mask(positions, slots, self.window))
        return self.c_proj(y.reshape(T, C)), cache


class ConvCache(eqx.Module):
    """The causal convolution's memory: every input so far, after kernel_size - 1 zeros."""

    x: Float[Array, "L S C"]


@MIXERS.register("conv")
class CausalConv(eqx.Module):
    """A causal depthwise convolution: each channel mixes its own last kernel_size positions.

    Far cheaper than attention and purely local; interleaved with attention layers it makes a
    hybrid model. The kernel starts as the identity (each position sees only itself).
    """

    kernel: Float[Array, "K C"]
    c_proj: Linear
    dropout: eqx.nn.Dropout

    kernel_size = 4  # how many positions (this one and those before it) each output mixes

    def __init__(self, config: GPTConfig, spec: dict):
        self.kernel = jnp.zeros((self.kernel_size, config.n_embd)).at[0].set(1.0)
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def mix(self, padded: Float[Array, "P C"], T: int) -> Float[Array, "T C"]:
        """Output t from padded inputs t .. t + K - 1 (the input at t and the K - 1 before it)."""
        K = self.kernel.shape[0]
        return sum(self.kernel[j] * padded[K - 1 - j : K - 1 - j + T] for j in range(K))

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        padded = jnp.concatenate([jnp.zeros((self.kernel.shape[0] - 1, x.shape[1]), x.dtype), x])
        return self.dropout(self.c_proj(self.mix(padded, x.shape[0])), key=key)

    @staticmethod
    def empty_cache(config: GPTConfig, n: int, dtype=jnp.float32) -> ConvCache:
        return ConvCache(jnp.zeros((n, config.block_size + CausalConv.kernel_size - 1, config.n_embd), dtype))

    def decode(
        self, x: Float[Array, "T C"], cache: ConvCache, layer: Int[Array, ""], pos: Int[Array, ""]
    ) -> tuple[Float[Array, "T C"], ConvCache]:
        K = self.kernel.shape[0]
        # Position p lives at index p + K - 1, after the zeros; the new inputs go in first.
        cache = ConvCache(jax.lax.dynamic_update_slice(cache.x, x[None].astype(cache.x.dtype), (layer, pos + K - 1, 0)))
        recent = jax.lax.dynamic_slice(cache.x[layer], (pos, 0), (x.shape[0] + K - 1, x.shape[1]))
        return self.c_proj(self.mix(recent.astype(x.dtype), x.shape[0])), cache


# ---------------------------------------------------------------------------------------------
# MLPs: what each position computes on its own.


@MLPS.register("gelu")
class GeluMLP(eqx.Module):
    """GPT-2's feed-forward layer: widen 4x, GELU (tanh approximation, as GPT-2), project back."""

    c_fc: Linear
    c_proj: Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: GPTConfig, spec: dict):
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, config.bias)
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    def activation(self, h: Float[Array, "T H"]) -> Float[Array, "T H"]:
        return jax.nn.gelu(h, approximate=True)

    @jax.named_scope("mlp")
    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        return self.dropout(self.c_proj(self.activation(self.c_fc(x))), key=key)


@MLPS.register("relu2")
class ReluSquaredMLP(GeluMLP):
    """The speedrun's MLP (modded-nanogpt, nanochat): GELU's shape with relu(x)^2, cheaper
    to compute and sparser."""

    def activation(self, h: Float[Array, "T H"]) -> Float[Array, "T H"]:
        return jnp.square(jax.nn.relu(h))


def swiglu_hidden(n_embd: int, multiple_of: int = 1) -> int:
    """SwiGLU has three matrices where GELU's MLP has two of width 4C; 3·H·C = 8·C² gives
    H = 8C/3 (2048 at C = 768), so both MLPs hold the same number of weights. LLaMA then
    rounds H up to a multiple of `multiple_of` (11008 at C = 4096 with 256)."""
    return multiple_of * -(-round(8 * n_embd / 3) // multiple_of)


@MLPS.register("swiglu")
class SwiGLU(eqx.Module):
    """The gated MLP of PaLM and LLaMA: silu(x W_gate) * (x W_up), then project back."""

    c_fc: Linear  # gate and up projections fused into one matmul, split after
    c_proj: Linear
    dropout: eqx.nn.Dropout

    def __init__(self, config: GPTConfig, spec: dict):
        hidden = swiglu_hidden(config.n_embd, config.multiple_of)
        self.c_fc = Linear(config.n_embd, 2 * hidden, config.bias)
        self.c_proj = Linear(hidden, config.n_embd, config.bias)
        self.dropout = eqx.nn.Dropout(config.dropout)

    @jax.named_scope("mlp")
    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        gate, up = jnp.split(self.c_fc(x), 2, axis=-1)
        return self.dropout(self.c_proj(jax.nn.silu(gate) * up), key=key)


# ---------------------------------------------------------------------------------------------
# Blocks: a mixer and an MLP, each behind a norm, added to the residual stream.


@BLOCKS.register("sequential")
class Block(eqx.Module):
    """One transformer layer: pre-norm attention, then pre-norm MLP, each added to the stream."""

    ln_1: eqx.Module
    attn: eqx.Module  # the mixer (attention unless the config names another); nanoGPT's name
    ln_2: eqx.Module
    mlp: eqx.Module

    def __init__(self, config: GPTConfig, spec: dict):
        self.ln_1 = NORMS[config.norm](config.n_embd, config.bias)
        self.attn = MIXERS[spec["mixer"]](config, spec)
        self.ln_2 = NORMS[config.norm](config.n_embd, config.bias)
        self.mlp = MLPS[spec["mlp"]](config, spec)

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        attn_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        x = x + self.attn(self.ln_1(x), key=attn_key)
        return x + self.mlp(self.ln_2(x), key=mlp_key)

    def decode(self, x: Float[Array, "T C"], cache, layer: Int[Array, ""], pos: Int[Array, ""]):
        """The same layer for generation: the mixer reads and extends the cache."""
        mixed, cache = self.attn.decode(self.ln_1(x), cache, layer, pos)
        x = x + mixed
        return x + self.mlp(self.ln_2(x)), cache


@BLOCKS.register("parallel")
class ParallelBlock(eqx.Module):
    """GPT-J's and CodeGen's layer: mixer and MLP read the same normed input, side by side,
    and both add to the stream; one norm instead of two, and the two matmuls can overlap."""

    ln_1: eqx.Module
    attn: eqx.Module
    mlp: eqx.Module

    def __init__(self, config: GPTConfig, spec: dict):
        self.ln_1 = NORMS[config.norm](config.n_embd, config.bias)
        self.attn = MIXERS[spec["mixer"]](config, spec)
        self.mlp = MLPS[spec["mlp"]](config, spec)

    def __call__(self, x: Float[Array, "T C"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T C"]:
        attn_key, mlp_key = jax.random.split(key) if key is not None else (None, None)
        h = self.ln_1(x)
        return x + self.attn(h, key=attn_key) + self.mlp(h, key=mlp_key)

    def decode(self, x: Float[Array, "T C"], cache, layer: Int[Array, ""], pos: Int[Array, ""]):
        h = self.ln_1(x)
        mixed, cache = self.attn.decode(h, cache, layer, pos)
        return x + mixed + self.mlp(h), cache


# ---------------------------------------------------------------------------------------------
# The GPT.


@MODELS.register("gpt")
class GPT(eqx.Module):
    """Tokens in, next-token logits out, for one sequence.

    When every layer is alike, `h` is ONE block whose every array has an extra leading axis
    of length n_layer: the layers are stacked, and `jax.lax.scan` runs them in turn. XLA then
    compiles one layer, not n_layer copies, so compile time does not grow with depth. A
    heterogeneous stack (config.layers) is a tuple of blocks, run one after another.
    """

    wte: Embedding  # token embeddings; also the output head (weight tying), unless lm_head
    wpe: Embedding | None  # learned position embeddings (None with rope or no positions)
    dropout: eqx.nn.Dropout  # on the embeddings
    h: eqx.Module | tuple  # the blocks: stacked, or a tuple when layers differ
    ln_f: eqx.Module
    lm_head: Linear | None  # the output head when it is not tied to wte
    config: GPTConfig = eqx.field(static=True)

    def __init__(self, config: GPTConfig, *, key: PRNGKeyArray):
        if type(self) is not MODELS[config.model]:
            raise ValueError(
                f"{type(self).__name__} built from a config whose model is {config.model!r} "
                f"({MODELS[config.model].__name__}): register the class with @MODELS.register(NAME) and "
                "set GPTConfig.model=NAME, so that a checkpoint of it loads as that class"
            )
        embed_key, blocks_key = jax.random.split(key)
        self.config = config
        learned = config.position == "learned"
        self.wte, self.wpe, self.lm_head = init_weights(
            (Embedding(config.vocab_size, config.n_embd), Embedding(config.block_size, config.n_embd) if learned else None,
             None if config.tie_head else Linear(config.n_embd, config.vocab_size, bias=False)),
            embed_key,
            config,
        )
        self.dropout = eqx.nn.Dropout(config.dropout)
        specs = config.layer_specs()
        keys = jax.random.split(blocks_key, config.n_layer)
        new_block = lambda spec, k: init_weights(BLOCKS[spec["block"]](config, spec), k, config)  # noqa: E731
        if all(spec == specs[0] for spec in specs):
            # filter_vmap over one key per layer builds n_layer blocks, each initialised from
            # its own key, and returns them stacked along a new leading axis.
            self.h = eqx.filter_vmap(lambda k: new_block(specs[0], k))(keys)
        else:
            self.h = tuple(new_block(spec, k) for spec, k in zip(specs, keys))
        self.ln_f = NORMS[config.norm](config.n_embd, config.bias)

    @property
    def stacked(self) -> bool:
        return not isinstance(self.h, tuple)

    def blocks(self) -> list:
        """The layers one by one, each an ordinary Block (slices of the stacked arrays)."""
        if not self.stacked:
            return list(self.h)
        return [jax.tree.map(lambda a, i=i: a[i] if eqx.is_array(a) else a, self.h) for i in range(self.config.n_layer)]

    def embed(self, idx: Int[Array, " T"], pos: Int[Array, ""] | int) -> Float[Array, "T C"]:
        """Token embeddings, plus learned position embeddings for positions pos, pos + 1, ..."""
        x = self.wte(idx)
        return x if self.wpe is None else x + self.wpe(pos + jnp.arange(idx.shape[0]))

    def head(self, x: Float[Array, "T C"]) -> Float[Array, "T V"]:
        # Tied (GPT-2), the head is the token embedding matrix itself: one array, used twice, so
        # an optimizer update moves both uses together. Logits leave in fp32 for the softmax.
        x = self.ln_f(x)
        logits = (self.wte.unembed(x) if self.lm_head is None else self.lm_head(x)).astype(jnp.float32)
        if self.config.softcap:
            # Soft-capping: near-linear for small logits, bounded for large ones, so no logit can
            # run away and make the loss overconfident (Gemma 2, the speedrun).
            logits = self.config.softcap * jnp.tanh(logits / self.config.softcap)
        return logits

    def __call__(self, idx: Int[Array, " T"], *, key: PRNGKeyArray | None = None) -> Float[Array, "T V"]:
        """Logits for every position. `key` drives dropout; leave it out in inference mode."""
        (T,) = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} exceeds block_size={self.config.block_size}")
        drop_key, layer_keys = None, None
        if key is not None:
            drop_key, blocks_key = jax.random.split(key)
            layer_keys = jax.random.split(blocks_key, self.config.n_layer)
        x = self.dropout(self.embed(idx, 0), key=drop_key)
        run_block = lambda block, x, key, i: block(x, key=key)  # noqa: E731
        if self.config.remat != "none":
            # filter_checkpoint is jax.checkpoint for a function of a Module: the block's
            # arrays are traced, its other fields (dropout's rate, names) stay static.
            run_block = eqx.filter_checkpoint(run_block, policy=REMAT_POLICIES[self.config.remat])
        return self.head(self.run_layers(run_block, x, layer_keys))

    def run_layers(self, step: Callable, carry, per_layer=None):
        """carry = step(block, carry, per_layer[i], i) for each layer i in turn.

        Stacked blocks run under jax.lax.scan, which slices every array per layer (unrolled into
        straight-line code unless config.scan_layers); a tuple of blocks runs as a Python loop.
        """
        if not self.stacked:
            for i, block in enumerate(self.h):
                carry = step(block, carry, None if per_layer is None else per_layer[i], i)
            return carry
        # scan needs the arrays (sliced per layer) apart from the rest (shared by all layers).
        block_arrays, block_rest = eqx.partition(self.h, eqx.is_array)

        def run_layer(carry, layer):
            arrays, extra, i = layer
            return step(eqx.combine(arrays, block_rest), carry, extra, i), None

        layers = (block_arrays, per_layer, jnp.arange(self.config.n_layer))
        carry, _ = jax.lax.scan(run_layer, carry, layers, unroll=not self.config.scan_layers)
        return carry

    def empty_cache(self, dtype=jnp.float32):
        """The generation cache for this model, preallocated to block_size: one stacked cache
        for a stack of alike layers, one per layer otherwise (each mixer defines its own)."""
        if self.stacked:
            return type(self.h.attn).empty_cache(self.config, self.config.n_layer, dtype)
        return tuple(type(block.attn).empty_cache(self.config, 1, dtype) for block in self.h)

    def decode(self, idx: Int[Array, " T"], cache, pos: Int[Array, ""]) -> tuple[Float[Array, "T V"], object]:
        """Logits for T new tokens at positions pos..pos+T-1, given the cache of the earlier
        ones; returns the cache extended by them. Prefill is T = prompt length at pos = 0,
        each decoding step is T = 1. No dropout: generation runs in inference mode."""

        def run_block(block, carry, _, i):
            x, cache = carry
            if self.stacked:
                # The whole cache rides along in the carry and layer i updates its slice in
                # place; scanning over slices of it would copy every layer's cache per token.
                return block.decode(x, cache, i, pos)
            x, layer_cache = block.decode(x, cache[i], 0, pos)  # a cache of its own per layer
            return x, cache[:i] + (layer_cache,) + cache[i + 1 :]

        x, cache = self.run_layers(run_block, (self.embed(idx, pos), cache))
        return self.head(x), cache

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameters, counted once each. With non_embedding=True the position embeddings are
        left out (nanoGPT's convention); token embeddings stay (tied, they are the head too)."""
        # Shapes are enough, so this also counts a model made by eqx.filter_eval_shape,
        # which allocates nothing (handy for sizing gpt2-xl).
        n = sum(x.size for x in jax.tree.leaves(self) if isinstance(x, (jax.Array, jax.ShapeDtypeStruct)))
        return n - self.wpe.weight.size if non_embedding and self.wpe is not None else n


def init_weights(module, key: PRNGKeyArray, config: GPTConfig):
    """GPT-2's init, as a function that returns a new module (a PyTree cannot be changed).

    Every Linear and Embedding weight is drawn from N(0, 0.02), except the residual
    projections (`c_proj`, whose outputs are added to the residual stream once per layer per
    branch), drawn from N(0, 0.02 / sqrt(2 * n_layer)) so the stream's variance does not grow
    with depth, or zero with config.zero_init_residual. Biases stay zero and LayerNorm weights
    one, as constructed.
    """

    paths = [jax.tree_util.keystr(path) for path, _ in _weighted_layers(module)]
    residual_std = 0.0 if config.zero_init_residual else 0.02 / math.sqrt(2 * config.n_layer)
    drawn = [
        (residual_std if path.endswith("c_proj") else 0.02)
        * jax.random.normal(k, w.shape, w.dtype)
        for path, w, k in zip(paths, weight_matrices(module), jax.random.split(key, len(paths)))
    ]
    # eqx.tree_at is Equinox's answer to in-place assignment: same tree, chosen leaves swapped.
    return eqx.tree_at(weight_matrices, module, drawn)


def _weighted_layers(tree) -> list:
    """(path, layer) for every Linear and Embedding in `tree`, in a fixed order."""
    is_layer = lambda node: isinstance(node, (Linear, Embedding))
    found = jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_layer)
    return [(path, node) for path, node in found if is_layer(node)]


def weight_matrices(tree) -> list:
    """The weights of every Linear and Embedding: what init draws and weight decay shrinks.

    Chosen by layer type, not by ndim: stacked layers make even LayerNorm weights 2-D.
    """
    return [layer.weight for _, layer in _weighted_layers(tree)]
