import errno
import json
import os
import re

import jax
import numpy as np
import pytest

from mistakes import Mistake
from helpers import data
from helpers.data import batch_rng, bytes_per_token, get_batch, open_split, read_meta, token_dtype, write_char_dataset
from helpers.errors import UserError
from helpers.tokenizer import CharTokenizer, prepare_command, tokenizer_from_meta

# A dataset's files damaged after prepare.py wrote them, as train.py (and sample.py, check.py) meet them.
MISTAKES = [
    Mistake("train.py", "an empty .bin", (), "train.bin is empty: run python", "train.bin is empty"),
    Mistake("train.py", "a .bin cut mid-token", (), "bytes, not a whole number of the 2-byte tokens",
            "train.bin loses its last byte"),
    Mistake("train.py", "meta.json that is not JSON", (), "meta.json is not JSON (", "meta.json is cut short"),
    Mistake("train.py", "meta.json without vocab_size", (), "meta.json has no vocab_size",
            "meta.json lacks vocab_size"),
    Mistake("train.py", "meta.json that is a JSON list", (), "meta.json has no vocab_size", "meta.json holds [65]"),
    Mistake("train.py", "meta.json of characters without them", (),
            "names tokenizer 'char' but holds no 'chars', which that tokenizer needs", "meta.json loses chars"),
]
DAMAGE = {
    "train.bin is empty": lambda folder: (folder / "train.bin").write_bytes(b""),
    "train.bin loses its last byte": lambda folder: (folder / "train.bin").write_bytes(
        (folder / "train.bin").read_bytes()[:-1]),
    "meta.json is cut short": lambda folder: (folder / "meta.json").write_text('{"tokenizer": "char", "voc'),
    "meta.json lacks vocab_size": lambda folder: (folder / "meta.json").write_text('{"tokenizer": "char"}'),
    "meta.json holds [65]": lambda folder: (folder / "meta.json").write_text("[65]"),
    "meta.json loses chars": lambda folder: (folder / "meta.json").write_text(json.dumps(
        {k: v for k, v in json.loads((folder / "meta.json").read_text()).items() if k != "chars"})),
}


def test_char_dataset_round_trip(tmp_path):
    text = "hello world, hello jax\n" * 50
    meta = write_char_dataset(text, tmp_path)
    assert json.loads((tmp_path / "meta.json").read_text()) == meta == read_meta(tmp_path)
    tokenizer = tokenizer_from_meta(meta)
    train = open_split(tmp_path, "train", 8)
    val = open_split(tmp_path, "val", 8)
    assert train.dtype == np.uint16 and len(train) + len(val) == len(text)
    assert tokenizer.decode(train) + tokenizer.decode(val) == text


class CountedReads:
    """A token array that counts how many times it is indexed."""

    def __init__(self, tokens: np.ndarray):
        self.tokens, self.reads = tokens, 0

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index):
        self.reads += 1
        return self.tokens[index]


def test_get_batch_is_vectorised_shifted_and_reproducible(tmp_path):
    write_char_dataset("".join(chr(97 + i % 26) for i in range(5000)), tmp_path)
    tokens = open_split(tmp_path, "train", 16)
    # One gather for the whole batch, not a read per row; and no copy to the device at all:
    # the batch stays on the host, for helpers/batches.py to place on the devices whole.
    counted = CountedReads(tokens)
    with jax.transfer_guard("disallow_explicit"):
        x, y = get_batch(counted, (3, 4), 16, batch_rng(0, 0, 5))
    assert counted.reads == 1 and isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
    assert x.shape == y.shape == (3, 4, 16) and x.dtype == np.int32
    np.testing.assert_array_equal(x[..., 1:], y[..., :-1])
    x2, _ = get_batch(tokens, (3, 4), 16, batch_rng(0, 0, 5))
    np.testing.assert_array_equal(x, x2)
    x3, _ = get_batch(tokens, (3, 4), 16, batch_rng(0, 0, 6))
    assert not np.array_equal(x, x3)


def test_large_vocab_uses_uint32():
    assert token_dtype(65535) == np.uint16 and token_dtype(65536) == np.uint32


