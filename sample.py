"""Generate text from a trained checkpoint.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=3

start is the prompt: text, or FILE:path to read it from a file.
"""

import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from configurator import configure
from helpers import checkpoint
from helpers.data import dataset_dir, read_meta
from helpers.errors import UserError, report_user_errors
from helpers.optim import optimizer_from_settings
from helpers.tokenizer import tokenizer_from_meta
from helpers.training import init_state
from model import GPT, GPTConfig

# -----------------------------------------------------------------------------------------------
out_dir = "out"  # the training run's folder, holding ckpt.eqx
start = "\n"  # the prompt: text, or FILE:path to read it from a file
num_samples = 1  # how many samples to draw
max_new_tokens = 500  # tokens generated per sample
temperature = 0.8  # below 1 sharpens the distribution, above 1 flattens it
top_k = 200  # sample only among the k most likely tokens; 0 keeps them all
seed = 1337  # the same seed gives the same samples
# -----------------------------------------------------------------------------------------------


@eqx.filter_jit
def next_token_logits(model: GPT, window: Int[Array, " T"], last: Int[Array, ""]) -> Float[Array, " V"]:
    """Logits after position `last` of a fixed-length window.

    The window always has block_size tokens (padding after `last`), so this compiles once,
    whatever the prompt length. Padding cannot leak backwards: the attention is causal.
    """
    return model(window)[last]


def sample_token(
    logits: Float[Array, " V"], temperature: float, top_k: int, key: PRNGKeyArray
) -> int:
    if top_k:
        kth_largest = jnp.sort(logits)[-min(top_k, logits.shape[0])]
        logits = jnp.where(logits < kth_largest, -jnp.inf, logits)
    return int(jax.random.categorical(key, logits / temperature))


def generate(model: GPT, prompt: list[int], max_new_tokens: int, temperature: float,
             top_k: int, key: PRNGKeyArray) -> list[int]:
    """Extend `prompt` by max_new_tokens sampled tokens. Once the text is longer than
    block_size, the model sees only the last block_size tokens (a sliding window)."""
    model = eqx.nn.inference_mode(model)
    block_size = model.config.block_size
    tokens = list(prompt)
    for _ in range(max_new_tokens):
        visible = tokens[-block_size:]
        window = np.zeros(block_size, np.int32)
        window[: len(visible)] = visible
        logits = next_token_logits(model, window, jnp.int32(len(visible) - 1))
        key, sub = jax.random.split(key)
        tokens.append(sample_token(logits, temperature, top_k, sub))
    return tokens[len(prompt):]


def load_model(out_path: Path) -> tuple[GPT, dict]:
    ckpt_path = out_path / "ckpt.eqx"
    header = checkpoint.read_header(ckpt_path)
    config = GPTConfig(**header["model_config"])
    # The file holds the whole training state; rebuild its shapes from the header (no compute,
    # no allocation), read it all, and keep the model.
    optimizer, _ = optimizer_from_settings(header["settings"])
    like = eqx.filter_eval_shape(init_state, config, optimizer, 0)
    return checkpoint.load(ckpt_path, like)["model"], header


@report_user_errors
def main():
    configure(globals())
    if max_new_tokens <= 0:
        raise UserError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if num_samples <= 0:
        raise UserError(f"num_samples must be positive, got {num_samples}")
    if temperature <= 0:
        raise UserError(f"temperature must be positive, got {temperature}")
    if top_k < 0:
        raise UserError(f"top_k must be 0 (off) or positive, got {top_k}")
    model, header = load_model(Path(out_dir))
    tokenizer = tokenizer_from_meta(read_meta(dataset_dir(header["settings"]["dataset"])))

    text = start
    if text.startswith("FILE:"):
        path = Path(text[5:])
        if not path.is_file():
            raise UserError(f"prompt file {path} does not exist")
        text = path.read_text()
    prompt = tokenizer.encode(text)
    if not prompt:
        raise UserError("the prompt is empty: pass --start=TEXT")

    key = jax.random.key(seed)
    for _ in range(num_samples):
        key, sub = jax.random.split(key)
        new = generate(model, prompt, max_new_tokens, temperature, top_k, sub)
        sys.stdout.write(text + tokenizer.decode(new) + "\n---------------\n")


if __name__ == "__main__":
    main()
