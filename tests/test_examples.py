"""Each example in examples/ through the scripts, with the commands docs/adding_a_model.md gives
(train, resume, sample and check) plus the flags of a tiny run."""

import jax
import pytest

from conftest import ROOT, run_script
from helpers import checkpoint

EXAMPLES = sorted(path.name for path in (ROOT / "examples").glob("*.py"))
SHORT = ["--batch_size=4", "--eval_iters=1", "--log_interval=1", "--peak_flops=1e11", "--eval_interval=2"]


def test_there_are_the_four_workflows():
    assert EXAMPLES == ["capped_gpt.py", "gpt2_family.py", "hybrid_stack.py", "scratch_gpt.py"]


@pytest.mark.parametrize("example", EXAMPLES)
def test_an_example_trains_resumes_samples_and_checks(tmp_path, char_dataset, example):
    file, out = ROOT / "examples" / example, tmp_path / "run"
    common = [file, f"--dataset={char_dataset}", f"--out_dir={out}", *SHORT]
    run_script("train.py", *common, "--max_iters=2")
    resumed = run_script("train.py", *common, "--max_iters=4", "--init_from=resume")
    assert "resuming from" in resumed.stdout and "step 4:" in resumed.stdout
    assert checkpoint.read_header(out / "ckpt.eqx")["iter_num"] == 4
    # The examples' own prompt is "The ", for the embedded corpus; this dataset may lack the capital.
    sampled = run_script("sample.py", file, f"--out_dir={out}", "--max_new_tokens=12", "--start=the ")
    assert sampled.stdout.startswith("the ") and len(sampled.stdout) > len("the ") + 12
    checked = run_script("check.py", file, f"--dataset={char_dataset}", check=False)
    assert checked.returncode == 0 and "9 of 9 properties hold" in checked.stdout, checked.stdout + checked.stderr
    assert checked.stdout.count("\npass  ") == 9 and "Traceback" not in checked.stderr


def test_the_capped_gpts_own_setting_goes_through_every_script(tmp_path, char_dataset):
    file, out = ROOT / "examples" / "capped_gpt.py", tmp_path / "run"
    common = [file, f"--dataset={char_dataset}", f"--out_dir={out}", *SHORT]
    # --cap before the file that declares it: files run first.
    run_script("train.py", "--cap=15", *common, "--max_iters=2")
    assert checkpoint.read_header(out / "ckpt.eqx")["model_config"]["cap"] == 15.0
    # Resumed without the flag, it keeps the checkpoint's value; another value is refused.
    run_script("train.py", *common, "--max_iters=4", "--init_from=resume")
    assert checkpoint.read_header(out / "ckpt.eqx")["model_config"]["cap"] == 15.0
    refused = run_script("train.py", *common, "--max_iters=6", "--init_from=resume", "--cap=20", check=False)
    assert refused.returncode == 2 and "holds another architecture: cap=15.0 (asked: 20.0)" in refused.stderr
    # What sample.py and plot.py load: the class, with cap 15 (from the header, not the default 30).
    from configurator import run_config_file
    from helpers.training import load_trained_model

    run_config_file(file)
    model, _ = load_trained_model(out)
    assert type(model).__name__ == "CappedGPT" and model.config.option("cap") == 15.0
    assert float(abs(model(jax.numpy.arange(20) % 10)).max()) < 15.0
    # --help lists it once the file is given, with who declares it.
    helped = run_script("train.py", file, "--help")
    assert any(line.strip().startswith("--cap") and "model 'capped'" in line for line in helped.stdout.splitlines())
    # GPT-2 cannot express it: the export is refused in one line (the file passed as train.py took it).
    exported = run_script("-m", "helpers.hf", file, out, tmp_path / "hf", check=False)
    assert exported.returncode == 2 and exported.stderr.count("\n") == 1
    assert "GPT-2 cannot express model 'capped'" in exported.stderr and not (tmp_path / "hf").exists()


def test_the_list_shows_every_registry_and_what_files_add(tmp_path):
    listed = run_script("train.py", ROOT / "examples" / "hybrid_stack.py", "--list").stdout
    for title in ("models", "mixers", "MLPs", "norms", "blocks", "positions", "presets", "optimizers"):
        assert f"\n{title} (" in "\n" + listed, title
    assert "  ema " in listed and "--ema_decay=0.9: the share of its running average" in listed
    assert "  scaled " in listed and "--branch_scale=1.0" in listed
    assert "  conv " in listed and "--kernel_size=4" in listed and "  muon " in listed
    # --help's choices come from the registries, the files' entries included.
    helped = run_script("train.py", ROOT / "examples" / "hybrid_stack.py", "--help").stdout
    mixer_line = next(line for line in helped.splitlines() if line.strip().startswith("--mixer"))
    assert "one of attention, conv, ema" in mixer_line


def test_an_example_sets_only_settings_a_script_knows(tmp_path):
    # The examples set sample.py's `start` and train.py's settings in one file; each script takes
    # its own. Typed on the command line, a key the script does not know is still an error.
    refused = run_script("sample.py", ROOT / "examples" / "capped_gpt.py", "--max_iters=3", check=False)
    assert refused.returncode == 2 and "--max_iters is not a setting of sample.py" in refused.stderr
