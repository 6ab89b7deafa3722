"""TinyStories in GPT-2's byte-pair encoding: train.bin, val.bin, meta.json.

    python data/tinystories/prepare.py                      # roneneldan/TinyStories, online
    python data/tinystories/prepare.py --data_files=../shared/data/tinystories/sample.txt

Local files may be .txt (stories separated by <|endoftext|>), .json/.jsonl or .parquet (a
"text" field). The hub dataset's own train/validation splits are used; local files are split
at random (seeded). The tokenizer works offline once `pip install --no-deps openai-whisper`
has run.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.documents import load_hub, prepare, read_local  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

HERE = Path(__file__).parent
HUB_NAME = "roneneldan/TinyStories"


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_files", type=Path, nargs="+", help="local .txt/.json/.jsonl/.parquet files")
    parser.add_argument("--out_dir", type=Path, default=HERE, help="where the bins go")
    parser.add_argument("--val_fraction", type=float, default=0.05, help="for local files: the share held out")
    parser.add_argument("--seed", type=int, default=1337, help="for local files: the split's seed")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="encoding threads")
    args = parser.parse_args()
    dataset = read_local(args.data_files) if args.data_files else load_hub(HUB_NAME)
    prepare(dataset, args.out_dir, args.val_fraction, args.seed, args.threads)


if __name__ == "__main__":
    main()
