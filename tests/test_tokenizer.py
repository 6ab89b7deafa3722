import pytest

from conftest import corpus_text
from helpers import tokenizer as tok
from helpers.errors import UserError
from helpers.tokenizer import GPT2Tokenizer, tokenizer_from_meta


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
    with pytest.raises(UserError, match="known: char, gpt2"):
        tokenizer_from_meta({"tokenizer": "sentencepiece"})
