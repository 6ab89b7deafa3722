"""helpers/batches.py: a run's batches are a pure function of (seed, split, iteration)."""

import json

import numpy as np
import pytest

from helpers import sharding
from helpers.batches import Batches
from helpers.errors import UserError
from model import GPTConfig


@pytest.fixture
def batches(char_dataset):
    meta = json.loads((char_dataset / "meta.json").read_text())
    config = GPTConfig(block_size=16, vocab_size=meta["vocab_size"], n_layer=1, n_head=1, n_embd=8)
    return lambda seed=0: Batches(char_dataset, meta, config, 4, seed, sharding.make_mesh(""))


def test_an_iterations_batch_is_the_same_however_the_steps_are_grouped(batches):
    x, y = batches().train(10, 3, accumulation=2)
    assert x.shape == y.shape == (3, 2, 4, 16)
    for i in range(3):
        xi, yi = batches().train(10 + i, 1, accumulation=2)
        np.testing.assert_array_equal(np.asarray(x[i]), np.asarray(xi[0]))
        np.testing.assert_array_equal(np.asarray(y[i]), np.asarray(yi[0]))
    np.testing.assert_array_equal(np.asarray(x)[..., 1:], np.asarray(y)[..., :-1])  # targets: the next tokens


def test_seeds_splits_and_evaluation_draw_other_batches(batches):
    train = np.asarray(batches().train(0, 1, 1)[0])[0, 0]
    assert not np.array_equal(train, np.asarray(batches(seed=1).train(0, 1, 1)[0])[0, 0])
    assert not np.array_equal(train, np.asarray(batches().evaluation("train", 0, 1)[0])[0])
    assert batches().evaluation("val", 0, 3)[0].shape == (3, 4, 16)


def test_a_model_of_another_vocabulary_is_refused(char_dataset):
    meta = json.loads((char_dataset / "meta.json").read_text())
    config = GPTConfig(block_size=16, vocab_size=meta["vocab_size"] + 1, n_layer=1, n_head=1, n_embd=8)
    with pytest.raises(UserError, match=f"the model has vocab_size {meta['vocab_size'] + 1} but"):
        Batches(char_dataset, meta, config, 4, 0, sharding.make_mesh(""))
