"""Settings for scripts, nanoGPT style: `python train.py config/some_file.py --key=value ...`.

A script's settings are its module-level globals with simple values (numbers, strings, bools,
tuples of strings). A script that builds a model (train.py, check.py) also takes every option
that a registered component declares (helpers/registry.py). Config files run first, in order:
each is ordinary Python, which may register components, declare options and set settings.
Then every --key=value applies, wherever it stands on the command line; --help and --list
answer after the files have run, so they show what the files add.

A file may set any script's settings: each script takes the ones it knows and leaves the rest to
the others, so one file serves train.py, sample.py and check.py. Any other name in a file is the
file's own (a helper variable), unless it is a near miss of a setting ("did you mean"). A key
typed on the command line must be one this script knows. Every value is checked against its
declaration (an Option): the type of its default and, for a model's fields and options, the
values they accept. The trailing comment on a setting's line is its help text.

Config files are ordinary Python, executed with the permissions of the user who runs the
script: only use config files you trust, as you would any script.
"""

import ast
import dataclasses
import difflib
import io
import runpy
import sys
import tokenize
import types
from collections.abc import Callable
from pathlib import Path

from helpers.errors import UserError
from helpers.registry import OPTIONS, Option, owners

ROOT = Path(__file__).resolve().parent
SCRIPTS = ("train.py", "sample.py", "check.py", "plot.py", "bench.py")  # whose settings a config file may set
SETTING_TYPES = (bool, int, float, str, tuple)  # a tuple setting holds strings


class ConfigError(UserError):
    """A config file or --key=value that cannot be applied."""


class Settings(dict):
    """A script's settings by name; `explicit` holds the names that a config file or the command
    line set (the rest are defaults, or a preset's)."""

    def __init__(self, values: dict, explicit: set[str]):
        super().__init__(values)
        self.explicit = explicit


def settings_of(namespace: dict) -> dict:
    """The names in a script's globals that are settings: lower-case, public, of a simple type
    (UPPER_CASE names are constants, _names helpers)."""
    return {
        k: v for k, v in namespace.items()
        if not k.startswith("_") and not k.isupper() and type(v) in SETTING_TYPES
    }


def script_settings(path: Path, namespace: dict | None = None) -> dict[str, Option]:
    """A script's settings read from its source, without running it: each module-level
    `name = literal` line, with the comment at its end as help, and what it accepts where the
    line says so, `name: accepts(...) = literal` (helpers/registry.accepts). A rule that names
    one of the script's objects (choices=OPTIMIZERS) is looked up in its `namespace`; without
    one (another script, read for its help), such a rule is left out."""
    text = Path(path).read_text()
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:  # not a literal: not a setting
            continue
        if settings_of({target.id: value}):
            found[target.id] = Option(value, comments.get(node.lineno, ""), **declared_rules(annotation, namespace))
    return found


def declared_rules(annotation: ast.expr | None, namespace: dict | None) -> dict:
    """The keyword arguments of an `accepts(...)` annotation: literals as written, names of the
    script's objects from its namespace."""
    if not (isinstance(annotation, ast.Call) and isinstance(annotation.func, ast.Name) and annotation.func.id == "accepts"):
        return {}
    rules = {}
    for keyword in annotation.keywords:
        if isinstance(keyword.value, ast.Name):
            if namespace is not None:
                rules[keyword.arg] = namespace[keyword.value.id]
        else:
            rules[keyword.arg] = ast.literal_eval(keyword.value)
    return rules


def run_config_file(path: str) -> dict:
    """Runs a config file; the values it assigns to public lower-case names (not the modules it
    imports, nor the functions and classes it defines). A value of the wrong type for a setting
    is checked where it is applied, never dropped."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} does not exist (arguments that set keys look like --key=value)")
    try:
        # An ordinary module, run in one namespace: its functions and classes see its imports, so
        # a file can define and register components (docs/adding_a_model.md) as well as set keys.
        # Its own module name: a component registered again by the same file replaces itself.
        namespace = runpy.run_path(str(file), run_name=f"config:{file.resolve()}")
    except UserError:
        raise
    except Exception as error:
        raise ConfigError(f"config file {path} failed: {type(error).__name__}: {error}") from None
    return {k: v for k, v in namespace.items() if not k.startswith("_") and not k.isupper() and not callable(v)
            and not isinstance(v, types.ModuleType)}


def other_scripts(namespace: dict) -> dict[str, Option]:
    """The settings of the repository's other scripts, with their help: a config file may set
    them for those scripts, and check.py takes train.py's."""
    this = Path(namespace["__file__"]).resolve()
    found = {}
    for script in SCRIPTS:
        if (ROOT / script).is_file() and (ROOT / script).resolve() != this:
            found |= {name: option for name, option in script_settings(ROOT / script).items() if name not in found}
    return found


