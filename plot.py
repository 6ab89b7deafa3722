"""Pictures of runs: loss curves of several runs on one chart, or a prompt's attention maps.

    python plot.py --out_dirs='("out-gelu", "out-swiglu")' --output=compare.png
    python plot.py --what=bpb --out_dirs='("out-bpe", "out-gpt2")'   # runs with different tokenizers
    python plot.py --what=attention --out_dir=out-shakespeare-char --prompt="ROMEO:" --output=attention.png

train.py already draws each run's own out_dir/loss.png at every evaluation.
"""

from pathlib import Path

import jax.numpy as jnp

from configurator import configure
from helpers.data import run_tokenizer
from helpers.errors import UserError, report_user_errors
from helpers.plots import MEASURES, attention_maps, plot_attention, plot_losses, read_log, token_label
from helpers.training import load_trained_model

# -----------------------------------------------------------------------------------------------
what = "loss"  # loss: train/val loss of out_dirs on one chart; bpb: their bits per byte; attention: attention maps of a prompt
out_dirs = ("out",)  # loss, bpb: the runs to compare, each a training run's out_dir
out_dir = "out"  # attention: the run whose checkpoint to look into
checkpoint = "ckpt.eqx"  # attention: ckpt.eqx (the latest) or best.eqx (best val loss)
prompt = "ROMEO:\nWhat light"  # attention: the text whose attention is drawn (at most 64 tokens)
output = ""  # the PNG to write; "" writes loss.png or attention.png here
# -----------------------------------------------------------------------------------------------

MAX_PROMPT_TOKENS = 64  # beyond this the cells of the heatmaps become too small to see


@report_user_errors
def main():
    configure(globals())
    if what in MEASURES:
        path = Path(output or f"{what}.png")
        names = [Path(d).resolve().name for d in out_dirs]
        if len(set(names)) < len(names):  # runs in folders of the same name: say where each is
            names = [str(d) for d in out_dirs]
        runs = {name: read_log(Path(d)) for name, d in zip(names, out_dirs)}
        if what == "bpb" and not any(f"val_{what}" in r for records in runs.values() for r in records):
            raise UserError("these runs logged no bits per byte: their datasets were prepared before "
                            "meta.json counted bytes; prepare them again, or plot --what=loss")
        plot_losses(runs, path, what)
    elif what == "attention":
        path = Path(output or "attention.png")
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
        plot_attention(maps, tokens, path, f"{Path(out_dir).resolve().name}: attention on {prompt!r}")
    else:
        raise UserError(f"what must be loss, bpb or attention, got {what!r}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
