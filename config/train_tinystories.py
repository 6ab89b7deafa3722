# TinyStories, the main job, sized for one GPU: llama2.c's 15M shape (6 layers, 288 wide, 6
# heads, context 256) with today's recipe (the modern preset and Muon, as the CPU config
# below uses), in a 4,096-token BPE trained on the stories: llama2.c found 4,096 tokens give
# about as many tokens per story as Llama's 32,000, and a 50,257-token GPT-2 table alone would
# be 14.5M parameters at this width. First:
#   python data/tinystories/prepare.py            # online; or --data_files PATH ... offline
#   python data/tinystories/prepare.py --vocab_size=gpt2   # GPT-2's tokenizer instead
# then: python sample.py --out_dir=out-tinystories --num_samples=3
# On a CPU, config/train_tinystories_cpu.py trains a smaller model on a sample in minutes.

out_dir = "out-tinystories"
eval_interval = 1000
eval_iters = 100
log_interval = 50

dataset = "tinystories"
arch = "modern"  # RoPE, RMSNorm, ReLU², QK-norm, soft-capped logits, an untied head
n_layer = 6
n_head = 6
n_embd = 288
block_size = 256
scan_layers = False  # six layers: unrolling compiles quickly and runs a little faster
batch_size = 64
gradient_accumulation_steps = 2  # 32,768 tokens per iteration

optimizer = "muon"
muon_learning_rate = 0.02
learning_rate = 3e-3  # the AdamW side: embeddings, head and gains
max_iters = 20000
lr_decay_iters = 20000
min_lr = 3e-4
warmup_iters = 1000
weight_decay = 0.1
beta2 = 0.95
dropout = 0.0  # 470M tokens of stories: a 15M model does not memorise them

dtype = "bfloat16"
