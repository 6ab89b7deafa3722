import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pytest

from conftest import ROOT, TINY, corpus_text, run_script
from helpers import checkpoint
from helpers.optim import optimizer_from_settings
from helpers.tokenizer import tokenizer_sha256
from helpers.training import checkpoint_config, init_state
from model import GPTConfig


def train(out_dir, dataset, *extra, check=True):
    return run_script("train.py", f"--dataset={dataset}", f"--out_dir={out_dir}", *TINY, *extra, check=check)


def losses(out_dir):
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in records if "loss" in r}, records


def load_params(out_dir):
    path = out_dir / "ckpt.eqx"
    header = checkpoint.read_header(path)
    optimizer, _ = optimizer_from_settings(header["settings"])
    like = eqx.filter_eval_shape(init_state, checkpoint_config(header, path), optimizer, 0)
    return header, checkpoint.load(path, like)


def test_short_run_learns_and_logs(tmp_path, char_dataset):
    out = tmp_path / "run"
    result = train(out, char_dataset, "--max_iters=30", "--eval_interval=30", "--dropout=0.2")
    by_iter, records = losses(out)
    evals = [r for r in records if "val_loss" in r]
    assert evals[0]["iter"] == 0 and evals[-1]["iter"] == 30
    assert evals[-1]["val_loss"] < 0.85 * evals[0]["val_loss"]
    assert "tokens/s" in result.stdout and "MFU" in result.stdout
    assert {"ms_per_iter", "tokens_per_s", "mfu", "lr"} <= set(records[1])
    # Where the time went, the last line: the parts in the order they first took time (a part
    # under 0.05 s is left out), each once, adding up to the total.
    total, parts = re.fullmatch(r"time: ([\d.]+) s: (.*)", result.stdout.splitlines()[-1]).groups()
    split = dict(re.fullmatch(r"(.+) ([\d.]+) s", part).groups() for part in parts.split(", "))
    order = ["start-up (Python and imports)", "setup (data and model)", "compiling the evaluation",
             "evaluating", "the log and its picture", "compiling the step", "training", "saving"]
    assert [part for part in order if part in split] == list(split)
    assert {"compiling the step", "training"} <= set(split)
    assert abs(sum(map(float, split.values())) - float(total)) <= 0.05 * len(order)