def test_missing_and_short_splits_are_clear(tmp_path):
    with pytest.raises(UserError, match="meta.json is missing"):
        read_meta(tmp_path)
    write_char_dataset("abcdefghij" * 10, tmp_path)
    with pytest.raises(UserError, match="fewer than block_size"):
        open_split(tmp_path, "val", 64)
    with pytest.raises(UserError, match="test.bin is missing"):
        open_split(tmp_path, "test", 4)


def test_unknown_characters_are_named():
    with pytest.raises(UserError, match="'xz'"):
        CharTokenizer("abc").encode("abxcz")


def test_subword_vocabularies_are_padded_to_a_multiple_of_64_and_characters_are_not():
    from helpers.data import model_vocab_size

    assert model_vocab_size({"tokenizer": "gpt2", "vocab_size": 50257}) == 50304
    assert model_vocab_size({"tokenizer": "gpt2", "vocab_size": 4096}) == 4096
    assert model_vocab_size({"tokenizer": "char", "vocab_size": 65}) == 65


def test_a_char_dataset_counts_its_bytes_for_bits_per_byte(tmp_path):
    text = "naïve café\n" * 100  # ï and é take two bytes each in UTF-8
    meta = write_char_dataset(text, tmp_path)
    cut = int(len(text) * 0.9)
    assert (meta["train_tokens"], meta["val_tokens"]) == (cut, len(text) - cut)
    assert (meta["train_bytes"], meta["val_bytes"]) == (len(text[:cut].encode()), len(text[cut:].encode()))
    assert bytes_per_token(meta, "train") == len(text[:cut].encode()) / cut > 1
    assert bytes_per_token({"tokenizer": "char", "vocab_size": 3, "chars": "abc"}, "val") is None  # an older dataset


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_damaged_dataset_files_are_one_line_saying_how_to_remake_them(tmp_path, mistake):
    write_char_dataset("hello world, hello jax\n" * 50, tmp_path)
    DAMAGE[mistake.setup](tmp_path)
    with pytest.raises(UserError, match=re.escape(mistake.prints)) as error:
        open_split(tmp_path, "train", 8)
    assert "\n" not in str(error.value)
    assert str(error.value).endswith(f"run python data/<name>/prepare.py --out_dir={tmp_path} to remake it")


def test_a_dataset_folder_with_its_own_prepare_py_is_remade_by_it():
    folder = data.dataset_dir("shakespeare_char")
    assert prepare_command(folder) == f"python {folder / 'prepare.py'}"


def test_a_write_that_fails_midway_leaves_the_previous_dataset_whole(tmp_path, monkeypatch):
    write_char_dataset("the old text\n" * 100, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    write_tokens = data.write_tokens

    def disk_full_at_val(path, ids, vocab_size):
        if path.name == "val.bin":
            raise OSError(errno.ENOSPC, "No space left on device")
        write_tokens(path, ids, vocab_size)

    monkeypatch.setattr(data, "write_tokens", disk_full_at_val)
    with pytest.raises(UserError, match="No space left on device.*the dataset it held before is whole"):
        write_char_dataset("A new text, with another vocabulary!\n" * 100, tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # and no partial files
    # An error that is not about writing (a download, say) is not called a write that failed.
    with pytest.raises(ConnectionError), data.NewDataset(tmp_path, "the text"):
        raise ConnectionError("the network is unreachable")
    monkeypatch.undo()
    meta = write_char_dataset("A new text, with another vocabulary!\n" * 100, tmp_path)
    assert read_meta(tmp_path) == meta and sorted(path.name for path in tmp_path.iterdir()) == sorted(before)


def test_a_new_dataset_replaces_the_old_ones_files_and_one_prepare_writes_at_a_time(tmp_path):
    from helpers.lock import lock_dataset_dir

    write_char_dataset("an old text\n" * 50, tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")  # as an earlier BPE dataset left it
    write_char_dataset("a new text\n" * 50, tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    held = lock_dataset_dir(tmp_path)  # another prepare, writing
    try:
        with pytest.raises(UserError, match="is being written by another prepare"):
            write_char_dataset("a third text\n" * 50, tmp_path)
    finally:
        os.close(held)
    assert read_meta(tmp_path)["vocab_size"] == len(set("a new text\n"))


def test_a_byte_order_mark_is_not_text(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffOnce upon a time".encode())
    assert data.read_text(tmp_path / "bom.txt", "--input") == "Once upon a time"
