"""sample.py: reproducible batches, streaming and stop strings; every mistake one line; Ctrl-C at
any moment."""

import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import PNG, ROOT, TINY, assert_one_line, launch, refuse, run_main, run_script, stopped
from mistakes import Mistake

from helpers import generation
from helpers.interrupt import EXIT_CODE
from helpers.tokenizer import CharTokenizer
from sample import StopWatch, Streamer, cut_at_stop, seed_key

# Made in a folder whose out/ holds a finished tiny run (sample.py's default out_dir).
ROWS = [
    Mistake("sample.py", "no samples", ("--num_samples=0",), "num_samples must be >= 1, got 0"),
    Mistake("sample.py", "no new tokens", ("--max_new_tokens=0",), "max_new_tokens must be >= 1, got 0"),
    Mistake("sample.py", "a negative temperature", ("--temperature=-1",), "temperature must be >= 0, got -1"),
    Mistake("sample.py", "a negative top_k", ("--top_k=-1",), "top_k must be >= 0, got -1"),
    Mistake("sample.py", "top_p of 0", ("--top_p=0",), "top_p must be > 0, got 0"),
    Mistake("sample.py", "top_p above 1", ("--top_p=1.5",), "top_p must be <= 1, got 1.5"),
    Mistake("sample.py", "a checkpoint train.py does not write", ("--checkpoint=last.eqx",),
            "unknown checkpoint 'last.eqx'; valid names: ckpt.eqx, best.eqx"),
    Mistake("sample.py", "an empty stop string", ("--stop=('END', '')",),
            "holds an empty string, which would end every sample before it starts"),
    Mistake("sample.py", "a seed beyond 64 bits", ("--seed=99999999999999999999",), "seed must fit in 64 bits"),
    Mistake("sample.py", "an untrained model", ("--init_from=scratch",),
            "init_from='scratch' names no trained model to sample from"),
    Mistake("sample.py", "a prompt file that is not text", ("--start=FILE:photo.png",),
            "prompt file photo.png is not UTF-8 text (byte 0x89 at offset 0)", "photo.png is an image"),
    Mistake("sample.py", "a prompt file that is a folder", ("--start=FILE:prompts",),
            "prompt file prompts is a directory", "prompts/ is a folder"),
    Mistake("sample.py", "a prompt file that is missing", ("--start=FILE:prompt.txt",),
            "prompt file prompt.txt does not exist"),
    Mistake("sample.py", "FILE: without a file", ("--start=FILE:",), "--start=FILE: names no file"),
    Mistake("sample.py", "an unreadable prompt file", ("--start=FILE:secret.txt",),
            "cannot read prompt file secret.txt (Permission denied)", "secret.txt is not readable"),
    Mistake("sample.py", "more samples than memory holds", ("--num_samples=100000000",),
            "out of memory (RESOURCE_EXHAUSTED: Out of memory allocating", "the device refuses the allocation (simulated)"),
]
CTRL_C_GENERATING = Mistake("sample.py", "Ctrl-C while generating", ("--max_new_tokens=100000000",),
                            "sample.py: stopped by Ctrl-C", "Ctrl-C once some text is out")
CTRL_C_STARTING = Mistake("sample.py", "Ctrl-C while starting", ("--max_new_tokens=100000000",),
                          "sample.py: stopped by Ctrl-C", "Ctrl-C 0.3 s after the launch, during the imports")
MISTAKES = [*ROWS, CTRL_C_GENERATING, CTRL_C_STARTING]


def out_of_memory(*args, **kwargs):
    """What generate raises when the device cannot hold the batch (XLA's status, as jax words it)."""
    raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 819200000000 bytes.")


SETUP = {
    "": lambda monkeypatch: None,
    "photo.png is an image": lambda monkeypatch: Path("photo.png").write_bytes(PNG),
    "prompts/ is a folder": lambda monkeypatch: Path("prompts").mkdir(),
    "secret.txt is not readable": lambda monkeypatch: (Path("secret.txt").write_text("the "),
                                                       refuse(monkeypatch, "read_text", "secret.txt")),
    "the device refuses the allocation (simulated)": lambda monkeypatch: monkeypatch.setattr(generation, "generate", out_of_memory),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, char_dataset):
    out = tmp_path_factory.mktemp("run")
    run_script("train.py", f"--dataset={char_dataset}", f"--out_dir={out}", *TINY, "--max_iters=2", "--eval_interval=2")
    return out


