# Character-level Tiny Shakespeare to val loss 1.88 as fast as this recipe gets there on a CPU
# (the same data and split as config/train_shakespeare_char.py; docs/performance.md has the
# figures against nanoGPT's baby run):
#   python train.py config/speedrun_shakespeare_char.py
# First: python data/shakespeare_char/prepare.py

out_dir = "out-speedrun-shakespeare-char"
dataset = "shakespeare_char"
target_loss = 1.88  # stop at the first evaluation at or below it, and print the time
eval_interval = 350  # one evaluation, at the end: each costs as much as ~60 steps
eval_iters = 200  # val loss on 200 batches, not 20: a score, not a glance
eval_train = False  # the target is on val: no train-loss estimate
eval_at_start = False
log_interval = 50
always_save_checkpoint = False

batch_size = 12
block_size = 64
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
# Today's components: rotary positions, RMSNorm, QK-norm, an untied head, soft-capped logits,
# and residual projections that start at zero. GELU, not ReLU^2: at this size it reached a lower
# val loss in the same steps (docs/performance.md has each component's share).
position = "rope"
norm = "rmsnorm"
mlp = "gelu"
qk_norm = True
tie_head = False
softcap = 15.0
zero_init_residual = True

optimizer = "muon"  # Muon on the blocks' matrices, AdamW on embeddings, head and gains
muon_learning_rate = 0.04
# Three Newton-Schulz steps with Polar Express's polynomials reach the val loss four of the
# quintic's do, and each step fewer makes every update cheaper.
muon_coefficients = "polar_express"
muon_ns_steps = 3
learning_rate = 6e-3  # the AdamW side
beta1 = 0.8
beta2 = 0.95
weight_decay = 0.0
max_iters = 350
lr_decay_iters = 350
warmup_iters = 20
min_lr = 6e-4
