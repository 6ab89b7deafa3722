# GPT-2 small (124M) from scratch on OpenWebText, nanoGPT's train_gpt2 recipe: about 0.5M
# tokens per iteration (12 sequences x 1024 tokens x 40 micro-batches), 600,000 iterations.
# Sized for a machine of GPUs: on one, expect days; scale batch_size and --mesh with more.
# First: python data/openwebtext/prepare.py
out_dir = "out-gpt2"
dataset = "openwebtext"
arch = "gpt2"
eval_interval = 1000
eval_iters = 200
log_interval = 10

batch_size = 12
block_size = 1024
gradient_accumulation_steps = 40
steps_per_call = 1  # each step is long already

learning_rate = 6e-4
max_iters = 600000
lr_decay_iters = 600000
min_lr = 6e-5
warmup_iters = 2000
beta2 = 0.95
weight_decay = 1e-1
