"""OpenWebText in GPT-2's byte-pair encoding (nanoGPT's openwebtext): train.bin, val.bin,
meta.json; config/eval_gpt2*.py evaluate GPT-2 on it.

    python data/openwebtext/prepare.py                        # Skylion007/openwebtext, online (~54 GB of cache)
    python data/openwebtext/prepare.py --data_files a.jsonl   # local files, as for TinyStories

As in nanoGPT, 0.05% of the documents (seeded) become the validation split.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from helpers.documents import prepare_script  # noqa: E402
from helpers.errors import report_user_errors  # noqa: E402


@report_user_errors
def main():
    prepare_script(__doc__, "Skylion007/openwebtext", Path(__file__).parent,
                   val_fraction=0.0005, seed=2357, vocab_size="gpt2")


if __name__ == "__main__":
    main()
