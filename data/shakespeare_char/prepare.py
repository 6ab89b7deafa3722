"""Tiny Shakespeare as characters (nanoGPT's shakespeare_char): train.bin, val.bin, meta.json.

Reads input.txt from this folder, or --input=PATH; downloads it only when neither exists.
"""

import argparse
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.data import write_char_dataset  # noqa: E402
from helpers.errors import UserError, report_user_errors  # noqa: E402

HERE = Path(__file__).parent
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def read_input(path: Path | None) -> str:
    if path is not None:
        if not path.is_file():
            raise UserError(f"--input={path} does not exist")
        return path.read_text()
    local = HERE / "input.txt"
    if not local.exists():
        print(f"downloading {URL}")
        try:
            urllib.request.urlretrieve(URL, local)
        except OSError as error:
            raise UserError(
                f"could not download Tiny Shakespeare ({error}); put input.txt in {HERE} "
                "or pass --input=PATH"
            ) from None
    return local.read_text()


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, help="a local copy of input.txt")
    parser.add_argument("--out_dir", type=Path, default=HERE, help="where the bins go")
    args = parser.parse_args()
    write_char_dataset(read_input(args.input), args.out_dir)


if __name__ == "__main__":
    main()
