"""Token files on disk (train.bin, val.bin, meta.json) and the batches drawn from them.

A .bin file is a flat array of token ids: uint16 while every id fits, uint32 beyond. It is read
through np.memmap, so a corpus larger than memory costs only the pages a batch touches. The
prepare.py scripts write a dataset's files through NewDataset, which moves them into place
together at the end: a dataset folder holds one prepare's whole output, or the one before.
"""

import argparse
import errno
import json
import os
import shutil
import signal
import sys
import urllib.request
from pathlib import Path
from typing import Self

import numpy as np

from helpers.errors import UserError
from helpers.interrupt import exit_on_ctrl_c
from helpers.lock import lock_dataset_dir
from helpers.tokenizer import CharTokenizer, prepare_command, read_dataset_json, tokenizer_from_meta


def dataset_dir(name: str) -> Path:
    """A dataset setting is a folder under data/ (shakespeare_char) or a path to a folder."""
    path = Path(name)
    return path if path.is_dir() else Path(__file__).resolve().parents[1] / "data" / name


def token_dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 65535 else np.uint32


def model_vocab_size(meta: dict) -> int:
    """The vocabulary a new model gets for a dataset: the tokenizer's, rounded up to a multiple
    of 64 for a subword tokenizer (GPT-2's 50,257 becomes 50,304, as in nanoGPT) so that the
    head's matmul has aligned dimensions, which accelerators run markedly faster. The extra
    rows are never a target, and sampling never picks them. A character vocabulary stays as
    it is: it is tiny, and rounding would multiply it."""
    vocab_size = meta["vocab_size"]
    return vocab_size if meta.get("tokenizer") == "char" else -(-vocab_size // 64) * 64


def write_tokens(path: Path, ids: np.ndarray, vocab_size: int) -> None:
    np.asarray(ids, dtype=token_dtype(vocab_size)).tofile(path)


def write_meta(data_dir: Path, meta: dict) -> None:
    """meta.json says how to read the bins (vocab_size) and how to turn ids back into text."""
    (data_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def read_meta(data_dir: Path) -> dict:
    path = Path(data_dir) / "meta.json"
    if not path.exists():
        raise UserError(f"{path} is missing: run the dataset's prepare.py first")
    meta = read_dataset_json(path, data_dir)
    if not isinstance(meta, dict) or not isinstance(meta.get("vocab_size"), int) or meta["vocab_size"] < 1:
        raise UserError(f"{path} has no vocab_size (the JSON object prepare.py writes has one): "
                        f"run {prepare_command(data_dir)} to remake it")
    needed = {"char": "chars", "bpe": "tokenizer_sha256"}.get(meta.get("tokenizer"))
    if needed is not None and needed not in meta:
        raise UserError(f"{path} names tokenizer {meta['tokenizer']!r} but holds no {needed!r}, which that tokenizer "
                        f"needs: run {prepare_command(data_dir)} to remake it")
    return meta


def open_split(data_dir: Path, split: str, block_size: int) -> np.memmap:
    """The tokens of one split (train or val), memory-mapped, checked to hold one full example."""
    path = Path(data_dir) / f"{split}.bin"
    if not path.exists():
        raise UserError(f"{path} is missing: run {prepare_command(data_dir)} first")
    dtype = np.dtype(token_dtype(read_meta(data_dir)["vocab_size"]))
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path} is empty: run {prepare_command(data_dir)} to remake it")
    if size % dtype.itemsize:  # cut short, or written for another vocabulary than meta.json's
        raise UserError(f"{path} holds {size:,} bytes, not a whole number of the {dtype.itemsize}-byte tokens "
                        f"meta.json's vocab_size implies: run {prepare_command(data_dir)} to remake it")
    tokens = np.memmap(path, dtype=dtype, mode="r")
    if len(tokens) < block_size + 1:
        raise UserError(
            f"{path} holds {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}: "
            "use a smaller --block_size or more data"
        )
    return tokens


def batch_rng(seed: int, stream: int, step: int) -> np.random.Generator:
    """A generator fixed by (seed, stream, step): no state to carry, so a resumed run draws
    exactly the batches an uninterrupted one would."""
    return np.random.default_rng((seed, stream, step))


def get_batch(
    tokens: np.ndarray, shape: tuple[int, ...], block_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random windows of block_size + 1 tokens, as inputs x and next-token targets y.

    One fancy index gathers every window at once (no Python loop over rows); ids come back as
    int32, the width JAX uses for indices without 64-bit mode.
    """
    starts = rng.integers(0, len(tokens) - block_size, size=shape)
    windows = tokens[starts[..., None] + np.arange(block_size + 1)].astype(np.int32)
    return windows[..., :-1], windows[..., 1:]


class NewDataset:
    """A dataset being written: its files go to a hidden folder inside out_dir, and done()
    moves them into place together, meta.json last, then removes the previous dataset's files
    that the new one has not (a tokenizer.json beside GPT-2's tokens would mislead a reader). A
    prepare that stops before then (a mistake, a crash, Ctrl-C) leaves out_dir's previous
    dataset whole, never half replaced; a second prepare into a folder in use is refused.
    `source` names where the text came from, for the messages.

        with NewDataset(out_dir, "--input=book.txt") as new:
            write_tokens(new.folder / "train.bin", ...)
            new.done(meta)
    """

    MIN_SPLIT_TOKENS = 2  # one input and its target
    FILES = ("train.bin", "val.bin", "meta.json", "tokenizer.json")  # what a dataset may hold

    def __init__(self, out_dir: Path, source: str):
        self.out_dir, self.source = Path(out_dir), source
        self.folder = self.out_dir / ".partial-dataset"

    def __enter__(self) -> Self:
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UserError(f"--out_dir={self.out_dir} is a file: give a folder (a new one, or a dataset's)")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot write to --out_dir={self.out_dir} ({error.strerror}): "
                            "give a folder you can write to") from None
        self.lock = lock_dataset_dir(self.out_dir)  # held until __exit__
        try:
            shutil.rmtree(self.folder, ignore_errors=True)  # left by a prepare stopped midway
            self.folder.mkdir()
        except OSError as error:
            os.close(self.lock)
            raise UserError(f"cannot write to --out_dir={self.out_dir} ({error.strerror}): "
                            "give a folder you can write to") from None
        return self

    def done(self, meta: dict) -> None:
        """Refuses a split too short to train on; else writes meta.json and moves every file in."""
        for split in ("train", "val"):
            if meta[f"{split}_tokens"] < self.MIN_SPLIT_TOKENS:
                raise UserError(f"{self.source} makes a {split} split of {meta[f'{split}_tokens']} token(s), too "
                                f"few to train on (it takes {self.MIN_SPLIT_TOKENS}: an input and its target): "
                                "give more text")
        write_meta(self.folder, meta)
        names = sorted(os.listdir(self.folder), key=lambda name: name == "meta.json")  # meta.json last
        # Ctrl-C is ignored for the renames (microseconds): stopping between two would mix two datasets.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for name in names:
                os.replace(self.folder / name, self.out_dir / name)
        finally:
            signal.signal(signal.SIGINT, previous)
        for name in set(self.FILES) - set(names):
            (self.out_dir / name).unlink(missing_ok=True)

    def __exit__(self, kind, error, traceback) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self.lock)
        # A full disk, a folder gone: the user's to fix, in one line. Other errors (a download
        # that failed, say) are not about writing, and say so themselves.
        if isinstance(error, OSError) and (error.errno == errno.ENOSPC or error.filename is not None):
            space = "free some space or " if error.errno == errno.ENOSPC else ""
            raise UserError(f"could not write the dataset to {self.out_dir} ({error.strerror or error}): {space}"
                            "pass another --out_dir; the dataset it held before is whole") from None


def write_char_dataset(text: str, out_dir: Path, val_fraction: float = 0.1, source: str = "the text") -> dict:
    """A character-level dataset: the first 90% of the text to train.bin, the rest to val.bin
    (nanoGPT's split), and the vocabulary to meta.json. Returns the meta."""
    tokenizer = CharTokenizer.from_text(text)
    ids = np.array(tokenizer.encode(text))
    cut = int(len(ids) * (1 - val_fraction))
    meta = tokenizer.meta() | split_sizes({"train": text[:cut], "val": text[cut:]}, {"train": cut, "val": len(ids) - cut})
    with NewDataset(out_dir, source) as new:
        write_tokens(new.folder / "train.bin", ids[:cut], tokenizer.vocab_size)
        write_tokens(new.folder / "val.bin", ids[cut:], tokenizer.vocab_size)
        new.done(meta)
    print(f"{len(text):,} characters, vocab {tokenizer.vocab_size}: "
          f"{cut:,} train and {len(ids) - cut:,} val tokens in {out_dir}")
    return meta


def split_sizes(texts: dict[str, str], tokens: dict[str, int]) -> dict:
    """meta.json's record of each split's size in tokens and in UTF-8 bytes of text, from
    which an evaluation turns nats per token into bits per byte."""
    return ({f"{split}_tokens": count for split, count in tokens.items()}
            | {f"{split}_bytes": len(text.encode()) for split, text in texts.items()})


def bytes_per_token(meta: dict, split: str) -> float | None:
    """How many bytes of text a token of this split stands for (None for a dataset prepared
    before meta.json counted them). Bits per byte = loss / ln 2 / bytes_per_token: unlike
    the loss, it does not depend on the tokenizer, so runs with different ones compare."""
    if f"{split}_bytes" not in meta:
        return None
    return meta[f"{split}_bytes"] / meta[f"{split}_tokens"]


def read_text(path: Path, name: str) -> str:
    """A text file the user gave (`name` says how, e.g. --input=PATH), decoded as UTF-8."""
    try:
        return path.read_bytes().decode("utf-8-sig")  # a byte-order mark at the start is not text
    except OSError as error:
        raise UserError(f"cannot read {name} ({error.strerror}): give a file you can read") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{name} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}): "
                        "give a UTF-8 text file") from None


def read_or_download(given: Path | None, local: Path, url: str) -> tuple[str, str]:
    """A corpus's text, and where it came from: from --input if given, else the copy at `local`,
    downloading it there only when there is none (the one time a prepare script touches the
    network)."""
    if given is not None:
        if not given.exists():
            raise UserError(f"--input={given} does not exist")
        return read_text(given, f"--input={given}"), f"--input={given}"
    if not local.exists():
        print(f"downloading {url}")
        partial = local.with_name(f".{local.name}.partial")
        try:
            urllib.request.urlretrieve(url, partial)
        except OSError as error:
            raise UserError(
                f"could not download {url} ({error}); put the file at {local} or pass --input=PATH"
            ) from None
        os.replace(partial, local)  # only a whole download is ever taken for the file
    return read_text(local, str(local)), str(local)


class PrepareArguments(argparse.ArgumentParser):
    """The command line of a data/*/prepare.py: --out_dir, then the script's own options. A
    mistake in them is one line, as every mistake is (argparse's own way prints its usage too)."""

    def __init__(self, description: str, here: Path):
        super().__init__(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.add_argument("--out_dir", type=Path, default=here, help="the folder the dataset goes to")

    def error(self, message: str):
        raise UserError(f"{message}; python {sys.argv[0]} --help lists the options")

    def parse(self) -> argparse.Namespace:
        """The arguments; from here on Ctrl-C ends the script at once, saying out_dir is untouched
        (NewDataset replaces its files only at the very end)."""
        args = self.parse_args()
        exit_on_ctrl_c(f"interrupted: {args.out_dir} holds its previous dataset, if any, or the whole new one "
                       "(a .partial-dataset folder left there goes at the next prepare)")
        return args


def text_corpus_args(description: str, here: Path, url: str) -> tuple[str, str, Path]:
    """The command line of a single-text corpus's prepare.py (--input, --out_dir): its text,
    where that came from, and where the bins go."""
    parser = PrepareArguments(description, here)
    parser.add_argument("--input", type=Path, help=f"a local copy of {here / 'input.txt'}")
    args = parser.parse()
    return *read_or_download(args.input, here / "input.txt", url), args.out_dir


def run_tokenizer(header: dict):
    """The tokenizer a checkpoint (given by its header) was trained with: the header carries
    it, so a copied checkpoint decodes without its dataset folder. Checkpoints from before it
    did are read through their dataset's meta.json."""
    if "tokenizer" in header:
        return tokenizer_from_meta(header["tokenizer"])
    data_dir = dataset_dir(header["settings"]["dataset"])
    return tokenizer_from_meta(read_meta(data_dir), data_dir)


def tokenizer_at(path: Path):
    """The tokenizer of a dataset folder, a checkpoint file, or a training run's out_dir (its
    ckpt.eqx): what `prepare.py --tokenizer=PATH` encodes a new corpus with."""
    path = Path(path)
    if path.is_dir() and (path / "meta.json").is_file():
        return tokenizer_from_meta(read_meta(path), path)
    if path.is_dir() and (path / "ckpt.eqx").is_file():
        path = path / "ckpt.eqx"
    if path.is_file():
        from helpers.checkpoint import read_header  # it imports jax: only when a checkpoint is read

        return run_tokenizer(read_header(path))
    raise UserError(f"--tokenizer={path} is neither a dataset folder (with meta.json) nor a checkpoint "
                    "(a .eqx file, or an out_dir holding ckpt.eqx)")
