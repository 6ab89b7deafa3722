"""Pictures of runs: loss curves of several runs on one chart, or a prompt's attention maps.

    python plot.py --out_dirs='("out-gelu", "out-swiglu")' --output=compare.png
    python plot.py --what=bpb --out_dirs='("out-bpe", "out-gpt2")'   # runs with different tokenizers
    python plot.py --what=attention --out_dir=out-shakespeare-char --prompt="ROMEO:" --output=attention.svg

train.py already draws each run's own out_dir/loss.png at every evaluation. Ctrl-C ends the
script at once.
"""
# ruff: noqa: E402

from helpers.interrupt import exit_on_ctrl_c

if __name__ == "__main__":
    exit_on_ctrl_c("plot.py: stopped by Ctrl-C")  # first of all: importing jax and matplotlib takes seconds

import contextlib
from pathlib import Path

import jax.numpy as jnp

from configurator import configure
from helpers.data import run_tokenizer
from helpers.errors import UserError, report_user_errors
from helpers.figures import (
    FORMATS,
    MEASURES,
    attention_maps,
    plot_attention,
    plot_losses,
    read_log,
    token_label,
)
from helpers.registry import accepts
from helpers.training import CHECKPOINTS, load_trained_model

PICTURES = (*MEASURES, "attention")  # what plot.py draws

# -----------------------------------------------------------------------------------------------
what: accepts(choices=PICTURES) = "loss"  # loss: train/val loss of out_dirs on one chart; bpb: their bits per byte; attention: attention maps of a prompt
out_dirs = ("out",)  # loss, bpb: the runs to compare, each a training run's out_dir
out_dir = "out"  # attention: the run whose checkpoint to look into
checkpoint: accepts(choices=CHECKPOINTS) = "ckpt.eqx"  # attention: which of its checkpoints; ckpt.eqx: the latest, best.eqx: the best val loss
prompt = "ROMEO:\nWhat light"  # attention: the text whose attention is drawn (at most 64 tokens)
output = ""  # the picture to write, in the format its suffix names (.png, .svg, .pdf, ...); "" writes loss.png, bpb.png or attention.png here
# -----------------------------------------------------------------------------------------------

MAX_PROMPT_TOKENS = 64  # beyond this the cells of the heatmaps become too small to see


def output_path() -> Path:
    """Where the picture goes: refused before any work when it cannot be written there."""
    path = Path(output or f"{what}.png")
    if path.suffix.removeprefix(".").lower() not in FORMATS:
        problem = f"{path.suffix} is no picture format matplotlib writes" if path.suffix else "no suffix names its format"
        raise UserError(f"--output={output}: {problem}; end the name in one of {', '.join('.' + f for f in FORMATS)}")
    if not path.parent.is_dir():
        raise UserError(f"--output={output}: there is no folder {path.parent}; create it, or write elsewhere")
    return path


@contextlib.contextmanager
def writing(path: Path):
    """A picture that cannot be written (a read-only folder, a full disk) is the user's one-line fix."""
    try:
        yield
    except OSError as error:
        raise UserError(f"cannot write {path} ({error.strerror or error}): pick another --output") from None


@report_user_errors
def main():
    configure(globals())
    path = output_path()
    if what in MEASURES:
        if not out_dirs:
            raise UserError("out_dirs is empty: name the runs to draw, --out_dirs=out or --out_dirs='(\"out-a\", \"out-b\")'")
        names = [Path(d).resolve().name for d in out_dirs]
        if len(set(names)) < len(names):  # runs in folders of the same name: say where each is
            names = [str(d) for d in out_dirs]
        runs = {name: read_log(Path(d)) for name, d in zip(names, out_dirs)}
        if what == "bpb" and not any(f"val_{what}" in r for records in runs.values() for r in records):
            raise UserError("these runs logged no bits per byte: their datasets were prepared before "
                            "meta.json counted bytes; prepare them again, or plot --what=loss")
        with writing(path):
            plot_losses(runs, path, what)
    else:
        model, header = load_trained_model(Path(out_dir), checkpoint)
        tokenizer = run_tokenizer(header)
        ids = tokenizer.encode(prompt)
        if not 0 < len(ids) <= min(MAX_PROMPT_TOKENS, model.config.block_size):
            raise UserError(f"the prompt has {len(ids)} tokens: give between 1 and "
                            f"{min(MAX_PROMPT_TOKENS, model.config.block_size)}")
        maps = attention_maps(model, jnp.array(ids))
        if not maps:
            raise UserError(f"{out_dir}'s model has no attention layers to draw")
        tokens = [token_label(tokenizer.decode([i])) for i in ids]
        with writing(path):
            plot_attention(maps, tokens, path, f"{Path(out_dir).resolve().name}: attention on {prompt!r}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
