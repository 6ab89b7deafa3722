"""A training run's batches: windows of the dataset's token files, drawn as a pure function of
(seed, stream, iteration) and placed on the device mesh."""

from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from helpers import sharding
from helpers.data import batch_rng, get_batch, model_vocab_size, open_split
from helpers.errors import UserError
from model import GPTConfig

TRAIN_STREAM, VAL_STREAM = 0, 1  # batch_rng streams: train and val never share a batch
EVAL_STREAM_OFFSET = 2  # streams 2 and 3: evaluation never draws the batches training will see


class Batches:
    """Every process draws the same global batch (the sampler is a pure function of the
    iteration) and hands its own devices their rows of it."""

    def __init__(self, data_dir: Path, meta: dict, config: GPTConfig, batch_size: int, data_seed: int, mesh: Mesh):
        if config.vocab_size not in (meta["vocab_size"], model_vocab_size(meta)):
            raise UserError(f"the model has vocab_size {config.vocab_size} but {data_dir} has "
                            f"{meta['vocab_size']}: train on a dataset with the model's tokenizer")
        # The global batch: batch_size sequences per device on the data and fsdp axes.
        self.rows = batch_size * sharding.data_parallel_size(mesh)
        if self.rows % jax.process_count():
            raise UserError(f"{self.rows} sequences per batch do not split over {jax.process_count()} processes")
        self.data_dir, self.vocab_size, self.block_size = data_dir, meta["vocab_size"], config.block_size
        self.data_seed, self.mesh = data_seed, mesh
        self.splits = {split: open_split(data_dir, split, config.block_size) for split in ("train", "val")}

    def draw(self, split: str, shape: tuple[int, int], stream: int, iter_num: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = get_batch(self.splits[split], shape, self.block_size, batch_rng(self.data_seed, stream, iter_num))
        if y.max() >= self.vocab_size:  # JAX would silently clamp such an index
            raise UserError(f"{self.data_dir} holds token id {y.max()}, but the vocabulary has {self.vocab_size} "
                            "tokens: its meta.json does not match its .bin files; run prepare.py again")
        return x, y

    def place(self, a: np.ndarray) -> jax.Array:
        """A global batch sharded over the mesh: each process hands its devices its own rows."""
        mine = sharding.local_rows(a.shape[-2])
        return jax.make_array_from_process_local_data(sharding.batch_sharding(self.mesh, a.ndim), a[..., mine, :], a.shape)

    def train(self, first: int, count: int, accumulation: int) -> tuple[jax.Array, jax.Array]:
        """The batches of iterations first .. first + count - 1, stacked, each of `accumulation`
        micro-batches. Each comes from its own iteration's generator, so the number of steps
        per compiled call never changes which batches a run sees."""
        draws = [self.draw("train", (accumulation, self.rows), TRAIN_STREAM, first + i) for i in range(count)]
        return self.place(np.stack([x for x, _ in draws])), self.place(np.stack([y for _, y in draws]))

    def evaluation(self, split: str, iter_num: int, count: int) -> tuple[jax.Array, jax.Array]:
        """`count` batches of `split` for the evaluation at `iter_num`."""
        stream = EVAL_STREAM_OFFSET + (TRAIN_STREAM if split == "train" else VAL_STREAM)
        x, y = self.draw(split, (count, self.rows), stream, iter_num)
        return self.place(x), self.place(y)
