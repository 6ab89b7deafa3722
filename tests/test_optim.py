import jax
import numpy as np

from helpers.optim import decay_mask, lr_schedule
from model import GPT, GPTConfig


def test_schedule_warms_up_from_nonzero_then_decays_to_min_lr():
    schedule = lr_schedule(1e-3, warmup_iters=10, lr_decay_iters=100, min_lr=1e-4, decay_lr=True)
    assert np.isclose(schedule(0), 1e-3 / 11)
    assert np.isclose(schedule(10), 1e-3)
    assert np.isclose(schedule(55), 1e-4 + 0.5 * (1e-3 - 1e-4))
    assert np.isclose(schedule(100), 1e-4) and np.isclose(schedule(500), 1e-4)
    assert np.isclose(lr_schedule(1e-3, 10, 100, 1e-4, decay_lr=False)(0), 1e-3)


def test_weight_decay_only_on_matrices():
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=16, bias=True),
                key=jax.random.key(0))
    mask = decay_mask(model)
    assert mask.wte.weight and mask.wpe.weight and mask.h.attn.c_attn.weight and mask.h.mlp.c_proj.weight
    assert not mask.h.ln_1.weight and not mask.h.attn.c_attn.bias and not mask.ln_f.weight
