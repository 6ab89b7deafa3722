# A small character-level Shakespeare model (nanoGPT's values). On a GPU this takes minutes;
# for a CPU, nanoGPT's "baby" run is:
#   python train.py config/train_shakespeare_char.py --eval_iters=20 --log_interval=1 \
#     --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \
#     --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
# First: python data/shakespeare_char/prepare.py

out_dir = "out-shakespeare-char"
eval_interval = 250  # small model, so it overfits: evaluate often
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # keep only checkpoints that improve val loss

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # context of up to 256 previous characters

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2
scan_layers = False  # 6 layers: unrolled, they compile quickly and run faster on a CPU

learning_rate = 1e-3  # small networks can take a larger learning rate
max_iters = 5000
lr_decay_iters = 5000
min_lr = 1e-4
beta2 = 0.99  # a little larger because there are few tokens per iteration
warmup_iters = 100
