"""Tiny Shakespeare as characters (nanoGPT's shakespeare_char): train.bin, val.bin, meta.json.

Reads input.txt from this folder, or --input=PATH; downloads it only when neither exists.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import text_corpus_args, write_char_dataset  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@report_user_errors
def main():
    text, source, out_dir = text_corpus_args(__doc__, Path(__file__).parent, URL)
    write_char_dataset(text, out_dir, source=source)


if __name__ == "__main__":
    main()
