"""A family of named architectures (fairseq2's way): presets derived from one another, built by
the one factory, loaded from their checkpoints and from Hugging Face GPT-2 weights of their shape.

    python train.py examples/gpt2_family.py                         # family-small, from scratch
    python train.py examples/gpt2_family.py --arch=family-deep      # another member
    python train.py examples/gpt2_family.py --init_from=HF_DIR      # GPT-2 weights of family-small's shape
    python sample.py examples/gpt2_family.py
    python check.py examples/gpt2_family.py

Every member is GPT-2's architecture, so each one exports back to Hugging Face exactly
(`python -m helpers.hf examples/gpt2_family.py out-family HF_DIR`), and GPT-2 weights load into
the member of their shape: with --init_from=HF_DIR the member's fields are what the run asks
for, and weights of another shape are refused in one line, never silently reshaped.
"""

from helpers.archs import ARCHS, gpt2


@ARCHS.register("family-small")
def family_small() -> dict:
    """The family's base: GPT-2's architecture (GELU, LayerNorm, biases) at 4 layers, 128 wide."""
    return gpt2() | dict(n_layer=4, n_head=4, n_embd=128, block_size=64)


@ARCHS.register("family-wide")
def family_wide() -> dict:
    """family-small, twice as wide."""
    return family_small() | dict(n_head=8, n_embd=256)


@ARCHS.register("family-deep")
def family_deep() -> dict:
    """family-small, twice as deep."""
    return family_small() | dict(n_layer=8)


# The run: the family's base on the embedded corpus.
arch = "family-small"
out_dir = "out-family"
dataset = "python_docs_char"
max_iters = 500
lr_decay_iters = 500
eval_interval = 250
start = "The "
