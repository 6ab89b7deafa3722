import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    PNG,
    ROOT,
    SHARED_SHAKESPEARE,
    assert_one_line,
    corpus_text,
    refuse,
    run_main,
    run_script,
)
from mistakes import Mistake

from helpers.data import write_char_dataset

CHAR, GPT2 = "data/shakespeare_char/prepare.py", "data/shakespeare/prepare.py"
STORIES, DOCS = "data/tinystories/prepare.py", "data/python_docs_char/prepare.py"
BOOK = "It was the best of times, it was the worst of times.\n" * 20  # book.txt, in every test's folder

# Mistakes made on a prepare.py's command line; each test runs in a folder holding book.txt and
# whatever the setup says, with --out_dir=out unless the mistake gives its own.
MISTAKES = [
    Mistake(CHAR, "--input an empty file", ("--input=empty.txt",),
            "--input=empty.txt makes a train split of 0 token(s), too few to train on", "empty.txt is empty"),
    Mistake(CHAR, "--input of one character", ("--input=a.txt",),
            "--input=a.txt makes a train split of 0 token(s)", "a.txt holds one character"),
    Mistake(GPT2, "--input of one word", ("--input=hi.txt",),
            "--input=hi.txt makes a train split of 1 token(s)", "hi.txt holds Hi!"),
    Mistake(CHAR, "--input not text", ("--input=photo.png",),
            "--input=photo.png is not UTF-8 text (byte 0x89 at offset 0)", "photo.png is an image"),
    Mistake(CHAR, "--input missing", ("--input=boook.txt",), "--input=boook.txt does not exist"),
    Mistake(CHAR, "--input unreadable", ("--input=secret.txt",),
            "cannot read --input=secret.txt (Permission denied)", "secret.txt is not readable"),
    Mistake(CHAR, "--out_dir an existing file", ("--input=book.txt", "--out_dir=book.txt"),
            "--out_dir=book.txt is a file: give a folder"),
    Mistake(CHAR, "--out_dir that cannot be made", ("--input=book.txt", "--out_dir=locked/data"),
            "cannot write to --out_dir=locked/data (Permission denied)", "locked/ is read-only"),
    Mistake(STORIES, "--seed not a number", ("--data_files", "book.txt", "--seed=abc"),
            "argument --seed: invalid int value: 'abc'; python"),
    Mistake(STORIES, "--val_fraction above 1", ("--data_files", "book.txt", "--val_fraction=1.5"),
            "argument --val_fraction: must be > 0 and < 1, got 1.5"),
    Mistake(STORIES, "--val_fraction of 0", ("--data_files", "book.txt", "--val_fraction=0"),
            "argument --val_fraction: must be > 0 and < 1, got 0"),
    Mistake(STORIES, "--threads=0", ("--data_files", "book.txt", "--threads=0"),
            "argument --threads: must be at least 1, got 0"),
    Mistake(STORIES, "a .json data file that is not JSON", ("--data_files", "stories.json"),
            "--data_files stories.json is not a valid .json file (", "stories.json is cut short"),
    Mistake(STORIES, "a .txt data file not text", ("--data_files", "stories.txt"),
            "--data_files stories.txt is not UTF-8 text", "stories.txt is an image"),
    Mistake(STORIES, "an empty data file", ("--data_files", "empty.txt"), "--data_files empty.txt is empty",
            "empty.txt is empty"),
    Mistake(STORIES, "a 'text' field that is not text", ("--data_files", "numbers.jsonl"),
            "numbers.jsonl's 'text' field holds int64, not strings", 'numbers.jsonl holds {"text": 5}'),
    Mistake(STORIES, "a data file named twice", ("--data_files", "book.txt", "./book.txt"),
            "--data_files names book.txt twice: its documents would be in both splits"),
    Mistake(STORIES, "a folder as a data file", ("--data_files", "stories"), "--data_files stories is a folder",
            "stories/ is a folder"),
    Mistake(STORIES, "data files without text", ("--data_files", "blank.jsonl"), "the files hold no text",
            "blank.jsonl holds empty, blank and null texts"),
    Mistake(STORIES, "a .jsonl data file not UTF-8", ("--data_files", "latin1.jsonl"),
            "--data_files latin1.jsonl is not UTF-8 text: give UTF-8 files", "latin1.jsonl is Latin-1"),
    Mistake(STORIES, "a --val_fraction that leaves nothing to train on", ("--data_files", "two.txt", "--val_fraction=0.6"),
            "--val_fraction=0.6 of 2 documents leaves none to train on", "two.txt holds two stories"),
    Mistake(STORIES, "a negative --seed", ("--data_files", "book.txt", "--seed=-1"), "--seed must be at least 0, got -1"),
    Mistake(STORIES, "a --vocab_size in other digits", ("--data_files", "book.txt", "--vocab_size=\u00b2"),
            "--vocab_size must be a number of tokens or gpt2, got '\u00b2'"),
    Mistake(STORIES, "a --vocab_size beyond 32-bit token ids", ("--data_files", "book.txt", "--vocab_size=4294967297"),
            "--vocab_size must be at most 4,294,967,296"),
    Mistake(STORIES, "a --tokenizer with a --vocab_size", ("--data_files", "book.txt", "--tokenizer=out", "--vocab_size=300"),
            "--tokenizer reuses a tokenizer, which has its own vocabulary: drop --vocab_size"),
    Mistake(DOCS, "an option it does not have", ("--input=book.txt",), "unrecognized arguments: --input=book.txt"),
]


