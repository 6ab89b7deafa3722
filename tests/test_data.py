import json

import jax
import numpy as np
import pytest

from helpers.data import batch_rng, bytes_per_token, get_batch, open_split, read_meta, token_dtype, write_char_dataset
from helpers.errors import UserError
from helpers.tokenizer import CharTokenizer, tokenizer_from_meta


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
