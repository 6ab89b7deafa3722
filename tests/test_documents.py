"""Document corpora to token bins: the three local formats, the split, end-of-text placement."""

import json

import datasets
import numpy as np
import pytest

from helpers.documents import prepare, read_local, split
from helpers.errors import UserError
from helpers.tokenizer import GPT2_EOT, GPT2Tokenizer

SHARED_STORIES = __import__("conftest").ROOT.parent / "shared" / "data" / "tinystories" / "sample.txt"


def stories(n: int = 40) -> list[str]:
    """Real TinyStories where ../shared exists, made-up ones elsewhere."""
    if SHARED_STORIES.exists():
        return [s.strip() for s in SHARED_STORIES.read_text().split(GPT2_EOT) if s.strip()][:n]
    return [f"Once upon a time, story {i} had a cat named Tom. The end." for i in range(n)]


def write_formats(tmp_path, texts: list[str]) -> dict:
    thirds = [texts[i::3] for i in range(3)]
    paths = {"txt": tmp_path / "a.txt", "jsonl": tmp_path / "b.jsonl", "parquet": tmp_path / "c.parquet"}
    paths["txt"].write_text("".join(t + "\n" + GPT2_EOT + "\n" for t in thirds[0]))
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
        docs = tokenizer.decode(ids).split(GPT2_EOT)
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


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_local([tmp_path / "missing.txt"])
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(UserError, match="not .txt, .json, .jsonl or .parquet"):
        read_local([tmp_path / "a.csv"])
    (tmp_path / "b.jsonl").write_text('{"story": "x"}\n')
    with pytest.raises(UserError, match="no 'text' field"):
        read_local([tmp_path / "b.jsonl"])
