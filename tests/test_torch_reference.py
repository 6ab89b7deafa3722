"""Our model, optimizer and schedule against the same GPT written in PyTorch: equal numbers."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from helpers.optim import lr_schedule, make_optimizer
from helpers.torch_reference import adamw, from_jax
from helpers.training import init_state, make_step
from model import GPTConfig
from torch_baby_run import nanogpt_lr


@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("bias", [True, False])
def test_logits_equal_pytorch(mlp, bias):
    config = GPTConfig(block_size=24, vocab_size=50, n_layer=3, n_head=4, n_embd=48, bias=bias, mlp=mlp)
    model = init_state(config, make_optimizer(lr_schedule(1e-3, 0, 1, 1e-4, False), 0.1, 0.9, 0.99, 1.0), 0)["model"]
    # Random biases and norm gains, so a dropped or misplaced one shows up.
    leaves, treedef = jax.tree.flatten(model)
    keys = jax.random.split(jax.random.key(5), len(leaves))
    model = jax.tree.unflatten(treedef, [
        leaf + 0.1 * jax.random.normal(k, leaf.shape) if eqx.is_inexact_array(leaf) else leaf
        for leaf, k in zip(leaves, keys)
    ])
    idx = np.random.default_rng(0).integers(0, 50, (2, 24))
    ours = jax.vmap(model)(jnp.asarray(idx, jnp.int32))
    with torch.no_grad():
        theirs = from_jax(model)(torch.from_numpy(idx)).numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-5, rtol=1e-4)


def test_schedule_equals_nanogpt():
    ours = lr_schedule(1e-3, 10, 50, 1e-4, True)
    np.testing.assert_allclose(
        [float(ours(s)) for s in range(60)], [nanogpt_lr(s, 1e-3, 10, 50, 1e-4) for s in range(60)],
        rtol=1e-5,
    )


def test_training_steps_equal_pytorch():
    """Five AdamW steps with warmup, weight decay and clipping: same losses, same weights."""
    config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32, mlp="gelu", bias=False)
    optimizer = make_optimizer(lr_schedule(1e-2, 3, 5, 1e-3, True), 0.1, 0.9, 0.99, 1.0)
    state = init_state(config, optimizer, seed=0)
    model, opt_state = state["model"], state["opt_state"]
    torch_model = from_jax(model)
    torch_optimizer = adamw(torch_model, 1e-2, 0.1, (0.9, 0.99))
    batches = np.random.default_rng(1).integers(0, 40, (5, 8, 17))
    ours, theirs = [], []
    for step, batch in enumerate(batches):
        x, y = jnp.asarray(batch[None, :, :-1], jnp.int32), jnp.asarray(batch[None, :, 1:], jnp.int32)
        model, opt_state, loss = make_step(model, opt_state, x, y, jax.random.key(0), optimizer)
        ours.append(float(loss))

        for group in torch_optimizer.param_groups:
            group["lr"] = nanogpt_lr(step, 1e-2, 3, 5, 1e-3)
        torch_loss = torch_model.loss(torch.from_numpy(batch[:, :-1]), torch.from_numpy(batch[:, 1:]))
        torch_optimizer.zero_grad()
        torch_loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_model.parameters(), 1.0)
        torch_optimizer.step()
        theirs.append(torch_loss.item())
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(model.wte.weight, torch_model.wte.weight.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(
        model.h.mlp.c_fc.weight[1], torch_model.h[1].c_fc.weight.detach().numpy(), atol=1e-5
    )