def test_loading_train_leaves_no_start_time_for_later_runs():
    # A start time left in the environment would be inherited by every run started after it
    # (these tests' own), and their times to a target would count from the wrong moment.
    spec = importlib.util.spec_from_file_location("train_loaded_here", ROOT / "train.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "NANOJAXGPT_STARTED" not in os.environ


def test_a_run_keeps_its_compiled_programs_for_the_next(tmp_path, char_dataset):
    # Outside the tests' own cache (conftest.py sets JAX_COMPILATION_CACHE_DIR, which wins). With
    # JAX_LOG_COMPILES, JAX says each program it finds in the cache.
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"} | {"JAX_LOG_COMPILES": "1"}
    cache = tmp_path / "cache"

    def found(name, compile_cache) -> set:
        result = subprocess.run([sys.executable, "train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / name}",
                                 *TINY, "--max_iters=2", "--eval_interval=2", f"--compile_cache={compile_cache}"],
                                cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        return set(re.findall(r"Persistent compilation cache hit for '(\w+)'", result.stderr))

    programs = {"jit_build_model", "jit_eval_loss", "jit_make_steps"}
    assert found("first", cache).isdisjoint(programs)  # an empty cache: every program compiled, and kept
    assert programs <= found("again", cache)  # the model's init, the evaluation and the step: all found
    assert found("uncached", "") == set()


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_is_exact(tmp_path, char_dataset, optimizer):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--eval_interval=3", "--always_save_checkpoint=True", "--dropout=0.1",
              "--gradient_accumulation_steps=2", f"--optimizer={optimizer}"]
    train(straight, char_dataset, "--max_iters=6", *common)
    train(split, char_dataset, "--max_iters=3", *common)
    # Another seed on resume changes nothing: the dropout key and the batch order come from the checkpoint.
    resumed = train(split, char_dataset, "--max_iters=6", "--init_from=resume", "--seed=7", *common)
    assert "with the random state the checkpoint holds (seed 1337): seed=7 applies to new runs" in resumed.stdout
    straight_losses, _ = losses(straight)
    split_losses, _ = losses(split)
    assert sorted(split_losses) == list(range(1, 7))
    assert split_losses == straight_losses
    header_a, state_a = load_params(straight)
    header_b, state_b = load_params(split)
    assert header_a["iter_num"] == header_b["iter_num"] == 6
    for x, y in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
        np.testing.assert_array_equal(x, y)


def test_a_run_may_resume_with_its_layers_run_another_way(tmp_path, char_dataset):
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = ["--eval_interval=3", "--always_save_checkpoint=True"]
    train(straight, char_dataset, "--max_iters=6", *common)
    train(split, char_dataset, "--max_iters=3", "--scan_layers=True", "--remat=dots", *common)
    # How the layers run is this run's choice, not part of the architecture; so is skipping
    # non-finite updates, whose optimizer state takes the saved one in (none is skipped here).
    # Muon's settings shape no AdamW state, so they are not named as a cause.
    resumed = train(split, char_dataset, "--max_iters=6", "--init_from=resume", "--scan_layers=False",
                    "--skip_nonfinite=True", "--muon_ns_steps=3", *common)
    assert "(skip_nonfinite False -> True): kept what carries over (" in resumed.stdout
    straight_losses, _ = losses(straight)
    split_losses, _ = losses(split)
    np.testing.assert_allclose([split_losses[i] for i in range(1, 7)], [straight_losses[i] for i in range(1, 7)], rtol=1e-5)
    header, _ = load_params(split)
    assert header["model_config"]["scan_layers"] is False and header["settings"]["remat"] == "none"


def test_a_muon_run_may_resume_with_other_newton_schulz_coefficients(tmp_path, char_dataset):
    out = tmp_path / "run"
    common = ["--eval_interval=3", "--optimizer=muon"]
    train(out, char_dataset, "--max_iters=3", *common)
    resumed = train(out, char_dataset, "--max_iters=6", "--init_from=resume", "--muon_coefficients=polar_express",
                    "--muon_ns_steps=3", *common)
    assert "(muon_coefficients 'quintic' -> 'polar_express', muon_ns_steps 5 -> 3): kept what carries over (" \
        in resumed.stdout
    # Clipping turned off: every array of the state carries over.
    again = train(out, char_dataset, "--max_iters=8", "--init_from=resume", "--muon_coefficients=polar_express",
                  "--muon_ns_steps=3", "--grad_clip=0.0", *common)
    assert "(grad_clip 1.0 -> 0.0): kept all " in again.stdout and "schedule continues at its step 6\n" in again.stdout
    assert sorted(losses(out)[0]) == list(range(1, 9))


def test_steps_per_call_changes_nothing_but_speed(tmp_path, char_dataset):
    # Evaluations every 5 iterations cut calls of 4 short: the run takes calls of 4 and of 1.
    common = ["--max_iters=10", "--eval_interval=5", "--dropout=0.1", "--gradient_accumulation_steps=2"]
    train(tmp_path / "one", char_dataset, "--steps_per_call=1", *common)
    train(tmp_path / "four", char_dataset, "--steps_per_call=4", *common)
    (one, one_records), (four, four_records) = losses(tmp_path / "one"), losses(tmp_path / "four")
    assert sorted(four) == list(range(1, 11))
    np.testing.assert_allclose([four[i] for i in range(1, 11)], [one[i] for i in range(1, 11)], rtol=1e-6)
    def evals(records):
        return [(r["iter"], r["val_loss"]) for r in records if "val_loss" in r]

    assert [i for i, _ in evals(four_records)] == [0, 5, 10]
    np.testing.assert_allclose([v for _, v in evals(four_records)], [v for _, v in evals(one_records)], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(load_params(tmp_path / "one")[1]), jax.tree.leaves(load_params(tmp_path / "four")[1])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_resume_applies_this_runs_dropout(tmp_path, char_dataset):
    common = ["--eval_interval=3", "--always_save_checkpoint=True"]
    for name in ("plain", "dropped"):
        train(tmp_path / name, char_dataset, "--max_iters=3", *common)
    train(tmp_path / "plain", char_dataset, "--max_iters=6", "--init_from=resume", *common)
    result = train(tmp_path / "dropped", char_dataset, "--max_iters=6", "--init_from=resume", "--dropout=0.3", *common)
    assert "continuing with this run's dropout=0.3 (the saved model's: 0.0)" in result.stdout
    header, _ = load_params(tmp_path / "dropped")
    assert header["model_config"]["dropout"] == 0.3
    plain, _ = losses(tmp_path / "plain")
    dropped, _ = losses(tmp_path / "dropped")
    assert [plain[i] for i in (1, 2, 3)] == [dropped[i] for i in (1, 2, 3)]
    assert all(plain[i] != dropped[i] for i in (4, 5, 6))  # the dropout really acted


def test_the_bare_command_is_a_small_run_on_the_embedded_corpus():
    # `python train.py` with no arguments must be something a laptop finishes in minutes: the
    # defaults' whole training compute, counted as MFU counts it, is bounded here by what a
    # CPU core sustains in about ten minutes. (Today's defaults need about 1e13 FLOPs; the
    # 12-layer, 1024-context, 600,000-iteration defaults of nanoGPT need about 5e18.)
    import train
    from helpers.flops import flops_per_token
    from model import GPT

    config = GPTConfig(**{name: getattr(train, name) for name in ("n_layer", "n_head", "n_embd", "block_size", "mlp")},
                       vocab_size=128)
    params = eqx.filter_eval_shape(GPT, config, key=jax.random.key(0)).get_num_params()
    tokens = train.max_iters * train.gradient_accumulation_steps * train.batch_size * train.block_size
    assert flops_per_token(config, params) * tokens < 1e14
    assert train.dataset == "python_docs_char"  # the corpus that needs no download


def fake_wandb(tmp_path, body: str) -> dict:
    """An environment whose `import wandb` finds a stand-in module with this body."""
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "wandb.py").write_text(body)
    return dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))


