import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import generation
from helpers.errors import UserError
from helpers.generation import CHUNK, generate, generate_without_cache, sample_next
from model import GPT, GPTConfig

CONFIG = GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=32, mlp="gelu")
MODEL = GPT(CONFIG, key=jax.random.key(0))
PROMPT = [int(t) for t in np.random.default_rng(0).integers(0, 50, 10)]


@pytest.mark.parametrize("prompt_len, new", [(10, 60), (45, 30), (1, 5)])
def test_greedy_with_cache_equals_full_recompute(prompt_len, new):
    # 60 new tokens after 10 cross the 32-token window twice; a 45-token prompt starts cropped.
    prompt = [int(t) for t in np.random.default_rng(prompt_len).integers(0, 50, prompt_len)]
    cached = generate(MODEL, prompt, new, key=jax.random.key(1), temperature=0.0)
    assert cached == [generate_without_cache(MODEL, prompt, new)]


def test_same_seed_same_samples_and_batch_rows_differ():
    settings = dict(num_samples=3, temperature=1.0, top_k=10, top_p=0.9)
    first = generate(MODEL, PROMPT, 20, key=jax.random.key(3), **settings)
    assert first == generate(MODEL, PROMPT, 20, key=jax.random.key(3), **settings)
    assert first != generate(MODEL, PROMPT, 20, key=jax.random.key(4), **settings)
    assert len(first) == 3 and len({tuple(row) for row in first}) == 3


@contextlib.contextmanager
def traces_of(name: str):
    """The traces of functions named `name` while the block runs, from jax's own monitoring
    events (one per trace, none for a call that reuses a compilation)."""
    seen = []

    def listener(event: str, duration: float, fun_name: str = "", **kwargs) -> None:
        if event == "/jax/core/compile/jaxpr_trace_duration" and name in fun_name:
            seen.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_one_compilation_per_shape(monkeypatch):
    generate(MODEL, PROMPT, 7, key=jax.random.key(0), num_samples=2, top_k=5)
    # Every trace counts, whatever the function's name: a loop that compiles a step per new
    # length would add traces of its own.
    with traces_of("") as same_shape:
        # Other prompts in the same bucket, other seeds, temperatures, top_p and top_k within
        # the same candidate pool (5..8), any number of new tokens: no new trace.
        for length, temperature, top_k, top_p, new in [(11, 0.5, 6, 0.8, 7), (16, 1.0, 8, 1.0, 100), (3, 1.5, 5, 0.1, 1)]:
            generate(MODEL, PROMPT[:1] * length, new, key=jax.random.key(length), num_samples=2,
                     temperature=temperature, top_k=top_k, top_p=top_p)
    assert same_shape == []
    # One compilation would not show a loop that re-encodes the whole window for every token:
    # the lengths the model decodes at once, while the new shape is traced.
    decoded = []
    decode = GPT.decode

    def recording(self, idx, cache, pos):
        decoded.append(idx.shape[0])
        return decode(self, idx, cache, pos)

    monkeypatch.setattr(GPT, "decode", recording)
    with traces_of("") as new_shape:
        generate(MODEL, PROMPT, 8, key=jax.random.key(0), num_samples=7, top_k=5)  # a batch size no test used
    assert new_shape == ["_prefill", "_decode_chunk"]
    # The prompt's bucket (16) and each new token alone (1); a crop re-encodes block_size // 2
    # tokens (16 too). Never a whole window per token.
    assert sorted(set(decoded)) == [1, 16]


def test_chunks_make_the_tokens_of_one_long_call(monkeypatch):
    # Sampled rows that stop at different times, across several crops of the 32-token window.
    settings = {"key": jax.random.key(9), "num_samples": 3, "temperature": 1.0, "top_k": 10, "top_p": 0.9,
                "stop_token": 7}
    monkeypatch.setattr(generation, "CHUNK", 1000)
    whole = generate(MODEL, PROMPT, 90, **settings)
    monkeypatch.setattr(generation, "CHUNK", 4)
    with traces_of("_decode_chunk") as traces:
        chunked = generate(MODEL, PROMPT, 90, **settings)
    assert chunked == whole and max(map(len, whole)) > 40 and min(map(len, whole)) < 90
    assert traces == ["_decode_chunk"]  # one program for every chunk


def test_top_k_one_and_tiny_top_p_are_greedy():
    greedy = generate(MODEL, PROMPT, 15, key=jax.random.key(0), temperature=0.0)
    assert generate(MODEL, PROMPT, 15, key=jax.random.key(5), temperature=2.0, top_k=1) == greedy
    assert generate(MODEL, PROMPT, 15, key=jax.random.key(6), temperature=2.0, top_p=1e-6) == greedy


