# Evaluate OpenAI's gpt2-medium on OpenWebText; nanoGPT reports val loss 2.84.
# Needs the weights locally (see the README) and the tokenized dataset in data/openwebtext.
batch_size = 8
block_size = 1024  # GPT-2's whole context
eval_iters = 500  # more batches for a steadier estimate
eval_only = True
init_from = "gpt2-medium"
dataset = "openwebtext"
