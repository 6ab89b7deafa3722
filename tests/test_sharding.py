"""Data parallel and FSDP on 8 simulated CPU devices, and two processes with jax.distributed.

Each case runs in a child process: the number of CPU devices is fixed when JAX starts."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY, run_script

EIGHT_DEVICES = """
import itertools, json, sys
import equinox as eqx, jax, jax.numpy as jnp, numpy as np
from helpers import sharding
from helpers.optim import lr_schedule, make_optimizer
from helpers.training import init_state, make_step
from model import GPTConfig

config = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32)


def device_bytes(tree) -> int:  # the bytes of the tree's arrays on the first device
    device = jax.devices()[0]
    return sum(shard.data.nbytes for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)
               for shard in leaf.addressable_shards if shard.device == device)


schedule = lr_schedule(1e-2, 2, 5, 1e-3, True)
optimizers = {"adamw": make_optimizer(schedule, 0.1, 0.9, 0.95, 1.0),
              "muon": make_optimizer(schedule, 0.1, 0.9, 0.95, 1.0, muon_schedule=lambda step: 2 * schedule(step))}
batches = np.random.default_rng(0).integers(0, 40, (5, 1, 16, 17)).astype(np.int32)
result = {}
for (name, optimizer), spec in itertools.product(optimizers.items(), ["data:1,fsdp:1", "data:8", "fsdp:8", "data:2,fsdp:4"]):
    devices = jax.devices()[:1] if spec == "data:1,fsdp:1" else jax.devices()
    mesh = jax.sharding.Mesh(np.array(devices).reshape(1, 1), sharding.MESH_AXES) if len(devices) == 1 \\
        else sharding.make_mesh(spec)
    state = init_state(config, optimizer, seed=0)
    state = sharding.place(state, config, mesh)
    model, opt_state = state["model"], state["opt_state"]
    before = device_bytes((model, opt_state))
    losses = []
    for batch in batches:
        x = jax.device_put(batch[..., :-1], sharding.batch_sharding(mesh))
        y = jax.device_put(batch[..., 1:], sharding.batch_sharding(mesh))
        # The loss in 4 chunks of 4 positions (at most 5 fit the budget), each spanning the sharded batch.
        model, opt_state, loss = make_step(model, opt_state, x, y, jax.random.key(0), optimizer, loss_chunk=16 * 5 * 40)
        losses.append(float(loss))
    result[f"{name} {spec}"] = {"losses": losses, "bytes_before": before,
                    "bytes_after": device_bytes((model, opt_state)),
                    "wte": np.asarray(model.wte.weight).tolist()}
json.dump(result, sys.stdout)
"""


def run_child(code: str, devices: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def eight_device_runs() -> dict:
    return json.loads(run_child(EIGHT_DEVICES, 8).stdout)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
@pytest.mark.parametrize("spec", ["data:8", "fsdp:8", "data:2,fsdp:4"])
def test_sharded_losses_equal_the_single_device_run(eight_device_runs, optimizer, spec):
    single, sharded = eight_device_runs[f"{optimizer} data:1,fsdp:1"], eight_device_runs[f"{optimizer} {spec}"]
    np.testing.assert_allclose(sharded["losses"], single["losses"], atol=1e-5)
    np.testing.assert_allclose(sharded["wte"], single["wte"], atol=1e-5)


def test_muon_and_adamw_train_differently(eight_device_runs):
    # Otherwise the muon cases above could be AdamW under another name.
    adamw, muon = eight_device_runs["adamw data:1,fsdp:1"], eight_device_runs["muon data:1,fsdp:1"]
    assert abs(adamw["losses"][-1] - muon["losses"][-1]) > 1e-4


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_fsdp_holds_an_eighth_of_the_state_per_device(eight_device_runs, optimizer):
    replicated, fsdp = eight_device_runs[f"{optimizer} data:8"], eight_device_runs[f"{optimizer} fsdp:8"]
    for when in ("bytes_before", "bytes_after"):
        assert fsdp[when] < 0.15 * replicated[when]  # 1/8 = 0.125, plus small replicated scalars


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path, char_dataset):
    # The three steps run as one compiled call: each process hands its own rows of all three batches.
    common = ["train.py", f"--dataset={char_dataset}", *TINY, "--batch_size=4", "--max_iters=3",
              "--eval_interval=3", "--steps_per_call=3", "--always_save_checkpoint=True"]
    port = free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [
        subprocess.Popen([sys.executable, *common, f"--out_dir={tmp_path / 'multi'}", "--num_processes=2",
                          f"--process_id={i}", f"--coordinator_address=127.0.0.1:{port}"],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err
    digests = [line.split()[-1] for out, _ in outputs for line in out.splitlines() if "parameter digest" in line]
    assert len(digests) == 2 and digests[0] == digests[1]  # both processes hold the same parameters
    assert "step 3:" in outputs[0][0] and "step 3:" not in outputs[1][0]  # only process 0 logs

    # One process, one device, the same global batch of 8 rows.
    run_script(*[a.replace("--batch_size=4", "--batch_size=8") for a in common], f"--out_dir={tmp_path / 'single'}")
    from helpers.training import load_trained_model

    multi, _ = load_trained_model(tmp_path / "multi")
    single, _ = load_trained_model(tmp_path / "single")
    np.testing.assert_allclose(multi.wte.weight, single.wte.weight, atol=1e-5)
