"""Names and declared settings: how components are found by name, and how each says what it can
be set to.

A registry maps names to components of one kind (model.py's MIXERS, MLPS, NORMS, BLOCKS,
MODELS; helpers/archs.py's ARCHS). A component registers with one decorator, from any file,
and declares its own settings there as Options: a default, a line of help, the values accepted.

    @MIXERS.register("conv", kernel_size=Option(4, "positions each output mixes", low=1))
    class CausalConv(eqx.Module): ...

GPTConfig's fields are Options too, and so are the scripts' settings (configurator.py): one
kind of declaration checks every value, whether it comes from a config file, the command line,
a layer spec or a checkpoint's header. Plain Python, no JAX: the configurator reads it before a
script starts JAX.
"""

import ast
import dataclasses
import operator
from collections.abc import Callable, Collection
from typing import ClassVar


@dataclasses.dataclass(frozen=True)
class Option:
    """A declared setting: its default (whose type it takes), one line of help, and the values
    it accepts."""

    default: bool | int | float | str | tuple
    help: str
    low: float | None = None  # the smallest valid value
    above: float | None = None  # values must be greater than this
    high: float | None = None  # the largest valid value
    below: float | None = None  # values must be smaller than this
    choices: Collection[str] | None = None  # the valid values (a registry: its names, as registered when checked)

    def check(self, name: str, value):
        """`value` if valid (an int is taken where a float is expected, a list as a tuple)."""
        kind = type(self.default)
        if kind is float and type(value) is int:
            value = float(value)
        if kind is tuple and isinstance(value, list):
            value = tuple(value)
        if type(value) is not kind or (kind is tuple and not all(isinstance(v, str) for v in value)):
            expected = "a tuple of strings, like ('a', 'b')" if kind is tuple else kind.__name__
            raise ValueError(f"{name} must be {expected} (like the default {self.default!r}), "
                             f"got {type(value).__name__} {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"unknown {name} {value!r}; valid names: {', '.join(self.choices)}")
        for rule, bound, holds in self.rules():
            if bound is not None and not holds(value, bound):
                raise ValueError(f"{name} must be {rule} {bound}, got {value!r}")
        return value

    def parse(self, name: str, text: str):
        """A value written as text (`--name=text`, or `name=text` in a layer spec): a Python
        literal, except that a string takes the text as it is (--dataset=shakespeare_char needs
        no quotes), and so does a tuple of one string (--stop=END means ("END",))."""
        if isinstance(self.default, str):
            return self.check(name, text)
        if isinstance(self.default, tuple) and not text.startswith(("(", "[")):
            return (text,) if text else ()
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"{name}={text} is not a valid {type(self.default).__name__} "
                             f"(default: {self.default!r})") from None
        return self.check(name, value)

    def rules(self) -> list[tuple[str, float, Callable]]:
        """The bounds set: (written as, bound, the test a valid value passes)."""
        return [(rule, bound, holds) for rule, bound, holds in (
            (">=", self.low, operator.ge), (">", self.above, operator.gt), ("<=", self.high, operator.le),
            ("<", self.below, operator.lt)) if bound is not None]

    def describe(self) -> str:
        """The help line with what is accepted, for --help and --list."""
        rules = [f"{rule} {bound}" for rule, bound, _ in self.rules()]
        if self.choices is not None:
            rules.append("one of " + ", ".join(self.choices))
        return self.help + (f" ({'; '.join(rules)})" if rules else "")


# Every option any component declares, by name. Names are flat, as on the command line: one
# name means one thing, so a second declaration of a name must be the same Option.
OPTIONS: dict[str, Option] = {}
REGISTRIES: list["Registry"] = []  # every registry made, in order (what --list shows)


