"""Turning text into token ids and back. A dataset's meta.json says which tokenizer it uses."""

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from helpers.errors import UserError


class CharTokenizer:
    """One token per character, ids in the order of the sorted vocabulary."""

    def __init__(self, chars: str):
        self.chars = chars
        self.index = {ch: i for i, ch in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        unknown = sorted(set(text) - self.index.keys())
        if unknown:
            raise UserError(
                f"characters not in this dataset's vocabulary: {''.join(unknown)!r}; "
                "remove them from the text"
            )
        return [self.index[ch] for ch in text]

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)

    def meta(self) -> dict:
        return {"tokenizer": "char", "vocab_size": self.vocab_size, "chars": self.chars}


# GPT-2's byte-pair encoding, offline. tiktoken's "gpt2" encoding downloads its two files on
# first use; the same merge ranks (tiktoken's r50k_base) ship inside the openai-whisper package,
# which `pip install --no-deps openai-whisper` installs without its torch dependency.
GPT2_EOT = "<|endoftext|>"
GPT2_VOCAB_SIZE = 50257
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
WHISPER_RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
TIKTOKEN_GPT2_URLS = [
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
]


def tiktoken_has_gpt2_cached() -> bool:
    """Whether tiktoken would load "gpt2" from its cache, without touching the network
    (its cache names each downloaded file by the sha1 of its URL)."""
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache = Path(cache or Path(tempfile.gettempdir()) / "data-gym-cache")
    return all((cache / hashlib.sha1(url.encode()).hexdigest()).exists() for url in TIKTOKEN_GPT2_URLS)


def whisper_ranks_path() -> Path | None:
    """openai-whisper's copy of the GPT-2 ranks, found without importing whisper (and torch)."""
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "gpt2.tiktoken"
    return path if path.exists() else None


def gpt2_encoding():
    """GPT-2's tiktoken Encoding: tiktoken's own when cached, else built from whisper's file
    (hash-checked). Never downloads."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    if tiktoken_has_gpt2_cached():
        return tiktoken.get_encoding("gpt2")
    path = whisper_ranks_path()
    if path is None:
        raise UserError(
            "the GPT-2 tokenizer needs its vocabulary: run `pip install --no-deps openai-whisper` "
            "(it ships the file; --no-deps skips torch), or run once online so tiktoken caches it"
        )
    try:
        ranks = load_tiktoken_bpe(str(path), expected_hash=WHISPER_RANKS_SHA256)
    except ValueError:
        raise UserError(
            f"{path} is not GPT-2's vocabulary (its sha256 differs): reinstall it with "
            "`pip install --force-reinstall --no-deps openai-whisper`"
        ) from None
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={GPT2_EOT: GPT2_VOCAB_SIZE - 1},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


class GPT2Tokenizer:
    """GPT-2's byte-pair encoding; the text "<|endoftext|>" becomes its end-of-text token."""

    vocab_size = GPT2_VOCAB_SIZE

    def __init__(self):
        self.encoding = gpt2_encoding()
        self.eot = self.encoding.eot_token

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special={GPT2_EOT})

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(ids))

    def meta(self) -> dict:
        return {"tokenizer": "gpt2", "vocab_size": self.vocab_size, "eot": self.eot}


TOKENIZER_FIELDS = ("tokenizer", "vocab_size", "chars", "eot")  # what decoding needs of a meta.json


def tokenizer_fields(meta: dict) -> dict:
    """The part of a dataset's meta.json that rebuilds its tokenizer (checkpoints carry it)."""
    return {k: meta[k] for k in TOKENIZER_FIELDS if k in meta}


def tokenizer_from_meta(meta: dict) -> "CharTokenizer | GPT2Tokenizer":
    kind = meta.get("tokenizer")
    if kind == "char":
        return CharTokenizer(meta["chars"])
    if kind == "gpt2":
        return GPT2Tokenizer()
    raise UserError(f"meta.json names tokenizer {kind!r}, which this version cannot read (known: char, gpt2)")
