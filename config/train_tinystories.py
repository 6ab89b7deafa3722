# TinyStories, the main job: llama2.c's 15M model (RMSNorm, SwiGLU, rotary positions) with
# GPT-2's tokenizer, sized for one GPU. First:
#   python data/tinystories/prepare.py            # online; or --data_files PATH ... offline
#
# On a CPU, train a smaller model on the bundled sample (2,316 stories) for about ten minutes:
#   python data/tinystories/prepare.py --data_files stories.txt   # a local copy of some stories
#   python train.py config/train_tinystories.py --arch=tinystories-260k --n_embd=128 \
#     --block_size=128 --batch_size=16 --gradient_accumulation_steps=1 --max_iters=400 \
#     --lr_decay_iters=400 --warmup_iters=40 --eval_interval=100 --eval_iters=20 \
#     --dtype=float32 --learning_rate=2e-3 --min_lr=2e-4
# then: python sample.py --out_dir=out-tinystories --num_samples=3
# (GPT-2's 50,257-token head is most of the compute at this size.)

out_dir = "out-tinystories"
eval_interval = 1000
eval_iters = 100
log_interval = 50

dataset = "tinystories"
arch = "tinystories-15m"
block_size = 256
batch_size = 64
gradient_accumulation_steps = 2  # 32,768 tokens per iteration

learning_rate = 5e-4
max_iters = 20000
lr_decay_iters = 20000
min_lr = 5e-5
warmup_iters = 1000
weight_decay = 0.1
beta2 = 0.95
dropout = 0.0

dtype = "bfloat16"
