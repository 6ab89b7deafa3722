"""nanoGPT's CPU "baby" run (4 layers, 128 wide, T=64, 2,000 iterations) in PyTorch, from our
init and our batches for the same seed: what train.py's val loss would be if our model or
optimizer differed in nothing. A measurement tool for the results, and nanoGPT's schedule for
tests/test_torch_reference.py:

    python tests/torch_baby_run.py --mlp=gelu --seed=1337   # after data/shakespeare_char/prepare.py
"""

import math
import sys
from pathlib import Path

import optax
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.data import batch_rng, dataset_dir, get_batch, open_split, read_meta  # noqa: E402
from helpers.torch_reference import adamw, from_jax  # noqa: E402
from helpers.training import init_state  # noqa: E402
from model import GPTConfig  # noqa: E402


def nanogpt_lr(step: int, learning_rate: float, warmup: int, decay_iters: int, min_lr: float) -> float:
    """nanoGPT's schedule in plain Python: linear warmup, cosine to min_lr, then flat."""
    if step < warmup:
        return learning_rate * (step + 1) / (warmup + 1)
    if step > decay_iters:
        return min_lr
    ratio = (step - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def train_baby(mlp: str, seed: int, dataset: str) -> dict:
    """nanoGPT's CPU "baby" run in PyTorch, from our init and our batches for the same seed:
    what train.py's val loss would be if our model or optimizer differed in nothing."""
    data_dir = dataset_dir(dataset)
    config = GPTConfig(block_size=64, vocab_size=read_meta(data_dir)["vocab_size"], n_layer=4,
                       n_head=4, n_embd=128, bias=False, mlp=mlp)
    # train.py's init for this seed: init_state draws the model the same way whatever the optimizer.
    model = from_jax(init_state(config, optax.identity(), seed)["model"])
    optimizer = adamw(model, 1e-3, 0.1, (0.9, 0.99))
    train, val = open_split(data_dir, "train", 64), open_split(data_dir, "val", 64)
    as_long = lambda a: torch.from_numpy(a).long()
    for step in range(2000):
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(step, 1e-3, 100, 2000, 1e-4)
        x, y = get_batch(train, (12,), 64, batch_rng(seed, 0, step))  # train.py's TRAIN stream
        loss = model.loss(as_long(x), as_long(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    with torch.no_grad():
        x, y = get_batch(val, (20, 12), 64, batch_rng(seed, 3, 2000))  # train.py's last val eval
        val_loss = sum(model.loss(as_long(x[i]), as_long(y[i])).item() for i in range(20)) / 20
    return {"mlp": mlp, "seed": seed, "val_loss": round(val_loss, 4)}


if __name__ == "__main__":
    from configurator import configure

    settings = configure({"mlp": "gelu", "seed": 1337, "dataset": "shakespeare_char", "__file__": __file__},
                         sys.argv[1:])
    print(train_baby(**settings))
