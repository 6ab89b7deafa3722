"""Generate text from a trained checkpoint, fast: a KV cache and one compiled decoding loop.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=3
    python sample.py --out_dir=out-shakespeare-char --temperature=0 --stop=$'\n\n'

start is the prompt: text, or FILE:path to read it from a file. From Python, use
helpers.generation.generate (see its docstring).
"""

import sys
from pathlib import Path

import jax
import numpy as np

from configurator import configure
from helpers import hf
from helpers.data import run_tokenizer
from helpers.errors import UserError, report_user_errors
from helpers.generation import check_sampling, generate
from helpers.tokenizer import EOT, GPT2Tokenizer
from helpers.training import load_trained_model

# -----------------------------------------------------------------------------------------------
init_from = "resume"  # resume: out_dir/ckpt.eqx; gpt2, gpt2-medium, gpt2-large, gpt2-xl or an HF directory
out_dir = "out"  # the training run's folder
checkpoint = "ckpt.eqx"  # which of its checkpoints: ckpt.eqx (the latest) or best.eqx (best val loss)
start = ""  # the prompt: text or FILE:path; empty starts a document (after end-of-text, or a newline)
num_samples = 1  # samples generated together, as one batch; a single sample streams as it is made
max_new_tokens = 500  # tokens generated per sample
temperature = 0.8  # below 1 sharpens the distribution, above 1 flattens it; 0 is greedy
top_k = 200  # sample only among the k most likely tokens
top_p = 1.0  # sample only from the most likely tokens whose probabilities add up to top_p
stop = ()  # strings that end a sample: --stop=TEXT, or several as --stop='("a", "b")'
seed = 1337  # the same seed gives the same samples
# -----------------------------------------------------------------------------------------------


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """text up to the first stop string (excluded), and whether one was found."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


class Streamer:
    """Prints one sample's text as its tokens arrive, never a stop string or what follows it.

    Text that could still turn into a stop string (a prefix of one at the end) waits until
    the next token decides; so does an incomplete multi-byte character.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tokenizer, self.stops = tokenizer, stops
        self.tokens: list[int] = []
        self.printed = 0
        self.stopped = False

    def __call__(self, step_tokens: np.ndarray) -> None:
        if self.stopped:
            return
        self.tokens.append(int(step_tokens[0]))
        text, self.stopped = cut_at_stop(self.tokenizer.decode(self.tokens), self.stops)
        ready = len(text) if self.stopped else len(text) - self.pending(text)
        sys.stdout.write(text[self.printed : ready])
        sys.stdout.flush()
        self.printed = max(self.printed, ready)

    def pending(self, text: str) -> int:
        """How many characters at the end of `text` must wait."""
        held = len(text) - len(text.rstrip("\ufffd"))
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    held = max(held, n)
                    break
        return held


def read_prompt(text: str) -> str:
    if not text.startswith("FILE:"):
        return text
    path = Path(text[5:])
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    return path.read_text()


@report_user_errors
def main():
    # init_from from the command line only: in a training config file it says where training
    # starts, which is not what to sample from.
    configure(globals(), command_line_only=("init_from",))
    if num_samples <= 0:
        raise UserError(f"num_samples must be positive, got {num_samples}")
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    if init_from == "resume":
        model, header = load_trained_model(Path(out_dir), checkpoint)
        tokenizer = run_tokenizer(header)
    else:
        model, tokenizer = hf.load_gpt2(hf.resolve(init_from)), GPT2Tokenizer()
    # A GPT-2-tokenised model starts a document after end-of-text and ends it at the next one.
    eot = getattr(tokenizer, "eot", None)
    stops = stop + ((EOT,) if eot is not None else ())
    if start:
        text = read_prompt(start)
        prompt = tokenizer.encode(text)
        if not prompt:
            raise UserError(f"the prompt in {start} is empty: give some text")
    else:
        text, prompt = ("", [eot]) if eot is not None else ("\n", tokenizer.encode("\n"))
    if len(prompt) > model.config.block_size:
        raise UserError(f"the prompt has {len(prompt)} tokens but the model sees at most "
                        f"{model.config.block_size} (its block_size): shorten it")

    settings = dict(key=jax.random.key(seed), num_samples=num_samples, temperature=temperature,
                    top_k=top_k, top_p=top_p, stop_token=eot, vocab_size=tokenizer.vocab_size)
    if num_samples == 1:
        sys.stdout.write(text)
        generate(model, prompt, max_new_tokens, **settings, on_token=Streamer(tokenizer, stops))
        sys.stdout.write("\n---------------\n")
        return
    for sample in generate(model, prompt, max_new_tokens, **settings):
        new_text, _ = cut_at_stop(tokenizer.decode(sample), stops)
        sys.stdout.write(text + new_text + "\n---------------\n")


if __name__ == "__main__":
    main()
