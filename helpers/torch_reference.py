"""The same GPT in PyTorch: the bar bench.py measures against and the reference the tests
check our numbers with. Test and benchmark only; nothing in training or sampling imports it.

It is written to be as fast as PyTorch eager gets on a CPU: one fused QKV matmul,
F.scaled_dot_product_attention(is_causal=True), and torch.optim.AdamW (foreach). Its weights
come from one of our models (`from_jax`), so both sides start from the very same numbers.
"""

import math

import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch import nn

from model import GPT, GPTConfig, swiglu_hidden


class TorchBlock(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        hidden = swiglu_hidden(C) if config.mlp == "swiglu" else 4 * C
        fc_out = 2 * hidden if config.mlp == "swiglu" else hidden
        self.n_head, self.mlp = config.n_head, config.mlp
        self.ln_1 = nn.LayerNorm(C, bias=config.bias)
        self.c_attn = nn.Linear(C, 3 * C, bias=config.bias)
        self.attn_proj = nn.Linear(C, C, bias=config.bias)
        self.ln_2 = nn.LayerNorm(C, bias=config.bias)
        self.c_fc = nn.Linear(C, fc_out, bias=config.bias)
        self.mlp_proj = nn.Linear(hidden, C, bias=config.bias)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for a in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        h = self.c_fc(self.ln_2(x))
        if self.mlp == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return x + self.mlp_proj(h)


class TorchGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.h = nn.ModuleList(TorchBlock(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T

    def loss(self, idx, targets):
        logits = self(idx)
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


# Our parameter (block field path) -> the TorchBlock parameter that holds the same numbers.
BLOCK_NAMES = {
    "ln_1": "ln_1", "attn.c_attn": "c_attn", "attn.c_proj": "attn_proj",
    "ln_2": "ln_2", "mlp.c_fc": "c_fc", "mlp.c_proj": "mlp_proj",
}


def from_jax(model: GPT) -> TorchGPT:
    """A TorchGPT holding exactly the weights of `model` (fp32)."""
    torch_model = TorchGPT(model.config)
    as_tensor = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))
    with torch.no_grad():
        torch_model.wte.weight.copy_(as_tensor(model.wte.weight))
        torch_model.wpe.weight.copy_(as_tensor(model.wpe.weight))
        _copy_layer(model.ln_f, torch_model.ln_f, as_tensor)
        for layer, block in zip(model.blocks(), torch_model.h):
            for path, name in BLOCK_NAMES.items():
                source = layer
                for part in path.split("."):
                    source = getattr(source, part)
                _copy_layer(source, getattr(block, name), as_tensor)
    return torch_model


def _copy_layer(source, target: nn.Module, as_tensor):
    target.weight.copy_(as_tensor(source.weight))
    if source.bias is not None:
        target.bias.copy_(as_tensor(source.bias))


def adamw(model: TorchGPT, learning_rate: float, weight_decay: float, betas) -> torch.optim.AdamW:
    """AdamW decaying exactly what ours decays: Linear and Embedding weights, not biases or norms."""
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=True)


def nanogpt_lr(step: int, learning_rate: float, warmup: int, decay_iters: int, min_lr: float) -> float:
    """nanoGPT's schedule in plain Python: linear warmup, cosine to min_lr, then flat."""
    if step < warmup:
        return learning_rate * (step + 1) / (warmup + 1)
    if step > decay_iters:
        return min_lr
    ratio = (step - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)


def train_baby(mlp: str, seed: int, dataset: str) -> dict:
    """nanoGPT's CPU "baby" run in PyTorch, from our init and our batches for the same seed:
    what train.py's val loss would be if our model or optimizer differed in nothing."""
    from helpers.data import batch_rng, dataset_dir, get_batch, open_split, read_meta
    from helpers.training import init_state

    data_dir = dataset_dir(dataset)
    config = GPTConfig(block_size=64, vocab_size=read_meta(data_dir)["vocab_size"], n_layer=4,
                       n_head=4, n_embd=128, bias=False, mlp=mlp)
    # train.py's init for this seed: init_state draws the model the same way whatever the optimizer.
    model = from_jax(init_state(config, optax.identity(), seed)["model"])
    optimizer = adamw(model, 1e-3, 0.1, (0.9, 0.99))
    train, val = open_split(data_dir, "train", 64), open_split(data_dir, "val", 64)
    as_long = lambda a: torch.from_numpy(a).long()
    for step in range(2000):
        for group in optimizer.param_groups:
            group["lr"] = nanogpt_lr(step, 1e-3, 100, 2000, 1e-4)
        x, y = get_batch(train, (12,), 64, batch_rng(seed, 0, step))  # train.py's TRAIN stream
        loss = model.loss(as_long(x), as_long(y))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    with torch.no_grad():
        x, y = get_batch(val, (20, 12), 64, batch_rng(seed, 3, 2000))  # train.py's last val eval
        val_loss = sum(model.loss(as_long(x[i]), as_long(y[i])).item() for i in range(20)) / 20
    return {"mlp": mlp, "seed": seed, "val_loss": round(val_loss, 4)}


if __name__ == "__main__":
    import sys

    from configurator import configure

    settings = configure({"mlp": "gelu", "seed": 1337, "dataset": "shakespeare_char", "__file__": __file__}, sys.argv[1:])
    print(train_baby(**settings))
