"""Tiny Shakespeare as characters (nanoGPT's shakespeare_char): train.bin, val.bin, meta.json.

Reads input.txt from this folder, or --input=PATH; downloads it only when neither exists.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import read_or_download, write_char_dataset  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

HERE = Path(__file__).parent
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, help="a local copy of input.txt")
    parser.add_argument("--out_dir", type=Path, default=HERE, help="where the bins go")
    args = parser.parse_args()
    write_char_dataset(read_or_download(args.input, HERE / "input.txt", URL), args.out_dir)


if __name__ == "__main__":
    main()
