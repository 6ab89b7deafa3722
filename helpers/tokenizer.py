"""Turning text into token ids and back. A dataset's meta.json says which tokenizer it uses."""

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


def tokenizer_from_meta(meta: dict) -> CharTokenizer:
    kind = meta.get("tokenizer")
    if kind == "char":
        return CharTokenizer(meta["chars"])
    raise UserError(f"meta.json names tokenizer {kind!r}, which this version cannot read (known: 'char')")
