"""Document corpora (stories, web pages) to token bins, for the data/*/prepare.py scripts.

The tokenizer is a byte-level BPE: one trained here on the training split (--vocab_size=N),
GPT-2's (--vocab_size=gpt2, what GPT-2's weights need), or one reused from another dataset
or a checkpoint (--tokenizer=PATH). Each document is encoded and followed by the end-of-text
token, so a model learns where documents end (and sampling can stop there). Encoding runs in
batches across threads (tiktoken releases the GIL) with a progress bar, and tokens are written
straight into the .bin memmap batch by batch, so memory stays flat however large the corpus.
"""

import argparse
import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np

from tqdm import tqdm

from helpers.data import NewDataset, PrepareArguments, read_text, token_dtype, tokenizer_at
from helpers.errors import UserError
from helpers.tokenizer import EOT, BPETokenizer, CharTokenizer, GPT2Tokenizer, TiktokenTokenizer

BATCH = 1024  # documents per encoding batch
MAX_VOCAB_SIZE = 2**32  # token ids go to .bin files as 32-bit unsigned integers at most


def read_local(paths: list[Path]):
    """A Hugging Face Dataset with a "text" column from local files: .txt (documents separated
    by <|endoftext|>), .json / .jsonl (one object per document, with a "text" field) or
    .parquet (a "text" column). Formats can be mixed. Documents without text (empty, blank or
    null) are left out, and a file named twice is refused: its documents would be split twice,
    and a copy of one could land in train and another in val."""
    import datasets

    parts, seen = [], set()
    for path in paths:
        if path.resolve() in seen:
            raise UserError(f"--data_files names {path} twice: its documents would be in both splits; give each file once")
        seen.add(path.resolve())
        if path.is_dir():
            raise UserError(f"--data_files {path} is a folder: give the files in it")
        if not path.is_file():
            raise UserError(f"--data_files {path} does not exist")
        if path.stat().st_size == 0:
            raise UserError(f"--data_files {path} is empty: give files that hold documents")
        suffix = path.suffix.lower()
        if suffix == ".txt":
            stories = [s.strip() for s in read_text(path, f"--data_files {path}").split(EOT)]
            parts.append(datasets.Dataset.from_dict({"text": [s for s in stories if s]}))
        elif suffix in (".json", ".jsonl", ".parquet"):
            builder = "parquet" if suffix == ".parquet" else "json"
            parts.append(load_local(path, builder))
        else:
            raise UserError(f"--data_files {path} is not .txt, .json, .jsonl or .parquet")
        held = len(parts[-1])
        with datasets_quiet():
            parts[-1] = parts[-1].filter(lambda batch: [bool(text and text.strip()) for text in batch["text"]],
                                         batched=True)
            # A parquet file may hold large strings and the others plain ones: one type, to concatenate.
            parts[-1] = parts[-1].cast_column("text", datasets.Value("string"))
        if len(parts[-1]) < held:
            print(f"note: left out {held - len(parts[-1]):,} documents of {path} without text (empty, blank or null)")
    return datasets.concatenate_datasets(parts)


def load_local(path: Path, builder: str):
    """A .json/.jsonl or .parquet file's "text" column. datasets' own progress bar and log
    line stay off while it reads, so a file it cannot read is our one line and nothing else."""
    import datasets
    import pyarrow

    try:
        with datasets_quiet():
            part = datasets.load_dataset(builder, data_files=str(path), split="train")
    except (datasets.exceptions.DatasetGenerationError, pyarrow.ArrowInvalid) as error:
        reason = str(error.__cause__ or error).splitlines()[0]
        raise UserError(f"--data_files {path} is not a valid {path.suffix} file ({reason}): "
                        "fix it or leave it out") from None
    column = part.features.get("text")
    if column is None:
        raise UserError(f"{path} has no 'text' field (it has: {', '.join(part.column_names)})")
    if getattr(column, "dtype", None) not in ("string", "large_string"):
        raise UserError(f"{path}'s 'text' field holds {getattr(column, 'dtype', column)}, not strings: "
                        "give each document's text as a string")
    try:  # pyarrow takes a .json's strings as the bytes they are, UTF-8 or not
        part.data.column("text").validate(full=True)
    except pyarrow.ArrowInvalid:
        raise UserError(f"--data_files {path} is not UTF-8 text: give UTF-8 files") from None
    return part.select_columns(["text"])


