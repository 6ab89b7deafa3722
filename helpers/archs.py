"""Named architectures: `python train.py --arch=NAME`, applied before any --key=value override.

Each preset is a function returning GPTConfig fields, registered under its name; presets
derive from one another by calling their parent and changing a few fields. The first line of
the docstring is the preset's description in `--arch=help`. Counts there use each preset's own
vocabulary (for the TinyStories sizes, their llama2.c originals': 512 tokens for 260k, Llama's
32,000 for the rest); a training run takes its vocabulary from its dataset. Register your own
from any file:

    from helpers.archs import ARCHS, gpt2

    @ARCHS.register("gpt2-wide")
    def gpt2_wide():
        "GPT-2 small, twice as wide."
        return gpt2() | {"n_embd": 1536}
"""

import equinox as eqx
import jax

from helpers.contract import build_model  # and with it components.py: presets use the optional built-ins
from helpers.errors import UserError
from helpers.registry import OPTIONS, Registry
from model import GPTConfig

ARCHS = Registry("arch")


def with_layer_count(values: dict, explicit) -> dict:
    """`values` with n_layer taken from the length of `layers` when layers are listed and
    n_layer was not set explicitly (a preset's or the default's gives way); an explicit n_layer
    must agree."""
    layers = values.get("layers") or ()
    if not layers or values.get("n_layer") == len(layers):
        return values
    if "n_layer" in explicit:
        raise ValueError(f"layers lists {len(layers)} layers but n_layer={values['n_layer']} was set: drop n_layer "
                         "(it follows from layers), or list one spec per layer")
    return values | {"n_layer": len(layers)}


def build(name: str, **overrides) -> GPTConfig:
    """The one factory: a preset's config, with fields and options overridden."""
    ARCHS.check(name)
    return GPTConfig.from_dict(with_layer_count(ARCHS[name]() | overrides, overrides))


def preset_settings(settings: dict) -> dict:
    """What --arch=NAME sets in a script: the preset's fields (those the script has) and options
    (configurator's `preset` hook, so anything set explicitly still wins). --arch=help lists the
    presets and exits."""
    name = settings["arch"]
    if not name:
        return {}
    if name == "help":
        print(describe())
        raise SystemExit(0)
    try:
        ARCHS.check(name)
    except ValueError as error:
        raise UserError(f"{error} (--arch=help describes them)") from None
    return {k: v for k, v in ARCHS[name]().items() if k in settings or k in OPTIONS}


def config_from_settings(settings: dict, **fixed) -> GPTConfig:
    """The model a script's settings describe: their --arch preset, with every model field and
    option the settings hold on top, then `fixed`; n_layer follows a list of layers unless set
    explicitly. A config that cannot work is the user's one-line error."""
    preset = ARCHS[settings["arch"]]() if settings.get("arch") else {}
    explicit = set(getattr(settings, "explicit", ())) | set(fixed)
    chosen = {k: v for k, v in settings.items() if k in GPTConfig.declarations() or k in OPTIONS}
    try:
        values = with_layer_count(preset | chosen | fixed, explicit)
        # A preset's option gives way, like its fields, when the component that declares it does.
        in_use = GPTConfig.from_dict({k: v for k, v in values.items() if k not in OPTIONS}).declared()
        return GPTConfig.from_dict({k: v for k, v in values.items() if k not in OPTIONS or k in explicit or k in in_use})
    except ValueError as error:
        raise UserError(str(error)) from None


def describe() -> str:
    """One line per preset: name, parameter count (with the preset's vocabulary) and summary."""
    lines = []
    for name, preset in ARCHS.items():
        skeleton = eqx.filter_eval_shape(build_model, GPTConfig.from_dict(preset()), jax.random.key(0))
        summary = (preset.__doc__ or "").strip().splitlines()[0]
        lines.append(f"{name:<18} {skeleton.get_num_params(non_embedding=False) / 1e6:10.2f}M  {summary}")
    return "\n".join(lines)


@ARCHS.register("gpt2")
def gpt2() -> dict:
    """OpenAI's GPT-2 small: 12 layers, 768 wide, GELU, LayerNorm with biases, learned positions."""
    return dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257, bias=True,
                mlp="gelu", norm="layernorm", position="learned", scan_layers=True)


