"""Text generation with a KV cache: one compiled prefill and decoding loop per shape.

    from helpers.generation import generate
    tokens = generate(model, prompt_ids, max_new_tokens=200, num_samples=4, temperature=0.8,
                      top_k=50, key=jax.random.key(0))

nanoGPT's generate runs the whole context through the model for every new token. Here the
prompt runs once (prefill), filling a preallocated cache of keys and values, and each new token
then costs one position. Decoding is a compiled loop that makes up to CHUNK tokens per call and
hands back its state (the cache, the random key, ...), which the next call carries on from: the
same tokens as one long call, but Python gets a turn between calls, so Ctrl-C stops a long
generation within a chunk. Shapes are static: the prefill compiles once per (num_samples,
prompt bucket), the decoding loop once per (num_samples, candidate pool: see
`candidate_pool`), whatever max_new_tokens is, never once per token.

Contexts longer than block_size are cropped, not slid one token at a time: when the window is
full, it is cut to its last block_size // 2 tokens, those are encoded afresh from position 0
into an empty cache (one prefill) and decoding goes on. The model therefore always sees between
block_size // 2 and block_size tokens, and its output equals the cache-less model's on that
same window (`generate_without_cache` below follows the same rule).

What this asks of a model's cache (helpers/contract.py has the whole contract): `decode` at
position pos sees exactly the tokens written before pos. The prompt is padded up to its bucket
and prefilled whole, then decoding continues at the prompt's true length, over the padding: a
cache must let a later write at a position replace what was there (attention's and the conv's
do). A cache that cannot be rewound so (a recurrent state) says `cache_rewinds = False` on its
class, and its prompts are prefilled at their exact length instead (one compilation per length).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from helpers.errors import UserError
from model import GPT

MIN_BUCKET = 16  # prompts are padded to a power of two at least this long
# New tokens per compiled call, at most. Each call costs a dispatch and a wait for its result,
# which only the tiniest models take as long as 32 tokens to cover; Ctrl-C waits for the chunk
# under way, a fraction of a second unless one token takes many milliseconds.
CHUNK = 32


def check_sampling(max_new_tokens: int, num_samples: int, temperature: float, top_k: int | None,
                   top_p: float) -> None:
    """Reject settings that cannot sample, saying what is accepted."""
    for name, value in (("max_new_tokens", max_new_tokens), ("num_samples", num_samples)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{name} must be a positive whole number, got {value!r}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise UserError(f"temperature must be >= 0 (0 is greedy) and finite, got {temperature}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise UserError(f"top_k must be a whole number, at least 1 (or None for no limit), got {top_k!r}")
    if not 0.0 < top_p <= 1.0:
        raise UserError(f"top_p must be in (0, 1], got {top_p}")


def check_window(block_size: int) -> None:
    """A full window is cut to its last block_size // 2 tokens (see above), which must be at least one."""
    if block_size < 2:
        raise UserError(f"a model with block_size={block_size} cannot generate: a full window is cut to its last "
                        "block_size // 2 tokens, which must be at least one")


def prompt_bucket(length: int, block_size: int, rewinds: bool = True) -> int:
    """The padded prompt length: the next power of two, so nearby lengths share a compilation;
    for a cache that cannot be rewound over the padding, the length itself."""
    if not rewinds:
        return length
    return min(max(MIN_BUCKET, 1 << (length - 1).bit_length()), block_size)


def cache_rewinds(model: GPT) -> bool:
    """Whether every part of `model` can be rewound, as padded prompts need: no module in it
    (the model itself included) has a class that says `cache_rewinds = False`."""
    cannot = lambda node: getattr(type(node), "cache_rewinds", True) is False  # noqa: E731
    # is_leaf stops the walk at such a module; every other module is walked into.
    return not any(cannot(leaf) for leaf in jax.tree.leaves(model, is_leaf=cannot))


