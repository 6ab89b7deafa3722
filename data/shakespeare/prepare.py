"""Tiny Shakespeare in GPT-2's byte-pair encoding (nanoGPT's shakespeare, for finetuning GPT-2):
the first 90% of the text to train.bin, the rest to val.bin, and meta.json.

Reads input.txt from this folder, or --input=PATH; downloads it only when neither exists.
The tokenizer works offline once `pip install --no-deps openai-whisper` has run.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import read_or_download, write_meta, write_tokens  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402
from helpers.tokenizer import GPT2Tokenizer  # noqa: E402

HERE = Path(__file__).parent
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, help="a local copy of input.txt")
    parser.add_argument("--out_dir", type=Path, default=HERE, help="where the bins go")
    args = parser.parse_args()
    text = read_or_download(args.input, HERE / "input.txt", URL)
    tokenizer = GPT2Tokenizer()
    cut = int(len(text) * 0.9)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        ids = tokenizer.encode(part)
        write_tokens(args.out_dir / f"{split}.bin", ids, tokenizer.vocab_size)
        print(f"{split}: {len(ids):,} tokens")
    write_meta(args.out_dir, tokenizer.meta())


if __name__ == "__main__":
    main()
