"""TinyStories in a 4,096-token BPE trained on its stories: train.bin, val.bin, meta.json and
tokenizer.json.

    python data/tinystories/prepare.py                      # roneneldan/TinyStories, online
    python data/tinystories/prepare.py --data_files stories.txt   # a local copy of some stories
    python data/tinystories/prepare.py --vocab_size=gpt2    # GPT-2's tokenizer instead
    python data/tinystories/prepare.py --data_files other.txt --out_dir=data/other --tokenizer=out-tinystories
                                                            # another text, in a trained run's tokenizer

Local files may be .txt (stories separated by <|endoftext|>), .json/.jsonl or .parquet (a
"text" field). The hub dataset's own train/validation splits are used; local files are split
at random (seeded). The tokenizer is trained on the training split only. GPT-2's works offline
once `pip install --no-deps openai-whisper` has run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.documents import prepare_script  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402


@report_user_errors
def main():
    prepare_script(__doc__, "roneneldan/TinyStories", Path(__file__).parent,
                   val_fraction=0.05, seed=1337, vocab_size="4096")


if __name__ == "__main__":
    main()
