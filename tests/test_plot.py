"""plot.py: pictures of real runs; every mistake one line."""

import json
from pathlib import Path

import pytest
from conftest import TINY, assert_one_line, refuse, run_main, run_script
from matplotlib.image import imread
from mistakes import Mistake

# Made in a folder whose out/log.jsonl holds a short run that logged no bits per byte (plot.py's
# default out_dirs is out).
MISTAKES = [
    Mistake("plot.py", "an unknown picture", ("--what=pie",), "unknown what 'pie'; valid names: loss, bpb, attention"),
    Mistake("plot.py", "no runs", ("--out_dirs=()",), "out_dirs is empty: name the runs to draw"),
    Mistake("plot.py", "a run folder that is not there", ("--out_dirs=nowhere",),
            "nowhere/log.jsonl does not exist: is nowhere the out_dir of a training run?"),
    Mistake("plot.py", "bits per byte of runs that logged none", ("--what=bpb",), "these runs logged no bits per byte"),
    Mistake("plot.py", "a checkpoint train.py does not write", ("--what=attention", "--checkpoint=last.eqx"),
            "unknown checkpoint 'last.eqx'; valid names: ckpt.eqx, best.eqx"),
    Mistake("plot.py", "an output that is no picture", ("--output=losses.txt",),
            "--output=losses.txt: .txt is no picture format matplotlib writes; end the name in one of .eps,"),
    Mistake("plot.py", "an output without a suffix", ("--output=losses",),
            "--output=losses: no suffix names its format; end the name in one of"),
    Mistake("plot.py", "an output in a folder that is not there", ("--output=charts/loss.png",),
            "--output=charts/loss.png: there is no folder charts; create it, or write elsewhere"),
    Mistake("plot.py", "an output in a read-only folder", ("--output=locked/loss.png",),
            "cannot write locked/loss.png (Permission denied): pick another --output", "locked/ is read-only"),
]
SETUP = {
    "": lambda monkeypatch: None,
    "locked/ is read-only": lambda monkeypatch: (Path("locked").mkdir(), refuse(monkeypatch, "open", "locked")),
}
RECORDS = [{"iter": 0, "train_loss": 4.0, "val_loss": 4.1}, {"iter": 1, "loss": 3.9, "lr": 1e-3},
           {"iter": 2, "train_loss": 3.5, "val_loss": 3.7}]


def test_plot_draws_losses_and_attention_from_real_runs(tmp_path, char_dataset):
    runs = [tmp_path / "a", tmp_path / "b"]
    for out, lr in zip(runs, ("3e-3", "1e-3")):
        run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=6",
                   "--eval_interval=3", f"--learning_rate={lr}")
        assert imread(out / "loss.png").shape[:2] == (540, 960)  # train.py draws each run's own
    result = run_script("plot.py", f"--out_dirs=({str(runs[0])!r}, {str(runs[1])!r})", f"--output={tmp_path / 'both.png'}")
    assert "wrote" in result.stdout and imread(tmp_path / "both.png").shape[:2] == (540, 960)
    run_script("plot.py", "--what=bpb", f"--out_dirs=({str(runs[0])!r},)", f"--output={tmp_path / 'bpb.png'}")
    assert imread(tmp_path / "bpb.png")[..., :3].std() > 0.05
    run_script("plot.py", "--what=attention", f"--out_dir={runs[0]}", "--prompt=the cat", f"--output={tmp_path / 'att.png'}")
    assert imread(tmp_path / "att.png")[..., :3].std() > 0.05


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_mistakes_are_one_line_and_write_nothing(tmp_path, monkeypatch, mistake):
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    Path("out/log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    SETUP[mistake.setup](monkeypatch)
    assert_one_line(run_main("plot.py", *mistake.args), mistake.prints)
    assert [p.name for p in tmp_path.rglob("*") if p.name not in ("out", "log.jsonl", "locked")] == []  # no picture


def test_a_broken_log_line_is_skipped_with_a_warning(tmp_path, monkeypatch):
    # A crash cut a line short, and the resumed run appended to it.
    monkeypatch.chdir(tmp_path)
    Path("out").mkdir()
    lines = [json.dumps(r) for r in RECORDS]
    Path("out/log.jsonl").write_text("\n".join([lines[0], '{"iter": 1, "lo' + lines[1], lines[2]]) + "\n")
    result = run_main("plot.py", "--output=loss.svg")
    assert result.returncode == 0 and result.stdout == "wrote loss.svg\n"
    assert result.stderr == "warning: out/log.jsonl line 2 is not a JSON record: skipped\n"
    assert Path("loss.svg").read_text().startswith("<?xml")  # the format the suffix names
