"""What exists: every registry with each entry's one-line description and its own options, for
`python train.py [FILES] --list` (what the files register is listed too)."""

from helpers.archs import ARCHS
from helpers.optim import OPTIMIZERS
from model import BLOCKS, MIXERS, MLPS, MODELS, NORMS, POSITIONS


def summary(entry) -> str:
    """The first sentence of an entry's docstring (a class, a preset function), or the text itself."""
    text = entry if isinstance(entry, str) else (entry.__doc__ or "")
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".") + "." if paragraph else "(no description)"


def describe() -> str:
    sections = [("models (--model)", MODELS), ("mixers (--mixer, or mixer= in a --layers spec)", MIXERS),
                ("MLPs (--mlp)", MLPS), ("norms (--norm)", NORMS), ("blocks (--block)", BLOCKS),
                ("positions (--position)", POSITIONS), ("presets (--arch; --arch=help adds their sizes)", ARCHS),
                ("optimizers (--optimizer)", OPTIMIZERS)]
    lines = []
    for title, registry in sections:
        lines.append(f"{title}:")
        for name, entry in registry.items():
            lines.append(f"  {name:<18} {summary(entry)}")
            for option, declared in getattr(registry, "options", {}).get(name, {}).items():
                lines.append(f"  {'':<18}   --{option}={declared.default!r}: {declared.describe()}")
        lines.append("")
    return "\n".join(lines).rstrip()
