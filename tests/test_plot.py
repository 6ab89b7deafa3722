from matplotlib.image import imread

from conftest import TINY, run_script


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


def test_plot_mistakes_are_one_line(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "log.jsonl").write_text('{"iter": 0, "train_loss": 4.0, "val_loss": 4.1}\n')
    for args, message in [(["--out_dirs=" + str(tmp_path / "nowhere")], "log.jsonl does not exist"),
                          (["--what=pie"], "what must be loss, bpb or attention"),
                          (["--what=bpb", f"--out_dirs=({str(tmp_path / 'old')!r},)"], "logged no bits per byte")]:
        result = run_script("plot.py", *args, check=False)
        assert result.returncode == 2 and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