def test_batched_samples_are_reproducible(run_dir, tmp_path):
    # top_k=0: no limit.
    args = ("sample.py", f"--out_dir={run_dir}", "--start=the ", "--max_new_tokens=40", "--num_samples=2", "--seed=7",
            "--top_k=0")
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
    assert streamer.tokens == [tokenizer.index["c"]]  # what is out is decoded no more
    for ch in "dab":
        streamer([tokenizer.index[ch]])
    assert capsys.readouterr().out == "" and streamer.stopped
    assert cut_at_stop("xxENDyyEND", ("END", "yy")) == ("xx", True)
    # A sample that ends without its stop string: what was held back is printed at the end.
    streamer = Streamer(tokenizer, ("cd",))
    for ch in "abc":
        streamer([tokenizer.index[ch]])
    streamer.finish()
    assert capsys.readouterr().out == "abc"


def test_a_batch_ends_once_every_sample_has_come_to_a_stop_string():
    tokenizer = CharTokenizer("abcd")
    watch = StopWatch(tokenizer, ("cd",), rows=2)
    chunk = lambda *rows: np.array([[tokenizer.index[ch] for ch in row] for row in rows])  # noqa: E731
    assert not watch(chunk("ac", "bc"))
    assert not watch(chunk("db", "bb"))  # the first row's stop string spans two chunks
    assert watch(chunk("aa", "cd"))


def test_a_stop_string_ends_the_generation_not_only_the_printing(run_dir):
    # Without the stop, a hundred million tokens would take hours: the run ends within the timeout.
    base = ("sample.py", f"--out_dir={run_dir}", "--start=the ", "--max_new_tokens=60", "--temperature=0")
    generated = run_script(*base).stdout.split("\n---------------")[0][len("the "):]
    stop = generated[3:5]
    for samples in ("--num_samples=1", "--num_samples=2"):
        result = subprocess.run([sys.executable, *base, "--max_new_tokens=100000000", f"--stop={stop}", samples],
                                cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
        assert result.stdout.startswith("the " + generated[: generated.index(stop)] + "\n---------------")


def test_every_seed_of_64_bits_has_a_key_of_its_own():
    data = lambda seed: tuple(jax.random.key_data(seed_key(seed)).tolist())  # noqa: E731
    assert data(5) == tuple(jax.random.key_data(jax.random.key(5)).tolist())  # 32-bit seeds as jax takes them
    assert len({data(s) for s in (1, 2**32 + 1, -1, 2**32 - 1, 2**63 - 1, -(2**63))}) == 6


@pytest.mark.parametrize("mistake", ROWS, ids=lambda m: m.id)
def test_mistakes_are_one_line(run_dir, tmp_path, monkeypatch, mistake):
    monkeypatch.chdir(tmp_path)
    Path("out").symlink_to(run_dir)
    SETUP[mistake.setup](monkeypatch)
    assert_one_line(run_main("sample.py", "--max_new_tokens=5", *mistake.args), mistake.prints)


def test_ctrl_c_while_generating_keeps_what_was_printed(run_dir):
    proc = launch("sample.py", f"--out_dir={run_dir}", "--start=the ", *CTRL_C_GENERATING.args)
    result = stopped(proc, proc.stdout.read(20))  # read returns once 20 characters have streamed
    assert_one_line(result, CTRL_C_GENERATING.prints, EXIT_CODE)
    assert result.stdout.startswith("the ") and len(result.stdout) >= 20 and "\n-----" not in result.stdout


def test_ctrl_c_while_starting(run_dir):
    proc = launch("sample.py", f"--out_dir={run_dir}", *CTRL_C_STARTING.args)
    time.sleep(0.3)  # jax takes about a second to import
    result = stopped(proc)
    assert_one_line(result, CTRL_C_STARTING.prints, EXIT_CODE)
    assert result.stdout == ""


def test_a_model_whose_vocabulary_its_tokenizer_overflows_is_refused(tmp_path):
    from test_hf import random_hf_model

    # A character model exported to Hugging Face's format: read back with GPT-2's tokenizer, whose
    # ids the model's 65 rows would silently clamp.
    random_hf_model(dict(n_layer=1, n_head=2, n_embd=16, n_positions=32, vocab_size=65)).save_pretrained(
        tmp_path, safe_serialization=True)
    assert_one_line(run_main("sample.py", f"--init_from={tmp_path}", "--max_new_tokens=5"),
                    "the model has a vocabulary of 65 tokens, fewer than its tokenizer's 50257")


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