SETUP = {
    "": lambda monkeypatch: None,
    "empty.txt is empty": lambda monkeypatch: Path("empty.txt").write_text(""),
    "a.txt holds one character": lambda monkeypatch: Path("a.txt").write_text("a"),
    "hi.txt holds Hi!": lambda monkeypatch: Path("hi.txt").write_text("Hi!"),
    "photo.png is an image": lambda monkeypatch: Path("photo.png").write_bytes(PNG),
    "secret.txt is not readable": lambda monkeypatch: (Path("secret.txt").write_text(BOOK),
                                                       refuse(monkeypatch, "read_bytes", "secret.txt")),
    "locked/ is read-only": lambda monkeypatch: (Path("locked").mkdir(), refuse(monkeypatch, "mkdir", "locked")),
    "stories.json is cut short": lambda monkeypatch: Path("stories.json").write_text('[{"text": "Once upon a time'),
    "stories.txt is an image": lambda monkeypatch: Path("stories.txt").write_bytes(PNG),
    'numbers.jsonl holds {"text": 5}': lambda monkeypatch: Path("numbers.jsonl").write_text('{"text": 5}\n'),
    "stories/ is a folder": lambda monkeypatch: Path("stories").mkdir(),
    "blank.jsonl holds empty, blank and null texts": lambda monkeypatch: Path("blank.jsonl").write_text(
        '{"text": ""}\n{"text": "  \\n"}\n{"text": null}\n'),
    "latin1.jsonl is Latin-1": lambda monkeypatch: Path("latin1.jsonl").write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1")),
    "two.txt holds two stories": lambda monkeypatch: Path("two.txt").write_text(f"One story.\n<|endoftext|>\nAnother.\n"),
}


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_prepare_mistakes_are_one_line_and_write_nothing(tmp_path, monkeypatch, mistake):
    monkeypatch.chdir(tmp_path)
    Path("book.txt").write_text(BOOK)
    SETUP[mistake.setup](monkeypatch)
    assert_one_line(run_main(mistake.script, "--out_dir=out", *mistake.args), mistake.prints)
    assert not list(Path("out").rglob("*"))  # nothing written (the folder itself may be left)


