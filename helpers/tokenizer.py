"""Turning text into token ids and back. A dataset's meta.json says which tokenizer it uses."""

import base64
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterable
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
EOT = "<|endoftext|>"  # the end-of-text token's text, in GPT-2 and in ours
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
        special_tokens={EOT: GPT2_VOCAB_SIZE - 1},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


class TiktokenTokenizer:
    """A byte-level BPE run by tiktoken (fast, multi-threaded): GPT-2's or one trained here.
    Text is split into bytes before merging, so any text encodes, characters never seen
    included, and decodes back exactly. The text "<|endoftext|>" becomes the end-of-text token."""

    def __init__(self, encoding):
        self.encoding = encoding
        self.eot = encoding.eot_token
        self.vocab_size = encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, allowed_special={EOT})

    def encode_batch(self, texts: list[str], num_threads: int = 8) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids) -> str:
        return self.encoding.decode(list(ids))


class GPT2Tokenizer(TiktokenTokenizer):
    """GPT-2's 50,257 tokens: what GPT-2's weights read, and what finetuning them needs."""

    def __init__(self):
        super().__init__(gpt2_encoding())

    def meta(self) -> dict:
        return {"tokenizer": "gpt2", "vocab_size": self.vocab_size, "eot": self.eot}


BPE_FORMAT = "nanojaxgpt-bpe-v1"
BPE_FILE = "tokenizer.json"


class BPETokenizer(TiktokenTokenizer):
    """A byte-level BPE trained on a dataset's own text: a small vocabulary that fits the
    corpus spends far fewer parameters on the embedding and the head than GPT-2's 50,257.

    rustbpe learns the merges (it counts pairs in parallel, in Rust); tiktoken encodes with
    them. The tokenizer is saved as plain JSON: the split pattern and every token's bytes
    (base64) in rank order, with end-of-text after the last. Its sha256 names it, in the
    dataset's meta.json and in every checkpoint trained on it.
    """

    def __init__(self, spec: dict):
        import tiktoken

        if spec.get("format") != BPE_FORMAT:
            raise UserError(f"this tokenizer file is not in {BPE_FORMAT} format: prepare the dataset again")
        self.spec = spec
        ranks = {base64.b64decode(token): rank for rank, token in enumerate(spec["tokens"])}
        super().__init__(tiktoken.Encoding(name="bpe", pat_str=spec["pattern"], mergeable_ranks=ranks,
                                           special_tokens={EOT: len(ranks)}))

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        """Learns vocab_size - 1 tokens (the 256 bytes, then merges) from texts; end-of-text
        takes the last id."""
        import rustbpe

        if vocab_size < 257:
            raise UserError(f"a BPE vocabulary needs at least 257 tokens (256 bytes and end-of-text), got {vocab_size}")
        learner = rustbpe.Tokenizer()
        learner.train_from_iterator(texts, vocab_size - 1, pattern=GPT2_PATTERN)
        tokens = [base64.b64encode(bytes(token)).decode() for token, _ in sorted(learner.get_mergeable_ranks(),
                                                                                  key=lambda pair: pair[1])]
        return cls({"format": BPE_FORMAT, "pattern": learner.get_pattern(), "tokens": tokens})

    @property
    def sha256(self) -> str:
        return spec_sha256(self.spec)

    def save(self, data_dir: Path) -> None:
        (Path(data_dir) / BPE_FILE).write_bytes(canonical_json(self.spec))

    @classmethod
    def load(cls, data_dir: Path, sha256: str) -> "BPETokenizer":
        """The tokenizer saved in data_dir, checked against the hash its meta.json names before
        it is read: a file of any other content (damaged, edited) is refused whole."""
        path = Path(data_dir) / BPE_FILE
        if not path.is_file():
            raise UserError(f"{path} is missing, and meta.json names a trained tokenizer: "
                            f"run {prepare_command(data_dir)} to remake it")
        spec = read_dataset_json(path, data_dir)
        found = spec_sha256(spec)
        if found != sha256:
            raise UserError(f"{path} has sha256 {found[:12]}, but its meta.json names {sha256[:12]}: "
                            f"the file was changed; run {prepare_command(data_dir)} to remake it")
        return cls(spec)

    def meta(self) -> dict:
        return {"tokenizer": "bpe", "vocab_size": self.vocab_size, "eot": self.eot, "tokenizer_sha256": self.sha256}


def canonical_json(value) -> bytes:
    """One byte string per value (sorted keys, no spaces), so its hash names the value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def spec_sha256(spec) -> str:
    """The hash that names a trained BPE: its spec's, as its file holds it."""
    return hashlib.sha256(canonical_json(spec)).hexdigest()


def prepare_command(data_dir: Path) -> str:
    """The command that writes a dataset folder's files: the folder's own prepare.py, or, for a
    folder a prepare.py wrote elsewhere (--out_dir), that one."""
    script = Path(data_dir) / "prepare.py"
    return f"python {script}" if script.is_file() else f"python data/<name>/prepare.py --out_dir={data_dir}"


def read_dataset_json(path: Path, data_dir: Path):
    """A dataset folder's JSON file (meta.json, tokenizer.json), or a UserError if it is not JSON."""
    try:
        return json.loads(path.read_bytes())
    except ValueError as error:  # not JSON, or not even UTF-8 text
        raise UserError(f"{path} is not JSON ({error}): run {prepare_command(data_dir)} to remake it") from None


def tokenizer_sha256(fields: dict) -> str:
    """The hash that names a tokenizer: a trained BPE's file, GPT-2's ranks, or a character
    vocabulary's characters."""
    kind = fields.get("tokenizer")
    if kind == "bpe":
        return fields["tokenizer_sha256"]
    if kind == "gpt2":
        return WHISPER_RANKS_SHA256
    return hashlib.sha256(fields["chars"].encode()).hexdigest()


def tokenizer_name(fields: dict) -> str:
    """A tokenizer in a few words, for error messages: its kind, size and hash."""
    return f"{fields['tokenizer']} ({fields['vocab_size']} tokens, sha256 {tokenizer_sha256(fields)[:12]})"


# What decoding needs of a meta.json; a checkpoint carries these, and a trained BPE's spec.
TOKENIZER_FIELDS = ("tokenizer", "vocab_size", "chars", "eot", "tokenizer_sha256")


def tokenizer_fields(meta: dict, data_dir: Path) -> dict:
    """What a checkpoint keeps of its dataset's tokenizer: enough to rebuild it with no dataset
    folder (a trained BPE's whole spec is a few tens of kilobytes)."""
    fields = {k: meta[k] for k in TOKENIZER_FIELDS if k in meta}
    if fields["tokenizer"] == "bpe":
        fields["bpe"] = BPETokenizer.load(data_dir, meta["tokenizer_sha256"]).spec
    return fields


def tokenizer_from_meta(meta: dict, data_dir: Path | None = None) -> "CharTokenizer | TiktokenTokenizer":
    """The tokenizer a dataset's meta.json (or a checkpoint's copy of it) names. A trained BPE
    comes from the checkpoint's copy when there is one, else from data_dir."""
    kind = meta.get("tokenizer")
    if kind == "char":
        return CharTokenizer(meta["chars"])
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "bpe":
        if "bpe" in meta:
            return BPETokenizer(meta["bpe"])
        return BPETokenizer.load(data_dir, meta["tokenizer_sha256"])
    raise UserError(f"meta.json names tokenizer {kind!r}, which this version cannot read (known: char, gpt2, bpe)")