@contextlib.contextmanager
def datasets_quiet():
    """datasets' progress bars and log lines off for the block, then as they were."""
    import datasets

    bars, verbosity = datasets.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()


def load_hub(name: str):
    """A dataset from the Hugging Face hub (needs the network, or its local cache)."""
    import datasets

    try:
        return datasets.load_dataset(name)
    except (ConnectionError, OSError) as error:
        raise UserError(
            f"could not load {name} from the Hugging Face hub ({type(error).__name__}); offline, "
            "pass local files with --data_files=PATH [PATH ...]"
        ) from None


def split(dataset, val_fraction: float, seed: int) -> tuple:
    """(train, val): the dataset's own splits when it has them, else a seeded random split."""
    if hasattr(dataset, "keys") and "train" in dataset:
        if "validation" in dataset:
            return dataset["train"], dataset["validation"]
        dataset = dataset["train"]
    if len(dataset) == 0:
        raise UserError("the files hold no text: give files that hold documents")
    if len(dataset) < 2:
        raise UserError(f"the text holds {len(dataset)} document(s), and a train/val split needs two or more: "
                        "separate documents with <|endoftext|> in a .txt, or give one per row or line")
    val = math.ceil(len(dataset) * val_fraction)  # as datasets rounds it
    if val >= len(dataset):
        raise UserError(f"--val_fraction={val_fraction} of {len(dataset)} documents leaves none to train on: "
                        "give a smaller --val_fraction or more documents")
    parts = dataset.train_test_split(test_size=val_fraction, seed=seed)
    return parts["train"], parts["test"]


def texts(part, desc: str):
    """The documents' texts one by one, under a progress bar."""
    with tqdm(total=len(part), desc=desc, unit=" documents") as bar:
        for batch in part.iter(batch_size=BATCH):
            yield from batch["text"]
            bar.update(len(batch["text"]))


def choose_tokenizer(vocab_size: str, reuse: Path | None, train) -> TiktokenTokenizer:
    """The tokenizer that --tokenizer names, else GPT-2's for --vocab_size=gpt2, else a BPE
    trained to --vocab_size tokens on the training split only (the validation text stays
    unseen)."""
    if reuse is not None:
        tokenizer = tokenizer_at(reuse)
        if isinstance(tokenizer, CharTokenizer):
            raise UserError(f"--tokenizer={reuse} is a character vocabulary, which has no end-of-text token "
                            "to separate documents: give a BPE dataset or checkpoint")
        return tokenizer
    if vocab_size == "gpt2":
        return GPT2Tokenizer()
    tokenizer = BPETokenizer.train(texts(train, "training the tokenizer"), int(vocab_size))
    if tokenizer.vocab_size < int(vocab_size):
        print(f"note: the text ran out of pairs to merge at {tokenizer.vocab_size} tokens ({vocab_size} asked)")
    return tokenizer


def encode(dataset, tokenizer: TiktokenTokenizer, threads: int):
    """Adds "ids" (the document's tokens, then end-of-text), "len" and "bytes" (of its UTF-8
    text) to every document."""

    def encode_batch(batch):
        ids = [doc + [tokenizer.eot] for doc in tokenizer.encode_batch(batch["text"], threads)]
        return {"ids": ids, "len": [len(d) for d in ids], "bytes": [len(t.encode()) for t in batch["text"]]}

    return dataset.map(encode_batch, batched=True, batch_size=BATCH, remove_columns=dataset.column_names,
                       desc="encoding")


def write_bin(encoded, path: Path, vocab_size: int) -> int:
    """Every document's tokens, in order, into one memmapped file; returns the token count."""
    total = int(np.sum(encoded["len"], dtype=np.int64))
    out = np.memmap(path, dtype=token_dtype(vocab_size), mode="w+", shape=(total,))
    offset = 0
    for batch in encoded.iter(batch_size=BATCH):
        ids = np.concatenate([np.asarray(doc) for doc in batch["ids"]])
        out[offset : offset + len(ids)] = ids
        offset += len(ids)
    out.flush()
    return total


