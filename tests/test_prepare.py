import json

import numpy as np

from conftest import SHARED_SHAKESPEARE, corpus_text, run_script


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