def declarations(namespace: dict, elsewhere: dict[str, Option], models: bool, borrowed: dict | None = None
                 ) -> dict[str, Option]:
    """Everything this script accepts, declared: its own settings, with the help on their line
    (else a model field's from GPTConfig, else another script's for the same name) and a model
    field's valid values; then, for a script that builds models, every option the registered
    components declare."""
    # Imported when asked: bench.py configures only after tuning the CPU runtime, which must come
    # before jax. components: the optional built-ins register their names and options.
    import components  # noqa: F401
    from model import GPTConfig

    fields = GPTConfig.declarations()
    declared = script_settings(namespace["__file__"], namespace)
    if borrowed is not None:  # another script's settings, taken with their declarations
        declared = script_settings(borrowed["__file__"], borrowed) | declared
    accepted = {}
    for name, value in settings_of(namespace).items():
        own = declared.get(name)  # the script's line; a model field's rules are GPTConfig's
        option = fields.get(name) or own or Option(value, "")
        help = (own.help if own else "") or option.help or (elsewhere[name].help if name in elsewhere else "")
        accepted[name] = dataclasses.replace(option, default=value, help=help)
    if models:
        for name, option in OPTIONS.items():
            if name in accepted or name in elsewhere:
                raise ConfigError(f"option {name!r}, declared by {' and '.join(owners(name))}, has the name of a "
                                  "script's setting: declare it under another name")
            accepted[name] = option
    return accepted


def checked(option: Option, key: str, value):
    """`value` checked against its declaration; a mistake is the user's one-line error."""
    try:
        return option.check(key, value)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def help_text(accepted: dict[str, Option], namespace: dict) -> str:
    script = Path(namespace["__file__"]).name
    own = [name for name in accepted if name not in OPTIONS]
    width = max(len(k) for k in accepted)
    line = lambda k: f"  --{k:<{width}} = {accepted[k].default!r:<22} {accepted[k].describe()}"  # noqa: E731
    lines = [f"usage: python {script} [config_file.py ...] [--key=value ...]", "", *map(line, own)]
    options = [name for name in accepted if name in OPTIONS]
    if options:
        lines += ["", "options that the registered components declare (set for all layers, or per layer in --layers):"]
        lines += [f"{line(k)} [{' and '.join(owners(k))}]" for k in options]
    return "\n".join(lines)


def unknown_key_error(key: str, accepted, elsewhere: set[str], script: str) -> ConfigError:
    if key in elsewhere:
        return ConfigError(f"--{key} is not a setting of {script} (another script's, or an option of a model "
                           f"it does not build): --help lists {script}'s keys")
    close = difflib.get_close_matches(key, list(accepted), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (--help lists every key; an option of your own "
                       "needs the file that declares it, first on the command line)")


def configure(namespace: dict, argv: list[str] | None = None, preset: Callable | None = None, models: bool = False,
              listing: Callable | None = None, command_line_only: tuple[str, ...] = (),
              borrowed: dict | None = None) -> Settings:
    """Apply config files and --key=value arguments to a script's globals, in place.

    Returns every setting (for logging and checkpoints), with the options that were set when
    `models`. `--help` prints every setting with its default and meaning, `--list` prints
    `listing()` (what is registered); both then exit. `preset`, if given, is a function of the
    settings (once every file and argument is read) returning more values to apply under them:
    a named preset's values beat the defaults, and anything set explicitly beats both. Keys in
    `command_line_only` are this script's on the command line alone: in a file, a name this
    script shares with another means the other's (sample.py's init_from is not train.py's).
    `borrowed`: the namespace of a script whose settings this one has taken as its own (check.py
    takes train.py's), whose lines declare what they accept.
    """
    argv = sys.argv[1:] if argv is None else argv
    script = Path(namespace["__file__"]).name
    files = [arg for arg in argv if not arg.startswith("-")]
    from_files = [(path, run_config_file(path)) for path in files]
    others = other_scripts(namespace)
    accepted = declarations(namespace, others, models, borrowed)
    if "--help" in argv or "-h" in argv:
        print(help_text(accepted, namespace))
        sys.exit(0)
    if "--list" in argv and listing is not None:
        print(listing())
        sys.exit(0)
    elsewhere = set(others) | set(OPTIONS)
    explicit: dict = {}
    for path, values in from_files:
        for key, value in values.items():
            if key in accepted and key not in command_line_only:
                explicit[key] = checked(accepted[key], key, value)
            elif key in accepted or key in elsewhere or type(value) not in SETTING_TYPES:
                continue  # another script's setting, or one of the file's own objects
            elif close := difflib.get_close_matches(key, [*accepted, *elsewhere], 1, 0.8):
                raise ConfigError(f"{path} sets {key!r}, which no script takes: did you mean {close[0]!r}? "
                                  "(a name of the file's own may start with _)")
    for arg in argv:
        if not arg.startswith("-") or arg in ("--help", "-h", "--list"):
            continue
        key, eq, text = arg.lstrip("-").partition("=")
        if key not in accepted:
            raise unknown_key_error(key, accepted, elsewhere, script)
        if not eq and type(accepted[key].default) is not bool:
            raise ConfigError(f"{arg} has no value: write --{key}=VALUE")
        try:
            # A bare --flag switches a bool setting on.
            explicit[key] = accepted[key].parse(key, text) if eq else True
        except ValueError as error:
            raise ConfigError(str(error)) from None
    settings = {k: option.default for k, option in accepted.items() if k not in OPTIONS} | explicit
    if preset is not None:
        settings.update({k: checked(accepted[k], k, v) for k, v in preset(settings).items() if k in accepted})
        settings.update(explicit)
    namespace.update({k: v for k, v in settings.items() if k not in OPTIONS})
    return Settings(settings, set(explicit))