def prepare(dataset, out_dir: Path, val_fraction: float, seed: int, threads: int, vocab_size: str = "gpt2",
            reuse: Path | None = None) -> dict:
    """Choose or train the tokenizer, then encode, split and write train.bin, val.bin and
    meta.json (with tokenizer.json for a BPE of our own); returns the figures."""
    if reuse is None and vocab_size != "gpt2":  # checked before the slow steps
        if not (vocab_size.isascii() and vocab_size.isdigit()):
            raise UserError(f"--vocab_size must be a number of tokens or gpt2, got {vocab_size!r}")
        if int(vocab_size) > MAX_VOCAB_SIZE:
            raise UserError(f"--vocab_size must be at most {MAX_VOCAB_SIZE:,} (token ids are stored in 32 bits), "
                            f"got {vocab_size}")
    parts = dict(zip(("train", "val"), split(dataset, val_fraction, seed)))
    for name, part in parts.items():
        if len(part) == 0:
            raise UserError(f"the {name} split is empty: use more documents or another --val_fraction")
    with NewDataset(out_dir, "the documents") as new:
        start = time.perf_counter()
        tokenizer = choose_tokenizer(vocab_size, reuse, parts["train"])
        tokenizer_seconds = time.perf_counter() - start
        if isinstance(tokenizer, BPETokenizer):
            tokenizer.save(new.folder)
        start = time.perf_counter()
        figures = {}
        for name, part in parts.items():
            encoded = encode(part, tokenizer, threads)
            figures[f"{name}_documents"] = len(part)
            figures[f"{name}_tokens"] = write_bin(encoded, new.folder / f"{name}.bin", tokenizer.vocab_size)
            figures[f"{name}_bytes"] = int(np.sum(encoded["bytes"], dtype=np.int64))
        seconds = time.perf_counter() - start
        new.done(tokenizer.meta() | figures)
    documents, tokens, text_bytes = (figures[f"train_{k}"] + figures[f"val_{k}"] for k in ("documents", "tokens", "bytes"))
    if reuse is None and vocab_size != "gpt2":
        print(f"trained the tokenizer in {tokenizer_seconds:.1f} s: {figures['train_documents'] / tokenizer_seconds:,.0f} "
              f"documents/s, {figures['train_tokens'] / tokenizer_seconds:,.0f} tokens/s")
    print(f"encoded {documents:,} documents, {tokens:,} tokens in {seconds:.1f} s: {documents / seconds:,.0f} "
          f"documents/s, {tokens / seconds:,.0f} tokens/s; {text_bytes / tokens:.2f} bytes per token")
    return figures | {"seconds": seconds}


def fraction(text: str) -> float:
    """--val_fraction's type: a share strictly between none and all."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be > 0 and < 1, got {text}")
    return value


def count(text: str) -> int:
    """--threads' type: a whole number, at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def prepare_script(description: str, hub_name: str, here: Path, val_fraction: float, seed: int,
                   vocab_size: str) -> None:
    """The command line of a document corpus's prepare.py: the hub dataset, or --data_files."""
    parser = PrepareArguments(description, here)
    parser.add_argument("--data_files", type=Path, nargs="+", help="local .txt/.json/.jsonl/.parquet files")
    parser.add_argument("--val_fraction", type=fraction, default=val_fraction,
                        help="the share held out when the data has no validation split")
    parser.add_argument("--seed", type=int, default=seed, help="the seed of that split (0 or more)")
    parser.add_argument("--threads", type=count, default=os.cpu_count(), help="encoding threads")
    parser.add_argument("--vocab_size",
                        help=f"train a BPE of this many tokens on the training split, or gpt2: GPT-2's own "
                             f"(default: {vocab_size})")
    parser.add_argument("--tokenizer", type=Path,
                        help="reuse the tokenizer of a dataset folder or a checkpoint (.eqx or out_dir) instead")
    args = parser.parse()
    if args.seed < 0:  # the split's random generator takes none
        raise UserError(f"--seed must be at least 0, got {args.seed}")
    if args.tokenizer is not None and args.vocab_size is not None:
        raise UserError("--tokenizer reuses a tokenizer, which has its own vocabulary: drop --vocab_size")
    args.vocab_size = args.vocab_size or vocab_size
    dataset = read_local(args.data_files) if args.data_files else load_hub(hub_name)
    prepare(dataset, args.out_dir, args.val_fraction, args.seed, args.threads, args.vocab_size, args.tokenizer)
