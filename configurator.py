"""Settings for scripts, nanoGPT style: `python train.py config/some_file.py --key=value ...`.

A script's settings are its module-level globals with simple values (numbers, strings, bools).
Config files are applied first, in order, then --key=value overrides. Unlike nanoGPT, every
name is checked: an unknown key names the closest valid one, and a value of the wrong type
says which type was expected. The trailing comment on each setting's line is its help text.

Config files are ordinary Python, executed with the permissions of the user who runs the
script: only use config files you trust, as you would any script.
"""

import ast
import difflib
import io
import runpy
import sys
import tokenize
from pathlib import Path

from helpers.errors import UserError

SETTING_TYPES = (bool, int, float, str, tuple)  # a tuple setting holds strings


class ConfigError(UserError):
    """A config file or --key=value that cannot be applied."""


def settings_of(namespace: dict) -> dict:
    """The names in a script's globals that are settings: lower-case, public, of a simple type
    (UPPER_CASE names are the script's constants)."""
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and not k.isupper() and type(v) in SETTING_TYPES
    }


def check_type(key: str, value, default):
    """`value` if it has the default's type (an int is accepted where a float is expected)."""
    if isinstance(default, float) and type(value) is int:
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a tuple of strings, like ('a', 'b'), got {value!r}")
        return tuple(value)
    if type(value) is not type(default):
        raise ConfigError(
            f"{key} must be {type(default).__name__} (like the default {default!r}), "
            f"got {type(value).__name__} {value!r}"
        )
    return value


def unknown_key_error(key: str, known) -> ConfigError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"unknown config key {key!r}; {hint}(--help lists every key)")


def parse_value(key: str, text: str, default):
    """A command-line value: a Python literal, except that a string setting takes the raw text
    (so --dataset=shakespeare_char needs no quotes), and so does a one-string tuple
    (--stop=END means ("END",); --stop='("a", "b")' gives two)."""
    if isinstance(default, str):
        return text
    if isinstance(default, tuple) and not text.startswith(("(", "[")):
        return (text,) if text else ()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(
            f"--{key}={text} is not a valid {type(default).__name__} (default: {default!r})"
        ) from None
    return check_type(key, value, default)


def apply_config_file(path: str, settings: dict) -> dict:
    """The settings a config file assigns, checked against the known ones."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} does not exist (arguments that set keys look like --key=value)")
    try:
        # An ordinary module, run in one namespace: its functions and classes see its imports,
        # so a file can define and register components (docs/adding_a_model.md) as well as set keys.
        namespace = runpy.run_path(str(file), run_name="__config__")
    except Exception as error:
        raise ConfigError(f"config file {path} failed: {type(error).__name__}: {error}") from None
    updates = {}
    for key, value in settings_of(namespace).items():
        if key not in settings:
            raise unknown_key_error(key, settings)
        updates[key] = check_type(key, value, settings[key])
    return updates


def descriptions(script: str) -> dict:
    """Help text for each setting: the comment at the end of the line that assigns it."""
    text = Path(script).read_text()
    comments = {
        tok.start[0]: tok.string.lstrip("# ").strip()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT
    }
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = comments.get(node.lineno, "")
    return found


def help_text(settings: dict, script: str) -> str:
    meanings = descriptions(script)
    width = max(len(k) for k in settings)
    lines = [f"usage: python {Path(script).name} [config_file.py ...] [--key=value ...]", ""]
    lines += [f"  --{k:<{width}} = {v!r:<22} {meanings.get(k, '')}" for k, v in settings.items()]
    return "\n".join(lines)


def configure(namespace: dict, argv: list[str] | None = None, preset=None) -> dict:
    """Apply config files and --key=value arguments to a script's globals, in place.

    Returns the resulting settings (for logging and checkpoints). `--help` prints every
    setting with its default and meaning, then exits. `preset`, if given, is a function of
    the settings (once every file and argument is read) returning more values to apply under
    them: a named preset's values beat the defaults, and anything set explicitly beats both.
    """
    argv = sys.argv[1:] if argv is None else argv
    settings = settings_of(namespace)
    if "--help" in argv or "-h" in argv:
        print(help_text(settings, namespace["__file__"]))
        sys.exit(0)
    explicit: dict = {}
    for arg in argv:
        if not arg.startswith("--"):
            explicit.update(apply_config_file(arg, settings))
            continue
        key, eq, text = arg[2:].partition("=")
        if key not in settings:
            raise unknown_key_error(key, settings)
        if not eq and type(settings[key]) is not bool:
            raise ConfigError(f"{arg} has no value: write --{key}=VALUE")
        # A bare --flag switches a bool setting on.
        explicit[key] = parse_value(key, text, settings[key]) if eq else True
    settings.update(explicit)
    if preset is not None:
        settings.update({k: check_type(k, v, settings[k]) for k, v in preset(settings).items()})
        settings.update(explicit)
    namespace.update(settings)
    return settings


def explicit_keys(argv: list[str] | None = None) -> set[str]:
    """The keys set by --key=value on the command line (not by config files or defaults)."""
    argv = sys.argv[1:] if argv is None else argv
    return {arg[2:].partition("=")[0] for arg in argv if arg.startswith("--")}
