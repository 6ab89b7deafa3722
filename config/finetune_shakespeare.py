# Finetune GPT-2 XL on Tiny Shakespeare (nanoGPT's values): a few iterations at a small,
# constant learning rate. Needs the weights locally (see the README) and:
#   python data/shakespeare/prepare.py
# On a CPU, a smaller model finishes sooner: --init_from=gpt2

out_dir = "out-shakespeare"
eval_interval = 5
eval_iters = 40
always_save_checkpoint = False  # keep only checkpoints that improve val loss

dataset = "shakespeare"
init_from = "gpt2-xl"

# 1 sequence x 32 accumulation steps x 1024 tokens = 32,768 tokens per iteration;
# Shakespeare is ~300K tokens, so one epoch is ~9 iterations.
batch_size = 1
block_size = 1024  # GPT-2's whole context
gradient_accumulation_steps = 32
max_iters = 20
steps_per_call = 5  # the steps between two evaluations, in one compiled call

learning_rate = 3e-5  # finetune at a constant, small learning rate
decay_lr = False
