"""The same GPT in PyTorch: the bar bench.py measures against and the reference the tests
check our numbers with. Test and benchmark only; nothing in training or sampling imports it.

It is written to be as fast as PyTorch eager gets on a CPU: one fused QKV matmul,
F.scaled_dot_product_attention(is_causal=True), and torch.optim.AdamW (foreach). Its weights
come from one of our models (`from_jax`), so both sides start from the very same numbers.
"""


import numpy as np
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
