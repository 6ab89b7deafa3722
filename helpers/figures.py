"""Pictures of training runs: loss curves from log.jsonl, and attention maps from a checkpoint.

matplotlib draws off-screen (the Agg backend), so this works on a machine with no display.
Every picture is written to a temporary file and renamed into place, like the checkpoints.
"""

import itertools
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from jaxtyping import Array, Float, Int  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from helpers.errors import UserError  # noqa: E402
from model import GPT, CausalSelfAttention, attend, causal_mask  # noqa: E402

# What `save` writes, named by a file's suffix: png, svg, pdf, jpg, ... (pgf, LaTeX's, needs LaTeX installed).
FORMATS = tuple(name for name in FigureCanvasAgg.get_supported_filetypes() if name != "pgf")


def read_log(out_dir: Path) -> list[dict]:
    """The records train.py appended to out_dir/log.jsonl: training lines and evaluations. A line
    that is no record (one cut short by a crash) is skipped with a warning: the rest still makes
    a picture, and train.py draws from here while it runs, which a broken line must not stop."""
    path = Path(out_dir) / "log.jsonl"
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: is {out_dir} the out_dir of a training run?") from None
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror or error})") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # not JSON, or not even UTF-8
            record = None
        if isinstance(record, dict) and isinstance(record.get("iter"), int):
            records.append(record)
        else:
            print(f"warning: {path} line {number} is not a JSON record: skipped", file=sys.stderr)
    return records


def save(fig, path: Path) -> None:
    """Write `fig` in the format its file's suffix names (one of FORMATS), and close it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp" + path.suffix)
    try:
        with tmp.open("wb") as file:
            fig.savefig(file, format=path.suffix.removeprefix(".").lower())
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)  # what a failed write left


def latest(records: list[dict], field: str) -> list[dict]:
    """The records that have `field`, one per iteration, in order. A resumed run repeats the
    iterations after its checkpoint; the later record of each wins."""
    by_iter = {r["iter"]: r for r in records if field in r}
    return [by_iter[i] for i in sorted(by_iter)]


MEASURES = {"loss": "loss (cross-entropy, nats per token)", "bpb": "bits per byte of text"}


def plot_losses(runs: dict[str, list[dict]], path: Path, measure: str = "loss") -> None:
    """Train and val loss (or bits per byte, measure="bpb") against iteration for each run, one
    colour per run, and, for a single run, the learning rate on a second axis. Only the loss
    has a point for every logged step; bits per byte exist at evaluations."""
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120, layout="constrained")
    colors = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for (name, records), color in zip(runs.items(), colors):
        prefix = f"{name}: " if len(runs) > 1 else ""
        if measure == "loss":
            steps = latest(records, "loss")
            ax.plot([r["iter"] for r in steps], [r["loss"] for r in steps], color=color, alpha=0.3,
                    linewidth=1, label=f"{prefix}train (each logged step)")
        train_evals = latest(records, f"train_{measure}")  # a run with --eval_train=False has none
        ax.plot([r["iter"] for r in train_evals], [r[f"train_{measure}"] for r in train_evals], color=color,
                linestyle="--", marker=".", label=f"{prefix}train (evaluated)")
        evals = latest(records, f"val_{measure}")
        ax.plot([r["iter"] for r in evals], [r[f"val_{measure}"] for r in evals], color=color,
                marker="o", markersize=4, label=f"{prefix}val")
    ax.set_xlabel("iteration")
    ax.set_ylabel(MEASURES[measure])
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if len(runs) == 1:
        steps = latest(next(iter(runs.values())), "lr")
        lr_axis = ax.twinx()
        lr_axis.plot([r["iter"] for r in steps], [r["lr"] for r in steps], color="gray",
                     linestyle=":", label="learning rate")
        lr_axis.set_ylabel("learning rate")
        lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        more_handles, more_labels = lr_axis.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper right", fontsize="small")
    what = "loss" if measure == "loss" else "bits per byte"
    ax.set_title(" vs ".join(runs) if len(runs) > 1 else f"{next(iter(runs))}: {what} and learning rate")
    save(fig, path)


def attention_weights(attn: CausalSelfAttention, x: Float[Array, "T C"]) -> Float[Array, "H T T"]:
    """An attention layer's probabilities for its input x: row i of head h says how much
    position i takes from each position (what the layer's fused kernel never builds)."""
    positions = jnp.arange(x.shape[0])
    q, k, v = attn.heads(x, positions)
    return attend(q, k, v, causal_mask(positions, positions, attn.window))[1]


def attention_maps(model: GPT, idx: Int[Array, " T"]) -> dict[int, Float[Array, "H T T"]]:
    """Each attention layer's probabilities for one sequence, by layer index (layers with
    another mixer have none). Runs the layers one at a time, as GPT.__call__ does."""
    if not isinstance(model, GPT):
        raise UserError(f"attention maps are drawn from a GPT's blocks, and {type(model).__name__} is no GPT")
    x = model.embed(idx, 0)
    maps = {}
    for i, block in enumerate(model.blocks()):
        if isinstance(getattr(block, "attn", None), CausalSelfAttention):
            maps[i] = attention_weights(block.attn, block.ln_1(x))
        x = block(x)
    return maps


def plot_attention(maps: dict[int, Float[Array, "H T T"]], tokens: list[str], path: Path, title: str) -> None:
    """A grid of heatmaps, one row per layer and one column per head: the row for query i
    shows where position i looks. Tokens label the axes when there are few enough to read."""
    n_layers, n_heads = len(maps), next(iter(maps.values())).shape[0]
    labelled = len(tokens) <= 24
    side = 2.2 if labelled else 1.8  # inches per heatmap: room for the labels
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(side * n_heads + 1, side * n_layers + 0.8),
                             dpi=120, squeeze=False, layout="constrained")
    for row, (layer, weights) in enumerate(maps.items()):
        for head in range(n_heads):
            ax = axes[row, head]
            image = ax.imshow(np.asarray(weights[head]), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_title(f"layer {layer}, head {head}", fontsize="small")
            ax.set_xticks(range(len(tokens)) if labelled else [])
            ax.set_yticks(range(len(tokens)) if labelled else [])
            if labelled:
                ax.set_xticklabels(tokens if row == n_layers - 1 else [], fontsize=6, rotation=90)
                ax.set_yticklabels(tokens if head == 0 else [], fontsize=6)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (row: query, column: key)")
    fig.suptitle(title)
    save(fig, path)


def token_label(token: str) -> str:
    """A token as a readable axis label: spaces and newlines shown as symbols."""
    return token.replace(" ", "\u2423").replace("\n", "\u21b5")
