"""Tiny Shakespeare in GPT-2's byte-pair encoding (nanoGPT's shakespeare, for finetuning GPT-2):
the first 90% of the text to train.bin, the rest to val.bin, and meta.json.

Reads input.txt from this folder, or --input=PATH; downloads it only when neither exists.
The tokenizer works offline once `pip install --no-deps openai-whisper` has run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import NewDataset, split_sizes, text_corpus_args, write_tokens  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402
from helpers.tokenizer import GPT2Tokenizer  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@report_user_errors
def main():
    text, source, out_dir = text_corpus_args(__doc__, Path(__file__).parent, URL)
    tokenizer = GPT2Tokenizer()
    cut = int(len(text) * 0.9)
    texts, tokens = {"train": text[:cut], "val": text[cut:]}, {}
    with NewDataset(out_dir, source) as new:
        for split, part in texts.items():
            ids = tokenizer.encode(part)
            write_tokens(new.folder / f"{split}.bin", ids, tokenizer.vocab_size)
            tokens[split] = len(ids)
            print(f"{split}: {len(ids):,} tokens")
        new.done(tokenizer.meta() | split_sizes(texts, tokens))


if __name__ == "__main__":
    main()
