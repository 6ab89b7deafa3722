import re

import pytest

from conftest import corpus_text, stories
from mistakes import Mistake
from helpers import tokenizer as tok
from helpers.errors import UserError
from helpers.tokenizer import EOT, BPETokenizer, GPT2Tokenizer, tokenizer_fields, tokenizer_from_meta

# A trained tokenizer's file damaged after prepare.py wrote it, as train.py meets it.
MISTAKES = [
    Mistake("train.py", "tokenizer.json that is not JSON", (), "tokenizer.json is not JSON (",
            "tokenizer.json is cut short"),
    Mistake("train.py", "tokenizer.json of another shape", (), "the file was changed; run python",
            "tokenizer.json holds a JSON list"),
]
DAMAGE = {
    "tokenizer.json is cut short": lambda path: path.write_bytes(path.read_bytes()[:100]),
    "tokenizer.json holds a JSON list": lambda path: path.write_text("[]"),
}


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(iter(stories(None)), 512)


def test_gpt2_ids_are_gpt2s():
    gpt2 = GPT2Tokenizer()
    # Ids anyone can check against the published GPT-2 vocabulary.
    assert gpt2.encode("Hello, world!") == [15496, 11, 995, 0]
    assert gpt2.encode(" the") == [262]
    assert gpt2.encode("<|endoftext|>") == [50256] == [gpt2.eot]
    text = corpus_text()[:5000] + " naïve café 東京 🙂"
    assert gpt2.decode(gpt2.encode(text)) == text
    assert gpt2.encode_batch(["ab cd", "ef"]) == [gpt2.encode("ab cd"), gpt2.encode("ef")]
    assert tokenizer_from_meta(gpt2.meta()).encode("Hello") == gpt2.encode("Hello")


def test_missing_vocabulary_says_what_to_install(monkeypatch):
    monkeypatch.setattr(tok, "tiktoken_has_gpt2_cached", lambda: False)
    monkeypatch.setattr(tok, "whisper_ranks_path", lambda: None)
    with pytest.raises(UserError, match="pip install --no-deps openai-whisper"):
        GPT2Tokenizer()


def test_a_tampered_vocabulary_is_refused(monkeypatch, tmp_path):
    real = tok.whisper_ranks_path()
    tampered = tmp_path / "gpt2.tiktoken"
    tampered.write_bytes(real.read_bytes().replace(b" 0\n", b" 1\n", 1))
    monkeypatch.setattr(tok, "tiktoken_has_gpt2_cached", lambda: False)
    monkeypatch.setattr(tok, "whisper_ranks_path", lambda: tampered)
    with pytest.raises(UserError, match="sha256 differs"):
        GPT2Tokenizer()


def test_unknown_tokenizer_in_meta():
    with pytest.raises(UserError, match="known: char, gpt2, bpe"):
        tokenizer_from_meta({"tokenizer": "sentencepiece"})


def test_a_trained_bpe_round_trips_the_whole_sample(bpe):
    text = "".join(story + "\n" + EOT + "\n" for story in stories(None))
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    # 512 tokens, unless a made-up corpus runs out of pairs to merge first; end-of-text is last.
    assert bpe.eot == bpe.vocab_size - 1 <= 511 and bpe.encode(EOT) == [bpe.eot]
    assert ids.count(bpe.eot) == len(stories(None))
    assert len(ids) < len(text.encode()) / 2  # it learned merges: fewer tokens than half the bytes


def test_characters_it_never_saw_fall_back_to_bytes(bpe):
    unseen = "naïve café 東京 🙂 \x00\t\r\n"
    assert bpe.decode(bpe.encode(unseen)) == unseen
    assert len(bpe.encode("東")) == len("東".encode()) == 3  # one token per byte
    mixed = "Lily said: 日本語 is new. " + EOT + " Tom ate 🍎."
    assert bpe.decode(bpe.encode(mixed)) == mixed


def test_a_saved_tokenizer_loads_only_with_its_hash(bpe, tmp_path):
    bpe.save(tmp_path)
    loaded = BPETokenizer.load(tmp_path, bpe.sha256)
    assert loaded.encode("Once upon a time") == bpe.encode("Once upon a time") and loaded.sha256 == bpe.sha256
    assert tokenizer_from_meta(bpe.meta(), tmp_path).encode("a cat") == bpe.encode("a cat")
    path = tmp_path / "tokenizer.json"
    path.write_text(path.read_text().replace('"tokens":["', '"tokens":["QQ==","', 1))
    with pytest.raises(UserError, match=f"names {bpe.sha256[:12]}: the file was changed"):
        BPETokenizer.load(tmp_path, bpe.sha256)
    path.unlink()
    with pytest.raises(UserError, match="tokenizer.json is missing, and meta.json names a trained tokenizer: run"):
        BPETokenizer.load(tmp_path, bpe.sha256)


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: m.id)
def test_a_damaged_tokenizer_file_is_one_line_saying_how_to_remake_it(bpe, tmp_path, mistake):
    bpe.save(tmp_path)
    DAMAGE[mistake.setup](tmp_path / "tokenizer.json")
    with pytest.raises(UserError, match=re.escape(mistake.prints)) as error:
        tokenizer_fields(bpe.meta(), tmp_path)  # what train.py reads of a dataset's tokenizer
    assert "\n" not in str(error.value) and str(error.value).endswith("to remake it")


def test_a_checkpoints_copy_rebuilds_the_tokenizer_with_no_dataset_folder(bpe, tmp_path):
    bpe.save(tmp_path)
    fields = tokenizer_fields(bpe.meta(), tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    assert tokenizer_from_meta(fields).encode("The dog ran.") == bpe.encode("The dog ran.")


def test_a_vocabulary_needs_room_for_the_bytes_and_end_of_text():
    with pytest.raises(UserError, match="at least 257 tokens"):
        BPETokenizer.train(iter(["some text"]), 256)
