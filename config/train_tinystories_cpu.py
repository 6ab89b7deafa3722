# TinyStories on a 2-core CPU in minutes: a 4-layer, 192-wide model with today's
# recipe on the 2,316-story sample, in a 4,096-token BPE trained on it. First:
#   python data/tinystories/prepare.py --data_files stories.txt   # any local .txt/.jsonl/.parquet
#   python train.py config/train_tinystories_cpu.py
#   python sample.py --out_dir=out-tinystories-cpu --num_samples=3
# The sample holds about half a million tokens, which 850 iterations see seven times over: the
# model would memorise it, so weight decay holds it back (docs/performance.md has the runs
# behind these choices; dropout, tried beside it, did worse).

out_dir = "out-tinystories-cpu"
dataset = "tinystories"
eval_interval = 170
eval_iters = 20
log_interval = 25

arch = "modern"  # RoPE, RMSNorm, ReLU², QK-norm, soft-capped logits, zero-initialised residual projections
n_layer = 4
n_head = 4
n_embd = 192
block_size = 256
tie_head = True  # with a small vocabulary the tied head generalises better than its own matrix
scan_layers = False  # four layers: unrolled is faster on a CPU
dropout = 0.0

batch_size = 16
optimizer = "muon"
muon_learning_rate = 0.02
learning_rate = 3e-3  # the AdamW side: embeddings and gains
weight_decay = 0.5  # on the Muon side; the best of 0.1 to 1.0 on the sample (docs/performance.md)
max_iters = 850
lr_decay_iters = 850
warmup_iters = 50
min_lr = 0.0  # the learning rates cool down to zero: lower val loss than ending at a tenth
dtype = "float32"