def test_ctrl_c_ends_a_prepare_with_one_line_and_keeps_the_previous_dataset(tmp_path):
    write_char_dataset(BOOK, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with subprocess.Popen([sys.executable, DOCS, f"--out_dir={tmp_path}"], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout.readline().startswith("reading")  # printed once its Ctrl-C handler is set
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line(result, f"interrupted: {tmp_path} holds its previous dataset, if any, or the whole new one", code=130)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_shakespeare_char_from_a_local_file(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text(SHARED_SHAKESPEARE.read_text() if SHARED_SHAKESPEARE.exists() else corpus_text())
    run_script("data/shakespeare_char/prepare.py", f"--input={source}", f"--out_dir={tmp_path}")
    meta = json.loads((tmp_path / "meta.json").read_text())
    train = np.fromfile(tmp_path / "train.bin", np.uint16)
    val = np.fromfile(tmp_path / "val.bin", np.uint16)
    assert len(train) == int(0.9 * (len(train) + len(val)))
    if SHARED_SHAKESPEARE.exists():  # the real corpus gives nanoGPT's numbers
        assert meta["vocab_size"] == 65 and (len(train), len(val)) == (1_003_854, 111_540)


def test_python_docs_corpus_needs_no_download_and_is_deterministic(tmp_path):
    for run in ("a", "b"):
        run_script("data/python_docs_char/prepare.py", f"--out_dir={tmp_path / run}")
    a, b = (tmp_path / "a" / "train.bin").read_bytes(), (tmp_path / "b" / "train.bin").read_bytes()
    assert a == b and len(a) > 2 * 1_000_000  # over a million uint16 tokens
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["vocab_size"] <= 96


def test_shakespeare_bpe_from_a_local_file(tmp_path):
    from helpers.tokenizer import GPT2Tokenizer

    text = corpus_text()[:50_000]
    source = tmp_path / "input.txt"
    source.write_text(text)
    run_script("data/shakespeare/prepare.py", f"--input={source}", f"--out_dir={tmp_path}")
    meta = json.loads((tmp_path / "meta.json").read_text())
    tokenizer = GPT2Tokenizer()
    cut = int(len(text) * 0.9)  # nanoGPT's split: by characters, then each part encoded
    assert meta == {"tokenizer": "gpt2", "vocab_size": 50257, "eot": 50256,
                    "train_tokens": len(tokenizer.encode(text[:cut])), "val_tokens": len(tokenizer.encode(text[cut:])),
                    "train_bytes": len(text[:cut].encode()), "val_bytes": len(text[cut:].encode())}
    assert tokenizer.decode(np.fromfile(tmp_path / "train.bin", np.uint16)) == text[:cut]
    assert tokenizer.decode(np.fromfile(tmp_path / "val.bin", np.uint16)) == text[cut:]


def test_tinystories_prepare_train_and_sample_stories(tmp_path):
    from conftest import stories
    from test_documents import write_formats

    files = write_formats(tmp_path, stories(60))
    data = tmp_path / "tinystories"
    result = run_script("data/tinystories/prepare.py", "--data_files", str(files["txt"]), str(files["jsonl"]),
                        str(files["parquet"]), f"--out_dir={data}", "--val_fraction=0.1", "--vocab_size=gpt2")
    assert "60 documents" in result.stdout and "tokens/s" in result.stdout
    out = tmp_path / "run"
    train = run_script("train.py", "config/train_tinystories.py", "--n_layer=2", "--n_head=2", "--n_embd=32", f"--dataset={data}",
                       f"--out_dir={out}", "--block_size=32", "--batch_size=4", "--gradient_accumulation_steps=1",
                       "--max_iters=4", "--eval_interval=4", "--eval_iters=2", "--dtype=float32", "--warmup_iters=1",
                       "--log_interval=1")
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 4 and "vocab_size   50304" in train.stdout  # GPT-2's 50,257, padded to a multiple of 64
    sample = run_script("sample.py", f"--out_dir={out}", "--max_new_tokens=20", "--num_samples=2", "--temperature=0")
    assert sample.stdout.count("---------------") == 2 and "<|endoftext|>" not in sample.stdout
