"""A training run's batches: windows of the dataset's token files, drawn as a pure function of
(seed, stream, iteration) and placed on the device mesh."""

from pathlib import Path

import jax
import numpy as np
from jax.sharding import Mesh

from helpers import sharding
from helpers.data import batch_rng, get_batch, open_split
from helpers.errors import UserError

TRAIN_STREAM, VAL_STREAM = 0, 1  # batch_rng streams: train and val never share a batch
EVAL_STREAM_OFFSET = 2  # streams 2 and 3: evaluation never draws the batches training will see


class Batches:
    """Every process draws the same global batch (the sampler is a pure function of the
    iteration) and hands its own devices their rows of it."""

    def __init__(self, data_dir: Path, meta: dict, block_size: int, rows: int, data_seed: int, mesh: Mesh):
        self.data_dir, self.vocab_size, self.block_size = data_dir, meta["vocab_size"], block_size
        self.rows, self.data_seed, self.mesh = rows, data_seed, mesh
        self.splits = {"train": open_split(data_dir, "train", block_size), "val": open_split(data_dir, "val", block_size)}

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
