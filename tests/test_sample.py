import pytest

from conftest import TINY, run_script
from helpers.tokenizer import CharTokenizer
from sample import Streamer, cut_at_stop


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, char_dataset):
    out = tmp_path_factory.mktemp("run")
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    return out


def test_batched_samples_are_reproducible(run_dir, tmp_path):
    args = ("sample.py", f"--out_dir={run_dir}", "--start=the ", "--max_new_tokens=40", "--num_samples=2", "--seed=7")
    first = run_script(*args).stdout
    assert first.count("---------------") == 2 and first.startswith("the ")
    assert first == run_script(*args).stdout  # same seed, same text
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("the cat and the dog ")
    result = run_script("sample.py", f"--out_dir={run_dir}", f"--start=FILE:{prompt}", "--max_new_tokens=5")
    assert result.stdout.startswith("the cat and the dog")


def test_one_sample_streams_and_stops_at_a_stop_string(run_dir):
    base = ("sample.py", f"--out_dir={run_dir}", "--start=the ", "--max_new_tokens=60", "--temperature=0")
    full = run_script(*base).stdout.split("\n---------------")[0]
    generated = full[len("the "):]
    stop = generated[10:12]  # a stop string the greedy text is known to contain
    stopped = run_script(*base, f"--stop={stop}").stdout.split("\n---------------")[0]
    assert stopped == "the " + generated[: generated.index(stop)]


def test_streamer_holds_back_what_may_become_a_stop_string(capsys):
    tokenizer = CharTokenizer("abcd")
    streamer = Streamer(tokenizer, ("cd",))
    for ch in "abc":
        streamer([tokenizer.index[ch]])
    assert capsys.readouterr().out == "ab"  # "c" may start "cd"
    for ch in "dab":
        streamer([tokenizer.index[ch]])
    assert capsys.readouterr().out == "" and streamer.stopped
    assert cut_at_stop("xxENDyyEND", ("END", "yy")) == ("xx", True)


@pytest.mark.parametrize("args, message", [
    (["--start=the Ω≈"], "not in this dataset's vocabulary: 'Ω≈'"),
    (["--top_p=0"], "top_p must be in (0, 1]"),
    (["--top_k=0"], "top_k must be at least 1"),
    (["--max_new_tokens=0"], "max_new_tokens must be positive"),
    (["--start=FILE:EMPTY"], "is empty: give some text"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")) for a in args]
    result = run_script("sample.py", f"--out_dir={run_dir}", *args, check=False)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_checkpoint_is_one_line(tmp_path):
    result = run_script("sample.py", f"--out_dir={tmp_path}", check=False)
    assert result.returncode == 2 and "no checkpoint at" in result.stderr and "Traceback" not in result.stderr


def test_sample_from_an_hf_directory(tmp_path):
    from test_hf import random_hf_model

    random_hf_model(dict(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=50257)).save_pretrained(
        tmp_path, safe_serialization=True)
    result = run_script("sample.py", f"--init_from={tmp_path}", "--start=Hello", "--max_new_tokens=5",
                        "--temperature=0")
    assert result.stdout.startswith("Hello") and result.stdout.count("---------------") == 1


def test_a_copied_checkpoint_samples_without_its_dataset_folder(tmp_path, char_dataset):
    import shutil

    dataset = tmp_path / "dataset"
    shutil.copytree(char_dataset, dataset)
    out = tmp_path / "run"
    run_script("train.py", f"--dataset={dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    shutil.rmtree(dataset)
    result = run_script("sample.py", f"--out_dir={out}", "--start=the ", "--max_new_tokens=10", "--seed=1")
    assert result.stdout.startswith("the ") and result.stdout.endswith("---------------\n")
    assert len(result.stdout.split("\n---------------")[0]) == len("the ") + 10  # ten characters decoded


def test_a_run_on_a_trained_bpe_samples_without_its_dataset_folder(tmp_path, bpe_dataset):
    import shutil

    dataset = tmp_path / "dataset"
    shutil.copytree(bpe_dataset, dataset)
    out = tmp_path / "run"
    run_script("train.py", f"--dataset={dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    args = ("sample.py", f"--out_dir={out}", "--start=Once upon", "--max_new_tokens=10", "--seed=1")
    with_dataset = run_script(*args).stdout
    shutil.rmtree(dataset)
    result = run_script(*args)
    assert result.stdout == with_dataset  # the checkpoint's copy of the tokenizer is the dataset's
    new_text = result.stdout.removeprefix("Once upon").removesuffix("\n---------------\n")
    assert result.stdout.startswith("Once upon") and new_text