@pytest.mark.parametrize("top_k, top_p, allowed", [
    (2, 1.0, {0, 1}),
    (5, 0.85, {0, 1, 2}),  # 0.5 + 0.3 < 0.85, so the third is needed
    (None, 0.85, {0, 1, 2}),
    (None, 1.0, {0, 1, 2, 3, 4}),
    (3, 0.7, {0, 1}),  # among the top 3, renormalised: 0.5 / 0.9 < 0.7 <= 0.8 / 0.9
])
def test_sampling_stays_inside_top_k_and_top_p(top_k, top_p, allowed):
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    pool = generation.candidate_pool(5, 1.0, top_k, top_p)
    k = jnp.int32(top_k or 5)
    draws = {int(sample_next(logits, jax.random.key(i), 1.0, k, top_p, pool)[0]) for i in range(300)}
    assert draws == allowed


def test_stop_token_ends_the_sample_and_on_token_streams():
    greedy = generate(MODEL, PROMPT, 20, key=jax.random.key(0), temperature=0.0)[0]
    stop = greedy[4]
    streamed = []
    out = generate(MODEL, PROMPT, 20, key=jax.random.key(0), temperature=0.0, stop_token=stop,
                   on_token=lambda tokens: streamed.append(int(tokens[0])))
    assert out == [greedy[: greedy.index(stop) + 1]]
    assert streamed[: len(out[0])] == out[0]


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be a positive whole number, got 0"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a positive whole number, got 2.5"),  # it looped for ever
    ({"num_samples": 0}, "num_samples must be a positive whole number, got 0"),
    ({"top_p": 0.0}, "top_p must be in"),
    ({"top_p": 1.5}, "top_p must be in"),
    ({"top_k": 0}, "top_k must be a whole number, at least 1"),
    ({"top_k": 2.5}, "top_k must be a whole number, at least 1"),
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"temperature": float("nan")}, "temperature must be >= 0 (0 is greedy) and finite, got nan"),
    ({"vocab_size": 0}, "vocab_size must be between 1 and the model's 50, got 0"),
    ({"prompt": [1, 50]}, "the prompt holds token ids from 1 to 50, and the model's run from 0 to 49"),
    ({"prompt": [-1, 2]}, "the prompt holds token ids from -1 to 2"),
])
def test_bad_settings_are_rejected(kwargs, message):
    settings = dict(prompt=PROMPT, max_new_tokens=5, key=jax.random.key(0)) | kwargs
    with pytest.raises(UserError, match=re.escape(message)):
        generate(MODEL, **settings)


def test_until_ends_the_generation_after_the_chunk_that_asks():
    asked = []
    rows = generate(MODEL, PROMPT, 5 * CHUNK, key=jax.random.key(0), num_samples=2,
                    until=lambda new: asked.append(new.shape) or len(asked) == 2)
    assert asked == [(2, CHUNK), (2, CHUNK)] and [len(row) for row in rows] == [2 * CHUNK] * 2


def test_a_padded_head_never_generates_a_padding_id():
    # The model has 50 logits; a tokenizer of 20 ids leaves 30 padding rows that must never come out.
    rows = generate(MODEL, PROMPT, 200, key=jax.random.key(5), num_samples=4, temperature=5.0, vocab_size=20)
    tokens = [t for row in rows for t in row]
    assert len(tokens) == 800 and max(tokens) < 20
    greedy = generate(MODEL, PROMPT, 50, key=jax.random.key(5), temperature=0.0, vocab_size=20)[0]
    assert max(greedy) < 20


def test_a_cache_that_cannot_be_rewound_gets_its_prompt_unpadded(tmp_path):
    from conftest import ROOT

    from configurator import run_config_file
    from helpers.generation import cache_rewinds, prompt_bucket
    from model import GPTConfig

    run_config_file(ROOT / "examples" / "hybrid_stack.py")  # the EMA mixer: cache_rewinds = False
    ema = GPT(GPTConfig(block_size=32, vocab_size=50, n_layer=2, n_head=2, n_embd=32, layers=("attention", "ema")),
              key=jax.random.key(0))
    assert cache_rewinds(MODEL) and not cache_rewinds(ema)
    assert prompt_bucket(5, 32) == 16 and prompt_bucket(5, 32, rewinds=False) == 5
    for prompt_len, new in [(5, 40), (33, 10)]:  # across a crop; a prompt longer than block_size
        prompt = [int(t) for t in np.random.default_rng(prompt_len).integers(0, 50, prompt_len)]
        assert generate(ema, prompt, new, key=jax.random.key(1), temperature=0.0) == [generate_without_cache(ema, prompt, new)]
