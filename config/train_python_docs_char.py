# The embedded corpus: Python's own documentation, as characters. Needs no download and
# trains in a few minutes on 2 CPU cores. First: python data/python_docs_char/prepare.py
# The model and schedule are train.py's defaults (4 layers, 128 wide, context 64, 2,500
# iterations), the size of nanoGPT's CPU "baby" run; this file only names the run's folder.

out_dir = "out-python-docs-char"
dataset = "python_docs_char"