def candidate_pool(vocab_size: int, temperature: float, top_k: int | None, top_p: float) -> int:
    """How many of the most likely tokens sampling must rank (a static size, so part of the
    compiled shape): none for greedy or unfiltered sampling, top_k rounded up to a power of
    two (so nearby values share a compilation), or the whole vocabulary for top_p alone.
    Ranking a few hundred of the logits with lax.top_k is far cheaper than sorting them all."""
    if temperature == 0 or (top_k is None and top_p == 1.0):
        return 0
    if top_k is None:
        return vocab_size
    return min(vocab_size, 1 << (top_k - 1).bit_length())


def sample_next(
    logits: Float[Array, "B V"], key: PRNGKeyArray, temperature, top_k, top_p, pool: int
) -> Int[Array, " B"]:
    """One token per row: greedy when temperature is 0, otherwise sampled from the softmax of
    logits / temperature, restricted first to the top_k most likely tokens, then to the
    smallest of those whose renormalised probability reaches top_p (the order Hugging Face
    uses). temperature, top_k and top_p are traced values; `pool` (static) is how many of
    the largest logits to rank, at least top_k, or 0 to skip the filtering."""
    scaled = logits / jnp.maximum(temperature, 1e-6)
    if pool:
        ranked = jax.lax.top_k(scaled, pool)[0]  # (B, pool), largest first
        within_k = jnp.arange(pool) < top_k
        probs = jax.nn.softmax(jnp.where(within_k, ranked, -jnp.inf), axis=-1)
        # Keep a ranked token while the probability before it is below top_p (the first always).
        kept = within_k & ((jnp.cumsum(probs, axis=-1) - probs) < top_p)
        floor = jnp.take_along_axis(ranked, kept.sum(-1, keepdims=True) - 1, axis=-1)
        scaled = jnp.where(scaled < floor, -jnp.inf, scaled)
    sampled = jax.random.categorical(key, scaled, axis=-1)
    return jnp.where(temperature == 0, jnp.argmax(logits, axis=-1), sampled).astype(jnp.int32)


class Decoding(NamedTuple):
    """What decoding carries from one token to the next, and from one chunk to the next."""

    key: PRNGKeyArray
    logits: Float[Array, "B V"]  # the model's prediction for the next token
    cache: object  # the model's generation cache (see GPT.empty_cache)
    context: Int[Array, "B W"]  # the tokens in the cache, by position (W = block_size): what a crop keeps
    window: Int[Array, ""]  # tokens in the cache: what the model sees
    done: Bool[Array, " B"]  # rows that have produced stop_token
    steps: Int[Array, ""]  # tokens made in this chunk
    new: Int[Array, "B CHUNK"]  # the tokens made in this chunk


def _per_row(cache, num_samples: int):
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (num_samples, *a.shape)), cache)


@eqx.filter_jit
def _prefill(model: GPT, prompt: Int[Array, " P"], prompt_len: Int[Array, ""], key: PRNGKeyArray,
             num_samples: int, chunk: int) -> Decoding:
    """The state before the first new token. Every row starts from the same prompt: prefill it
    once and copy the cache per row."""
    logits, cache = model.decode(prompt, model.empty_cache(), jnp.int32(0))
    context = jnp.zeros((num_samples, model.config.block_size), jnp.int32)
    return Decoding(
        key=key,
        logits=jnp.broadcast_to(logits[prompt_len - 1], (num_samples, logits.shape[-1])),
        cache=_per_row(cache, num_samples),
        context=context.at[:, : prompt.shape[0]].set(prompt),
        window=prompt_len,
        done=jnp.zeros(num_samples, bool),
        steps=jnp.int32(0),
        new=jnp.zeros((num_samples, chunk), jnp.int32),
    )


