"""Generate text from a trained checkpoint, fast: a KV cache and a compiled decoding loop.

    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=3
    python sample.py --out_dir=out-shakespeare-char --temperature=0 --stop=$'\n\n'

start is the prompt: text, or FILE:path to read it from a file. From Python, use
helpers.generation.generate (see its docstring). Ctrl-C ends the script at once, at any moment
(a long generation within a chunk of tokens); what a streamed sample printed stays printed.
"""
# ruff: noqa: E402

import signal

from helpers.interrupt import exit_on_ctrl_c

if __name__ == "__main__":
    # First of all: importing jax alone takes a second, and nothing here is worth saving.
    exit_on_ctrl_c("sample.py: stopped by Ctrl-C")
    # A reader that stops reading (sample.py | head) ends the script quietly, as it ends `cat`.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

import sys
from pathlib import Path

import jax
import numpy as np

from configurator import configure
from helpers import hf
from helpers.data import run_tokenizer
from helpers.errors import UserError, memory_is_the_users, report_user_errors
from helpers.generation import generate
from helpers.registry import accepts
from helpers.tokenizer import EOT, GPT2Tokenizer
from helpers.training import CHECKPOINTS, load_trained_model

# -----------------------------------------------------------------------------------------------
init_from = "resume"  # resume: out_dir/ckpt.eqx; gpt2, gpt2-medium, gpt2-large, gpt2-xl or an HF directory
out_dir = "out"  # the training run's folder
checkpoint: accepts(choices=CHECKPOINTS) = "ckpt.eqx"  # which of its checkpoints; ckpt.eqx: the latest, best.eqx: the best val loss
start = ""  # the prompt: text or FILE:path; empty starts a document (after end-of-text, or a newline)
num_samples: accepts(low=1) = 1  # samples generated together, as one batch; a single sample streams as it is made
max_new_tokens: accepts(low=1) = 500  # tokens generated per sample
temperature: accepts(low=0) = 0.8  # below 1 sharpens the distribution, above 1 flattens it; 0 is greedy
top_k: accepts(low=0) = 200  # sample only among the k most likely tokens; 0: no limit
top_p: accepts(above=0, high=1) = 1.0  # sample only from the most likely tokens whose probabilities add up to top_p
stop = ()  # strings that end a sample: --stop=TEXT, or several as --stop='("a", "b")'
seed = 1337  # the same seed gives the same samples
# -----------------------------------------------------------------------------------------------


def check_settings() -> None:
    """What the declarations above cannot say."""
    if init_from in ("", "scratch"):
        raise UserError(f"init_from={init_from!r} names no trained model to sample from: resume (out_dir's "
                        f"checkpoint), {', '.join(hf.GPT2_NAMES)} or a Hugging Face directory")
    if "" in stop:
        raise UserError(f"stop={stop!r} holds an empty string, which would end every sample before it starts: "
                        "drop it")
    if not -(2**63) <= seed < 2**63:
        raise UserError(f"seed must fit in 64 bits (between -2**63 and 2**63 - 1), got {seed}")


def seed_key(seed: int):
    """The random key of a 64-bit seed. jax.random.key takes 32 bits here (no jax_enable_x64),
    so the high half is folded in: seeds 1 and 2**32 + 1 give different samples."""
    key = jax.random.key(seed % 2**32)
    return jax.random.fold_in(key, (seed >> 32) % 2**32) if seed >> 32 else key


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """text up to the first stop string (excluded), and whether one was found."""
    ends = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[: min(ends)], True) if ends else (text, False)


class Streamer:
    """Prints one sample's text as its tokens arrive, never a stop string or what follows it.

    Text that could still turn into a stop string (a prefix of one at the end) waits until
    the next token decides, or `finish` at the end; so does an incomplete multi-byte character.
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
        if self.printed == len(text):
            # Nothing held back: what follows decodes on its own, and a long sample decodes
            # only its latest tokens, not everything from the start, at each step.
            self.tokens, self.printed = [], 0

    def finish(self) -> None:
        """The end of the sample: what was held back is the sample's, unless a stop string came."""
        if not self.stopped:
            sys.stdout.write(cut_at_stop(self.tokenizer.decode(self.tokens), self.stops)[0][self.printed :])

    def pending(self, text: str) -> int:
        """How many characters at the end of `text` must wait."""
        held = len(text) - len(text.rstrip("\ufffd"))
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    held = max(held, n)
                    break
        return held


