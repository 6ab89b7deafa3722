import equinox as eqx
import jax
import numpy as np
import pytest

from helpers import checkpoint
from helpers.optim import lr_schedule, make_optimizer
from helpers.training import init_state
from model import GPTConfig

CONFIG = GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16)
OPTIMIZER = make_optimizer(lr_schedule(1e-3, 1, 10, 1e-4, True), 0.1, 0.9, 0.95, 1.0)


def saved(tmp_path):
    state = init_state(CONFIG, OPTIMIZER, seed=3)
    path = tmp_path / "ckpt.eqx"
    checkpoint.save(path, {"iter_num": 5}, state)
    return path, state


def test_round_trip(tmp_path):
    path, state = saved(tmp_path)
    assert checkpoint.read_header(path)["iter_num"] == 5
    loaded = checkpoint.load(path, eqx.filter_eval_shape(init_state, CONFIG, OPTIMIZER, 0))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(loaded)):
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / "ckpt.eqx.tmp").exists()


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_checkpoint_gives_a_clear_error(tmp_path, keep):
    path, _ = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path, eqx.filter_eval_shape(init_state, CONFIG, OPTIMIZER, 0))


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "ckpt.eqx"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(checkpoint.CheckpointError, match="not a nanoJAXGPT checkpoint"):
        checkpoint.read_header(path)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint"):
        checkpoint.read_header(tmp_path / "missing.eqx")
