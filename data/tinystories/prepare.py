"""TinyStories in GPT-2's byte-pair encoding: train.bin, val.bin, meta.json.

    python data/tinystories/prepare.py                      # roneneldan/TinyStories, online
    python data/tinystories/prepare.py --data_files stories.txt   # a local copy of some stories

Local files may be .txt (stories separated by <|endoftext|>), .json/.jsonl or .parquet (a
"text" field). The hub dataset's own train/validation splits are used; local files are split
at random (seeded). The tokenizer works offline once `pip install --no-deps openai-whisper`
has run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.documents import prepare_script  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402

if __name__ == "__main__":
    report_user_errors(prepare_script)(
        __doc__, "roneneldan/TinyStories", Path(__file__).parent, val_fraction=0.05, seed=1337
    )