class StopWatch:
    """Whether every sample has come to a stop string yet, asked after each chunk of tokens: a
    batch ends when all have, not at max_new_tokens. Only each row's latest tokens are decoded
    (enough for the longest stop string, and the new ones), so a long generation does not
    decode everything again at every chunk."""

    def __init__(self, tokenizer, stops: tuple[str, ...], rows: int):
        self.tokenizer, self.stops = tokenizer, stops
        self.tail = 4 * max(map(len, stops))  # a character is at most four tokens (its UTF-8 bytes)
        self.recent = [[] for _ in range(rows)]
        self.stopped = [False] * rows

    def __call__(self, new_tokens: np.ndarray) -> bool:
        for row, tokens in enumerate(new_tokens.tolist()):
            recent = self.recent[row] + tokens
            self.stopped[row] |= cut_at_stop(self.tokenizer.decode(recent), self.stops)[1]
            self.recent[row] = recent[-self.tail :]
        return all(self.stopped)


def read_prompt(text: str) -> str:
    """The prompt: `text` itself, or the text of the file it names as FILE:path."""
    if not text.startswith("FILE:"):
        return text
    name = text.removeprefix("FILE:")
    if not name:
        raise UserError("--start=FILE: names no file: write --start=FILE:path/to/prompt.txt")
    try:
        return Path(name).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"prompt file {name} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"prompt file {name} is a directory: name a text file in it") from None
    except UnicodeDecodeError as error:
        raise UserError(f"prompt file {name} is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset "
                        f"{error.start}): give a text file") from None
    except OSError as error:
        raise UserError(f"cannot read prompt file {name} ({error.strerror or error})") from None


@report_user_errors
def main():
    # init_from from the command line only: in a training config file it says where training
    # starts, which is not what to sample from.
    configure(globals(), command_line_only=("init_from",))
    check_settings()
    text = read_prompt(start)  # before the model loads: a mistake in it is told at once
    if init_from == "resume":
        model, header = load_trained_model(Path(out_dir), checkpoint)
        tokenizer = run_tokenizer(header)
    else:
        model, tokenizer = hf.load_gpt2(hf.resolve(init_from)), GPT2Tokenizer()
    if tokenizer.vocab_size > model.config.vocab_size:  # its ids would be clamped into the model's: garbage
        raise UserError(f"the model has a vocabulary of {model.config.vocab_size} tokens, fewer than its tokenizer's "
                        f"{tokenizer.vocab_size}: it was trained with another tokenizer"
                        + (" (a Hugging Face directory is read with GPT-2's)" if init_from != "resume" else ""))
    # A GPT-2-tokenised model starts a document after end-of-text and ends it at the next one.
    eot = getattr(tokenizer, "eot", None)
    stops = stop + ((EOT,) if eot is not None else ())
    if start:
        prompt = tokenizer.encode(text)
        if not prompt:
            raise UserError(f"the prompt in {start} is empty: give some text")
    else:
        text, prompt = ("", [eot]) if eot is not None else ("\n", tokenizer.encode("\n"))
    if len(prompt) > model.config.block_size:
        raise UserError(f"the prompt has {len(prompt)} tokens but the model sees at most "
                        f"{model.config.block_size} (its block_size): shorten it")

    settings = {"key": seed_key(seed), "num_samples": num_samples, "temperature": temperature,
                "top_k": top_k or None, "top_p": top_p, "stop_token": eot, "vocab_size": tokenizer.vocab_size}
    if num_samples == 1:
        sys.stdout.write(text)
        streamer = Streamer(tokenizer, stops)
        generate(model, prompt, max_new_tokens, **settings, on_token=streamer, until=lambda _: streamer.stopped)
        streamer.finish()
        sys.stdout.write("\n---------------\n")
        return
    with memory_is_the_users("lower num_samples: the samples are generated together, as one batch"):
        samples = generate(model, prompt, max_new_tokens, **settings,
                           until=StopWatch(tokenizer, stops, num_samples) if stops else None)
    for sample in samples:
        new_text, _ = cut_at_stop(tokenizer.decode(sample), stops)
        sys.stdout.write(text + new_text + "\n---------------\n")


if __name__ == "__main__":
    main()