# Every argument but the model is donated: the new state (its cache above all) takes the old
# one's memory, as one long loop would, rather than holding two caches at once.
@eqx.filter_jit(donate="all-except-first")
def _decode_chunk(
    model: GPT,
    state: Decoding,
    limit: Int[Array, ""],
    temperature: Float[Array, ""],
    top_k: Int[Array, ""],
    top_p: Float[Array, ""],
    stop_token: Int[Array, ""],
    vocab_size: Int[Array, ""],
    pool: int,
    on_token: Callable | None,
    on_logits: Callable | None = None,
) -> Decoding:
    """Up to `limit` (at most the chunk's size) more tokens, fewer if every row stops: the state
    to carry on from, whose `new[:, :steps]` are this chunk's tokens."""
    block_size = model.config.block_size
    keep = block_size // 2
    decode = jax.vmap(model.decode, in_axes=(0, 0, None))  # a batch of rows, one position

    def next_token(s: Decoding) -> tuple[Int[Array, " B"], Decoding]:
        """Sample each row's next token and append it to the chunk's."""
        key, sub = jax.random.split(s.key)
        # A head padded past the tokenizer's vocabulary (helpers/data.py) never picks a padding id.
        logits = jnp.where(jnp.arange(s.logits.shape[-1]) < vocab_size, s.logits, -jnp.inf)
        token = sample_next(logits, sub, temperature, top_k, top_p, pool)
        if on_logits is not None:
            jax.debug.callback(on_logits, s.logits, ordered=True)
        if on_token is not None:
            jax.debug.callback(on_token, token, ordered=True)
        return token, s._replace(
            steps=s.steps + 1, key=key, new=s.new.at[:, s.steps].set(token), done=s.done | (token == stop_token),
        )

    def extend(s: Decoding) -> Decoding:
        """The common step: one new token into the cache at position `window`."""
        token, s = next_token(s)
        logits, cache = decode(token[:, None], s.cache, s.window)
        return s._replace(logits=logits[:, 0], cache=cache, context=s.context.at[:, s.window].set(token),
                          window=s.window + 1)

    def crop(s: Decoding) -> Decoding:
        """The window is full: encode its last `keep` tokens, the new one included, afresh."""
        token, s = next_token(s)
        recent = jnp.concatenate([s.context, token[:, None]], axis=1)[:, block_size + 1 - keep:]
        logits, cache = decode(recent, _per_row(model.empty_cache(), s.done.shape[0]), jnp.int32(0))
        return s._replace(logits=logits[:, -1], cache=cache, context=s.context.at[:, :keep].set(recent),
                          window=jnp.int32(keep))

    def running(s: Decoding) -> Bool[Array, ""]:
        return (s.steps < limit) & ~jnp.all(s.done)

    def until_full(s: Decoding) -> Decoding:
        # Two loops rather than one with a lax.cond per token: a cond copies its operands,
        # the whole cache included, every time it runs; here it runs once per crop.
        s = jax.lax.while_loop(lambda s: running(s) & (s.window < block_size), extend, s)
        return jax.lax.cond(running(s), crop, lambda s: s, s)

    return jax.lax.while_loop(running, until_full, state._replace(steps=jnp.int32(0)))