class Registry(dict):
    """Components of one kind by name. `@REGISTRY.register("name", **options)` adds one from any
    file, with the options it declares; a wrong name fails listing the valid ones."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.options: dict[str, dict[str, Option]] = {}  # each name's declared options
        REGISTRIES.append(self)

    def register(self, name: str, **options: Option):
        def add(component):
            taken = self.get(name)
            # The same definition run again (a config file read twice) replaces itself.
            if taken is not None and _origin(taken) != _origin(component):
                raise ValueError(f"{self.kind} {name!r} is already registered to {taken.__qualname__}")
            for key, option in options.items():
                if OPTIONS.setdefault(key, option) != option:
                    raise ValueError(f"{self.kind} {name!r} declares option {key!r}, which is declared already "
                                     f"with another meaning ({OPTIONS[key].help!r}): pick another name")
            self[name], self.options[name] = component, options
            return component

        return add

    def check(self, name: str) -> None:
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self)}")


def _origin(component) -> tuple[str, str]:
    """Where a component was defined: its module (a config file's own name) and its name there."""
    return component.__module__, component.__qualname__


def owners(name: str) -> list[str]:
    """Who declares option `name`, as "mixer 'conv'"."""
    return [f"{registry.kind} {owner!r}" for registry in REGISTRIES
            for owner, options in registry.options.items() if name in options]


def unused_option(name: str, user: str) -> str:
    """Why option `name` cannot be set for `user`: nothing declares it, or only components that
    `user` does not use."""
    declared_by = owners(name)
    if not declared_by:
        return f"unknown option {name!r}"
    return f"{name} is an option of {' and '.join(declared_by)}, which {user} does not use"


def accepts(*, low: float | None = None, above: float | None = None, high: float | None = None,
            below: float | None = None, choices: Collection[str] | None = None) -> dict:
    """What a script's setting accepts beyond its type, written as the setting's annotation:

        beta1: accepts(low=0, below=1) = 0.9  # AdamW beta1

    An annotation, though not a type: configurator.py reads it from the script's source (with
    the comment as help, and rules written as literals or as names of the script's objects)
    and checks every value given against it, as an Option. Here it only names the rules, so
    that a misspelt one fails when the script starts."""
    return {"low": low, "above": above, "high": high, "below": below, "choices": choices}


def setting(default, help: str, **accepts) -> dataclasses.Field:
    """A DeclaredConfig field, declared as an Option (`accepts`: its low, above, below or choices)."""
    return dataclasses.field(default=default, metadata={"option": Option(default, help, **accepts)})


class DeclaredConfig:
    """The mechanics of a frozen dataclass whose fields are declared with `setting` and which
    names registered components, each of which may declare options of its own (model.py's
    GPTConfig is one): every value checked against its declaration, each layer's spec worked
    out, and the whole written and read as flat settings.

    A subclass says which of its fields name a component of the whole model (MODEL_PARTS) and
    of each layer (LAYER_PARTS), and which other fields a layer's spec may change (LAYER_FIELDS).
    Its `layers` field holds one spec per layer (or none: every layer as the fields say),
    `n_layer` counts the layers, and `options`, the one field not declared with `setting`, holds
    the values of the options its components declare, set away from their defaults.
    """

    MODEL_PARTS: ClassVar[dict[str, Registry]] = {}
    LAYER_PARTS: ClassVar[dict[str, Registry]] = {}
    LAYER_FIELDS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def declarations(cls) -> dict[str, Option]:
        """Each declared field's Option, by name (every field but `options`)."""
        return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}

    def __post_init__(self):
        # A config read back from JSON has lists for tuples, and its options may come as a dict.
        for name, option in self.declarations().items():
            object.__setattr__(self, name, option.check(name, getattr(self, name)))
        if self.layers and len(self.layers) != self.n_layer:
            raise ValueError(f"layers lists {len(self.layers)} layer specs but n_layer={self.n_layer}")
        in_use, given = self.declared(), dict(self.options)
        for name, value in given.items():
            if name not in in_use:
                raise ValueError(unused_option(name, "this model"))
            given[name] = in_use[name].check(name, value)
        # Options at their default are dropped, so that equal models have equal configs.
        object.__setattr__(self, "options", tuple(sorted((k, v) for k, v in given.items() if v != in_use[k].default)))
        self.layer_specs()  # checks every layer's choices and options

    def declared(self) -> dict[str, Option]:
        """The options of every component this config uses, by name."""
        used = [registry.options[getattr(self, field)] for field, registry in self.MODEL_PARTS.items()]
        for text in self.layers or [""]:
            spec = self.spec(text, options=False)
            used += [registry.options[spec[field]] for field, registry in self.LAYER_PARTS.items()]
        return {name: option for options in used for name, option in options.items()}

    def option(self, name: str):
        """A declared option's value: as this config sets it, else its default."""
        return dict(self.options).get(name, OPTIONS[name].default)

    def spec(self, text: str = "", options: bool = True) -> dict:
        """One layer's spec: its parts and LAYER_FIELDS, then (`options`) its parts' options,
        each from the config unless `text` changes it: "NAME" (the first part) or "key=value,..."."""
        declarations = self.declarations()
        spec = {name: getattr(self, name) for name in (*self.LAYER_PARTS, *self.LAYER_FIELDS)}
        given = {}
        try:
            for part in filter(None, (part.strip() for part in text.split(","))):
                key, eq, value = part.partition("=")
                key, value = (key.strip(), value.strip()) if eq else (next(iter(self.LAYER_PARTS)), key)
                if key in given:  # "attention,conv" is one layer named twice, not two layers
                    raise ValueError(f"{key} is given twice; a spec is one layer's: two layers are "
                                     "'(\"attention\", \"conv\")'")
                given[key] = value
            for name in spec:  # the parts first: they say which options the layer has
                spec[name] = declarations[name].parse(name, given.pop(name)) if name in given else spec[name]
            if not options:
                return spec
            accepted = {k: o for field, registry in self.LAYER_PARTS.items() for k, o in registry.options[spec[field]].items()}
            for name, value in given.items():
                if name not in accepted:
                    raise ValueError(f"{unused_option(name, 'this layer')}; accepted: {', '.join([*spec, *accepted])}")
                spec[name] = accepted[name].parse(name, value)
        except ValueError as error:
            raise ValueError(f"layer spec {text!r}: {error}") from None
        return {name: self.option(name) for name in accepted} | spec

    def layer_specs(self) -> list[dict]:
        """Every layer's spec, in order."""
        return [self.spec(text) for text in self.layers or [""] * self.n_layer]

    def as_dict(self) -> dict:
        """Flat, as settings are written (a checkpoint's header): every field, then every option
        in use with its value, so that a later change of a default cannot change a saved model."""
        fields = {name: getattr(self, name) for name in self.declarations()}
        return fields | {name: self.option(name) for name in self.declared()}

    @classmethod
    def from_dict(cls, values: dict):
        """The config of flat settings (as_dict's, a preset's): fields by name, the rest options."""
        names = cls.declarations()
        return cls(**{k: v for k, v in values.items() if k in names},
                   options={k: v for k, v in values.items() if k not in names})
