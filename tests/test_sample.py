from conftest import TINY, run_script


def test_sample_from_a_checkpoint(tmp_path, char_dataset):
    out = tmp_path / "run"
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    args = ("sample.py", f"--out_dir={out}", "--start=the ", "--max_new_tokens=40", "--num_samples=2", "--seed=7")
    first = run_script(*args).stdout
    assert first.count("---------------") == 2 and first.startswith("the ")
    assert first == run_script(*args).stdout  # same seed, same text
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the cat and the dog " * 5)  # longer than block_size: the window slides
    assert run_script("sample.py", f"--out_dir={out}", f"--start=FILE:{prompt}", "--max_new_tokens=5").returncode == 0


def test_sample_errors_are_one_line(tmp_path):
    result = run_script("sample.py", f"--out_dir={tmp_path}", check=False)
    assert result.returncode == 2 and "no checkpoint at" in result.stderr and "Traceback" not in result.stderr
