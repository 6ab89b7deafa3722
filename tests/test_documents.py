"""Document corpora to token bins: the three local formats, the split, end-of-text placement."""

import json

import datasets
import numpy as np
import pytest

from conftest import stories
from helpers.data import tokenizer_at
from helpers.documents import prepare, read_local, split
from helpers.errors import UserError
from helpers.tokenizer import EOT, GPT2Tokenizer


def write_formats(tmp_path, texts: list[str]) -> dict:
    thirds = [texts[i::3] for i in range(3)]
    paths = {"txt": tmp_path / "a.txt", "jsonl": tmp_path / "b.jsonl", "parquet": tmp_path / "c.parquet"}
    paths["txt"].write_text("".join(t + "\n" + EOT + "\n" for t in thirds[0]))
    paths["jsonl"].write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(thirds[1])))
    datasets.Dataset.from_dict({"text": thirds[2]}).to_parquet(paths["parquet"])
    return paths | {"thirds": thirds}


def test_three_local_formats_read_the_same_documents(tmp_path):
    texts = stories()
    files = write_formats(tmp_path, texts)
    for name, third in zip(("txt", "jsonl", "parquet"), files["thirds"]):
        assert read_local([files[name]])["text"] == third
    mixed = read_local([files["txt"], files["jsonl"], files["parquet"]])
    assert sorted(mixed["text"]) == sorted(texts)


def test_every_document_ends_with_end_of_text_and_nothing_is_lost(tmp_path):
    texts = stories()
    files = write_formats(tmp_path, texts)
    figures = prepare(read_local([files["txt"], files["jsonl"], files["parquet"]]), tmp_path / "out", 0.1, 0, 2)
    tokenizer = GPT2Tokenizer()
    decoded = []
    for name in ("train", "val"):
        ids = np.fromfile(tmp_path / "out" / f"{name}.bin", np.uint16)
        assert ids[-1] == tokenizer.eot and len(ids) == figures[f"{name}_tokens"]
        docs = tokenizer.decode(ids).split(EOT)
        assert docs[-1] == "" and len(docs) - 1 == figures[f"{name}_documents"]
        decoded += docs[:-1]
    assert sorted(decoded) == sorted(texts)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["tokenizer"] == "gpt2" and meta["eot"] == 50256


def test_split_is_seeded_and_keeps_a_datasets_own_validation():
    docs = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(100)]})
    train, val = split(docs, 0.1, seed=3)
    assert len(val) == 10 and not set(train["text"]) & set(val["text"])
    assert split(docs, 0.1, seed=3)[1]["text"] == val["text"]
    assert split(docs, 0.1, seed=4)[1]["text"] != val["text"]
    own = datasets.DatasetDict({"train": docs, "validation": docs.select(range(3))})
    assert split(own, 0.1, seed=3)[1]["text"] == ["doc 0", "doc 1", "doc 2"]
    with pytest.raises(UserError, match="holds 1 document"):
        split(docs.select(range(1)), 0.1, seed=3)


def test_documents_without_text_are_left_out_and_large_strings_mix_with_the_rest(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text('{"text": "kept"}\n{"text": ""}\n{"text": " \\n"}\n{"text": null}\n{}\n')
    assert read_local([tmp_path / "a.jsonl"])["text"] == ["kept"]
    assert "left out 4 documents of" in capsys.readouterr().out
    # pandas writes its strings as large strings, which datasets would not concatenate with plain ones.
    pq.write_table(pa.table({"text": pa.array(["from parquet"], pa.large_string())}), tmp_path / "b.parquet")
    (tmp_path / "c.txt").write_text("from text")
    assert sorted(read_local([tmp_path / "b.parquet", tmp_path / "c.txt"])["text"]) == ["from parquet", "from text"]


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_local([tmp_path / "missing.txt"])
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(UserError, match="not .txt, .json, .jsonl or .parquet"):
        read_local([tmp_path / "a.csv"])
    (tmp_path / "b.jsonl").write_text('{"story": "x"}\n')
    with pytest.raises(UserError, match="no 'text' field"):
        read_local([tmp_path / "b.jsonl"])


def test_each_split_counts_its_bytes_of_text(tmp_path):
    texts = stories() + ["Ünïcödé: 東京 🙂"]
    figures = prepare(datasets.Dataset.from_dict({"text": texts}), tmp_path, 0.25, seed=0, threads=2)
    train, val = split(datasets.Dataset.from_dict({"text": texts}), 0.25, seed=0)
    meta = json.loads((tmp_path / "meta.json").read_text())
    for name, part in (("train", train), ("val", val)):
        assert meta[f"{name}_bytes"] == figures[f"{name}_bytes"] == sum(len(t.encode()) for t in part["text"])
        assert meta[f"{name}_tokens"] == figures[f"{name}_tokens"]


def test_a_trained_tokenizer_is_saved_and_reused_for_another_corpus(tmp_path, bpe_dataset):
    meta = json.loads((bpe_dataset / "meta.json").read_text())
    assert meta["tokenizer"] == "bpe" and (bpe_dataset / "tokenizer.json").is_file()
    other = datasets.Dataset.from_dict({"text": stories(60)[-20:]})
    prepare(other, tmp_path / "again", 0.1, seed=0, threads=2, reuse=bpe_dataset)
    again = json.loads((tmp_path / "again" / "meta.json").read_text())
    assert again["tokenizer_sha256"] == meta["tokenizer_sha256"] and again["vocab_size"] == meta["vocab_size"]
    tokenizer = tokenizer_at(bpe_dataset)
    ids = np.fromfile(tmp_path / "again" / "train.bin", np.uint16)
    assert ids.max() < meta["vocab_size"] and tokenizer.decode(ids).count(EOT) == again["train_documents"]


def test_documents_need_a_tokenizer_with_end_of_text(tmp_path, char_dataset):
    docs = datasets.Dataset.from_dict({"text": stories(10)})
    with pytest.raises(UserError, match="character vocabulary, which has no end-of-text token"):
        prepare(docs, tmp_path, 0.1, seed=0, threads=2, reuse=char_dataset)
    with pytest.raises(UserError, match="--vocab_size must be a number of tokens or gpt2, got '4k'"):
        prepare(docs, tmp_path, 0.1, seed=0, threads=2, vocab_size="4k")
