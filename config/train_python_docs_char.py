# The embedded corpus: Python's own documentation, as characters. Needs no download and
# trains in a few minutes on 2 CPU cores. First: python data/python_docs_char/prepare.py

out_dir = "out-python-docs-char"
dataset = "python_docs_char"
eval_interval = 500
eval_iters = 20
log_interval = 50

batch_size = 12
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
scan_layers = False  # 4 layers: unrolled, they compile quickly and run faster on a CPU

learning_rate = 1e-3
max_iters = 2500
lr_decay_iters = 2500
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100
