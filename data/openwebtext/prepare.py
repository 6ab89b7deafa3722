"""OpenWebText in GPT-2's byte-pair encoding (nanoGPT's openwebtext): train.bin, val.bin,
meta.json; config/eval_gpt2*.py evaluate GPT-2 on it.

    python data/openwebtext/prepare.py                       # Skylion007/openwebtext, online (~54 GB of cache)
    python data/openwebtext/prepare.py --data_files=a.jsonl  # local files, as for TinyStories

Like nanoGPT, 0.05% of the documents (seeded) become the validation split.
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.documents import load_hub, prepare, read_local  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

HERE = Path(__file__).parent
HUB_NAME = "Skylion007/openwebtext"


@report_user_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_files", type=Path, nargs="+", help="local .txt/.json/.jsonl/.parquet files")
    parser.add_argument("--out_dir", type=Path, default=HERE, help="where the bins go")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="encoding threads")
    args = parser.parse_args()
    dataset = read_local(args.data_files) if args.data_files else load_hub(HUB_NAME)
    prepare(dataset, args.out_dir, val_fraction=0.0005, seed=2357, threads=args.threads)


if __name__ == "__main__":
    main()