def test_wandb_without_the_package_is_one_line(tmp_path, char_dataset):
    env = fake_wandb(tmp_path, "raise ImportError(\"No module named 'wandb'\")\n")
    result = subprocess.run([sys.executable, "train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'run'}",
                             *TINY, "--max_iters=2", "--wandb_log=True"], cwd=ROOT, capture_output=True, text=True,
                            env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "pip install wandb" in result.stderr


def test_wandb_gets_the_learning_rate_speed_and_mfu_as_well_as_the_losses(tmp_path, char_dataset):
    logged = tmp_path / "wandb.jsonl"
    env = fake_wandb(tmp_path, "import json\n"
                               "def init(**kwargs):\n    pass\n"
                               "def log(values, step=None):\n"
                               f"    with open({str(logged)!r}, 'a') as f:\n"
                               "        f.write(json.dumps(dict(values, step=step)) + '\\n')\n")
    subprocess.run([sys.executable, "train.py", f"--dataset={char_dataset}", f"--out_dir={tmp_path / 'run'}", *TINY,
                    "--max_iters=4", "--eval_interval=4", "--wandb_log=True"], cwd=ROOT, check=True, env=env,
                   capture_output=True)
    records = [json.loads(line) for line in logged.read_text().splitlines()]
    keys = set().union(*records)
    assert {"train/loss", "val/loss", "lr", "tokens_per_s", "mfu"} <= keys
    assert sorted(r["step"] for r in records if "lr" in r) == [1, 2, 3, 4]


def test_a_target_loss_stops_at_the_first_evaluation_that_reaches_it(tmp_path, char_dataset):
    train(tmp_path / "full", char_dataset, "--max_iters=20", "--eval_interval=5")
    val = {r["iter"]: r["val_loss"] for r in losses(tmp_path / "full")[1] if "val_loss" in r}
    first = next(i for i in (5, 10, 15, 20) if val[i] < val[0] - 0.05)  # the first evaluation that learned
    target = round(val[first] + 1e-4, 4)
    assert all(val[i] > target for i in val if i < first)
    result = train(tmp_path / "target", char_dataset, "--max_iters=20", "--eval_interval=5", f"--target_loss={target}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("reached val loss"))
    assert line.startswith(f"reached val loss {val[first]:.4f} <= {target} at iteration {first} in ")
    seconds = float(line.split(" in ")[1].removesuffix(" s"))
    assert 0 < seconds < 600
    records = losses(tmp_path / "target")[1]
    assert records[-1] == {"iter": first, "target_loss": target, "reached_s": records[-1]["reached_s"]}
    assert max(r["iter"] for r in records) == first  # no step after it


def test_evaluations_can_skip_the_train_split_and_the_start(tmp_path, char_dataset):
    common = ["--max_iters=10", "--eval_interval=5"]
    train(tmp_path / "full", char_dataset, *common)
    result = train(tmp_path / "lean", char_dataset, *common, "--eval_train=False", "--eval_at_start=False")
    full = [r for r in losses(tmp_path / "full")[1] if "val_loss" in r]
    lean = [r for r in losses(tmp_path / "lean")[1] if "val_loss" in r]
    assert [r["iter"] for r in full] == [0, 5, 10] and [r["iter"] for r in lean] == [5, 10]
    assert all("train_loss" not in r for r in lean)
    # Fewer evaluations change nothing that training does.
    assert [r["val_loss"] for r in lean] == [r["val_loss"] for r in full[1:]]
    assert f"step 10: val loss {lean[-1]['val_loss']:.4f} ({lean[-1]['val_bpb']:.4f} bpb)\n" in result.stdout
    assert (tmp_path / "lean" / "loss.png").stat().st_size > 0


def test_a_trained_model_scores_another_text_in_bits_per_byte(tmp_path, bpe_dataset):
    out = tmp_path / "run"
    train(out, bpe_dataset, "--max_iters=4", "--eval_interval=4")
    # Another text (Shakespeare, not stories) in the run's tokenizer, taken from its checkpoint:
    # thirty documents of 1,000 characters, so that it splits into train and val.
    other = tmp_path / "other.txt"
    text = corpus_text()[:30_000]
    other.write_text("".join(text[i : i + 1000] + "\n<|endoftext|>\n" for i in range(0, len(text), 1000)))
    scored = tmp_path / "scored"
    run_script("data/tinystories/prepare.py", "--data_files", other, f"--out_dir={scored}", f"--tokenizer={out}")
    meta = json.loads((scored / "meta.json").read_text())
    assert meta["tokenizer_sha256"] == json.loads((bpe_dataset / "meta.json").read_text())["tokenizer_sha256"]
    saved = (out / "ckpt.eqx").read_bytes()
    result = train(out, scored, "--init_from=resume", "--eval_only=True", "--eval_iters=4")
    assert (out / "ckpt.eqx").read_bytes() == saved  # scoring another text leaves the run as it was
    line = next(line for line in result.stdout.splitlines() if line.startswith("step 4:"))
    val_loss, val_bpb = (float(x) for x in re.search(r"val loss (\S+) \((\S+) bpb\)", line).groups())
    assert val_bpb == pytest.approx(val_loss / math.log(2) / (meta["val_bytes"] / meta["val_tokens"]), abs=2e-4)


def test_a_run_refuses_to_resume_on_data_in_another_tokenizer(tmp_path, bpe_dataset, char_dataset):
    out = tmp_path / "run"
    train(out, bpe_dataset, "--max_iters=2", "--eval_interval=2")
    result = train(out, char_dataset, "--init_from=resume", "--max_iters=4", check=False)
    bpe_hash = json.loads((bpe_dataset / "meta.json").read_text())["tokenizer_sha256"]
    char_hash = tokenizer_sha256(json.loads((char_dataset / "meta.json").read_text()))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"sha256 {bpe_hash[:12]}" in result.stderr and f"sha256 {char_hash[:12]}" in result.stderr
    assert "--tokenizer=" in result.stderr


def test_a_target_bpb_stops_like_a_target_loss(tmp_path, char_dataset):
    result = train(tmp_path / "run", char_dataset, "--max_iters=5", "--target_bpb=50")
    records = losses(tmp_path / "run")[1]
    assert records[0]["val_bpb"] <= 50 and f"reached val bpb {records[0]['val_bpb']:.4f} <= 50.0 at iteration 0" in result.stdout
    assert records[-1] == {"iter": 0, "target_bpb": 50, "reached_s": records[-1]["reached_s"]}


def test_a_checkpoint_written_before_the_model_system_still_resumes_and_samples(tmp_path):
    # tests/data/old_run: a char dataset and a 2-iteration checkpoint of a conv/attention stack
    # with RMSNorm and a window, written by the code of commit 57368a8 (before options, the
    # components file and remat as a training setting): `train.py --n_layer=2 --n_head=2
    # --n_embd=16 --block_size=16 --batch_size=4 --max_iters=2 --eval_interval=2 --eval_iters=1
    # --layers='("attention", "mixer=conv")' --window=4 --mlp=gelu --norm=rmsnorm`. That code's
    # greedy sample from it was "to be::nnnnnnnnnnnnnnnnnn".
    import shutil

    old = ROOT / "tests" / "data" / "old_run"
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    for name in ("meta.json", "train.bin", "val.bin"):
        shutil.copy(old / name, data / name)
    shutil.copy(old / "ckpt.eqx", out / "ckpt.eqx")
    sampled = run_script("sample.py", f"--out_dir={out}", "--max_new_tokens=20", "--temperature=0", "--start=to be")
    assert sampled.stdout.splitlines()[0] == "to be::nnnnnnnnnnnnnnnnnn"
    resumed = run_script("train.py", f"--dataset={data}", f"--out_dir={out}", "--init_from=resume", "--max_iters=4",
                         "--batch_size=4", "--eval_interval=2", "--eval_iters=1", "--peak_flops=1e11")
    assert "resuming from" in resumed.stdout and "step 4:" in resumed.stdout
    header = checkpoint.read_header(out / "ckpt.eqx")
    assert header["iter_num"] == 4 and header["model_config"]["kernel_size"] == 4 and "remat" not in header["model_config"]