def generate(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    *,
    key: PRNGKeyArray,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    stop_token: int | None = None,
    vocab_size: int | None = None,
    on_token: Callable[[np.ndarray], None] | None = None,
    on_logits: Callable[[np.ndarray], None] | None = None,
    until: Callable[[np.ndarray], bool] | None = None,
) -> list[list[int]]:
    """num_samples continuations of `prompt` (token ids), generated together as one batch.

    temperature 0 is greedy decoding. A sample ends after max_new_tokens or at stop_token,
    which it then includes. vocab_size is the tokenizer's, when the model's head is padded
    beyond it: only ids below it are generated (default: every id the model has). on_token,
    if given, is called with each step's (num_samples,) new tokens as they are produced (for
    streaming to a terminal); on_logits with the (num_samples, V) logits each is drawn from
    (check.py compares them with the cache-less model's). `until`, if given, is asked after
    each chunk of tokens, with its (num_samples, n) new tokens: True ends the generation there
    (sample.py's stop strings, which only the text shows). The same key gives the same samples.
    """
    check_sampling(max_new_tokens, num_samples, temperature, top_k, top_p)
    if not len(prompt):
        raise UserError("the prompt is empty: give at least one token")
    vocabulary = model.config.vocab_size
    if vocab_size is not None and not 1 <= vocab_size <= vocabulary:
        raise UserError(f"vocab_size must be between 1 and the model's {vocabulary}, got {vocab_size}")
    if not 0 <= min(prompt) <= max(prompt) < vocabulary:  # the embedding would clamp an id beyond it, silently
        raise UserError(f"the prompt holds token ids from {min(prompt)} to {max(prompt)}, and the model's run "
                        f"from 0 to {vocabulary - 1}")
    model = eqx.nn.inference_mode(model)
    block_size = model.config.block_size
    check_window(block_size)
    visible = np.asarray(prompt[-block_size:], np.int32)  # the model cannot see further back
    padded = np.zeros(prompt_bucket(len(visible), block_size, cache_rewinds(model)), np.int32)
    padded[: len(visible)] = visible
    state = _prefill(model, jnp.asarray(padded), jnp.int32(len(visible)), key, num_samples, CHUNK)
    scalars = (np.float32(temperature), np.int32(top_k or model.config.vocab_size), np.float32(top_p),
               np.int32(-1 if stop_token is None else stop_token), np.int32(vocab_size or model.config.vocab_size))
    static = (candidate_pool(model.config.vocab_size, temperature, top_k, top_p), on_token, on_logits)
    chunks, left = [], max_new_tokens
    while left > 0 and not np.asarray(state.done).all():
        # Fresh device scalars for each call, which donates its arguments.
        state = _decode_chunk(model, state, jnp.int32(min(left, CHUNK)), *map(jnp.asarray, scalars), *static)
        steps = int(state.steps)
        chunks.append(np.asarray(state.new)[:, :steps])
        left -= steps
        if until is not None and until(chunks[-1]):
            break
    return [_until(row.tolist(), stop_token) for row in np.concatenate(chunks, axis=1)]


def _until(tokens: list[int], stop_token: int | None) -> list[int]:
    """tokens up to and including the first stop_token."""
    return tokens[: tokens.index(stop_token) + 1] if stop_token in tokens else tokens


@eqx.filter_jit
def _last_logits(model: GPT, window: Int[Array, " W"], length: Int[Array, ""]) -> Float[Array, " V"]:
    return model(window)[length - 1]


def steps_without_cache(model: GPT, prompt: list[int], max_new_tokens: int, forced: list[int] | None = None,
                        bucket: int = 64):
    """Generation the slow way, nanoGPT's: the whole visible window through the model for every
    new token, with the same cropping rule as `generate`. Yields, for each new token, the
    logits it follows from and the token: the greedy one, or forced[i] when `forced` is given
    (a path to score, as check.py does with `generate`'s).

    Windows are padded to a multiple of `bucket` (causal attention makes padding after the
    last token harmless), so this compiles a handful of times, not once per length.
    """
    model = eqx.nn.inference_mode(model)
    block_size = model.config.block_size
    check_window(block_size)
    history = list(prompt)
    window_start = max(0, len(history) - block_size)
    for i in range(max_new_tokens):
        window = history[window_start:]
        padded = np.zeros(min(-(-len(window) // bucket) * bucket, block_size), np.int32)
        padded[: len(window)] = window
        logits = np.asarray(_last_logits(model, jnp.asarray(padded), jnp.int32(len(window))))
        token = int(np.argmax(logits)) if forced is None else forced[i]
        yield logits, token
        history.append(token)
        if len(history) - window_start > block_size:
            window_start = len(history) - block_size // 2


def generate_without_cache(model: GPT, prompt: list[int], max_new_tokens: int, bucket: int = 64) -> list[int]:
    """Greedy decoding without the cache (`steps_without_cache`): the reference that tests
    compare `generate` against, and the baseline bench.py times."""
    return [token for _, token in steps_without_cache(model, prompt, max_new_tokens, bucket=bucket)]