@ARCHS.register("gpt2-medium")
def gpt2_medium() -> dict:
    """GPT-2 medium: 24 layers, 1024 wide."""
    return gpt2() | dict(n_layer=24, n_head=16, n_embd=1024)


@ARCHS.register("gpt2-large")
def gpt2_large() -> dict:
    """GPT-2 large: 36 layers, 1280 wide."""
    return gpt2() | dict(n_layer=36, n_head=20, n_embd=1280)


@ARCHS.register("gpt2-xl")
def gpt2_xl() -> dict:
    """GPT-2 XL: 48 layers, 1600 wide."""
    return gpt2() | dict(n_layer=48, n_head=25, n_embd=1600)


@ARCHS.register("shakespeare-char")
def shakespeare_char() -> dict:
    """nanoGPT's shakespeare-char model: 6 layers, 384 wide, context 256, dropout 0.2.

    Shallow enough that unrolling the layers (scan_layers=False) costs little compile time
    and runs faster on CPU."""
    return gpt2() | dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65,
                         bias=False, dropout=0.2, scan_layers=False)


@ARCHS.register("baby")
def baby() -> dict:
    """nanoGPT's CPU "baby" run of shakespeare-char: 4 layers, 128 wide, context 64."""
    return shakespeare_char() | dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0)


@ARCHS.register("llama")
def llama() -> dict:
    """LLaMA-style: RMSNorm, SwiGLU (width rounded to 256), rotary positions, no biases, GQA."""
    return dict(n_layer=12, n_head=12, n_kv_head=4, n_embd=768, block_size=1024, vocab_size=50257,
                bias=False, mlp="swiglu", multiple_of=256, norm="rmsnorm", position="rope", scan_layers=True)


@ARCHS.register("llama2-7b")
def llama2_7b() -> dict:
    """LLaMA 2 7B's shape: 32 layers, 4096 wide, MLP 11008, context 4096 (head tied: Meta's is not)."""
    return llama() | dict(n_layer=32, n_head=32, n_kv_head=0, n_embd=4096, block_size=4096, vocab_size=32000)


@ARCHS.register("tinystories-260k")
def tinystories_260k() -> dict:
    """llama2.c's 260K TinyStories model: 5 layers, 64 wide, 8 heads, 4 kv heads, context 512."""
    return llama() | dict(n_layer=5, n_head=8, n_kv_head=4, n_embd=64, block_size=512, multiple_of=32, vocab_size=512)


@ARCHS.register("tinystories-15m")
def tinystories_15m() -> dict:
    """llama2.c's 15M TinyStories model: 6 layers, 288 wide, 6 heads, context 256."""
    return tinystories_260k() | dict(n_layer=6, n_head=6, n_kv_head=0, n_embd=288, block_size=256, vocab_size=32000)


@ARCHS.register("tinystories-42m")
def tinystories_42m() -> dict:
    """llama2.c's 42M TinyStories model: 8 layers, 512 wide, 8 heads, context 1024."""
    return tinystories_15m() | dict(n_layer=8, n_head=8, n_embd=512, block_size=1024)


@ARCHS.register("tinystories-110m")
def tinystories_110m() -> dict:
    """llama2.c's 110M TinyStories model: 12 layers, 768 wide, 12 heads, context 1024."""
    return tinystories_42m() | dict(n_layer=12, n_head=12, n_embd=768)


@ARCHS.register("tiny")
def tiny() -> dict:
    """A model for tests: 2 layers, 32 wide, context 32, a 65-character vocabulary."""
    return dict(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65, bias=False)


@ARCHS.register("modern")
def modern() -> dict:
    """GPT-2 small's size with today's recipe: RoPE, RMSNorm, ReLU² MLP, QK-norm, untied head,
    logits soft-capped at 15, residual projections starting at zero, no biases."""
    return gpt2() | dict(bias=False, mlp="relu2", norm="rmsnorm", position="rope", qk_norm=True, softcap=15.0,
                         tie_head=False, zero_init_residual=True)
