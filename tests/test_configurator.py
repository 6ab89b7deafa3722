import pytest

from configurator import ConfigError, configure, descriptions

SCRIPT_DEFAULTS = {"learning_rate": 6e-4, "batch_size": 12, "dataset": "x", "decay_lr": True}


def namespace():
    return dict(SCRIPT_DEFAULTS, __file__=__file__, CONSTANT=3, _private=1)


def test_overrides_are_parsed_and_typed():
    ns = namespace()
    settings = configure(ns, ["--learning_rate=1", "--batch_size=4", "--dataset=shakespeare_char", "--decay_lr=False"])
    assert settings == {"learning_rate": 1.0, "batch_size": 4, "dataset": "shakespeare_char", "decay_lr": False}
    assert type(ns["learning_rate"]) is float and ns["batch_size"] == 4


def test_tuple_settings_take_one_string_or_a_literal():
    ns = dict(namespace(), stop=())
    assert configure(ns, ["--stop=END"])["stop"] == ("END",)
    assert configure(ns, ['--stop=("a", "\\n")'])["stop"] == ("a", "\n")
    with pytest.raises(ConfigError, match="tuple of strings"):
        configure(ns, ["--stop=(1, 2)"])


def test_bare_flag_switches_a_bool_on():
    ns = dict(namespace(), decay_lr=False)
    assert configure(ns, ["--decay_lr"])["decay_lr"] is True


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        configure(namespace(), ["--lerning_rate=1e-3"])


def test_constants_are_not_settings():
    with pytest.raises(ConfigError, match="unknown config key 'CONSTANT'"):
        configure(namespace(), ["--CONSTANT=4"])


@pytest.mark.parametrize("arg, message", [
    ("--batch_size=1.5", "batch_size must be int"),
    ("--decay_lr=yes", "not a valid bool"),
    ("--batch_size", "has no value"),
])
def test_bad_values_say_what_was_expected(arg, message):
    with pytest.raises(ConfigError, match=message):
        configure(namespace(), [arg])


def test_config_file_then_overrides(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("batch_size = 32\nlearning_rate = 1e-3\n")
    settings = configure(namespace(), [str(config), "--batch_size=8"])
    assert settings["batch_size"] == 8 and settings["learning_rate"] == 1e-3


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("bach_size = 32\n")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        configure(namespace(), [str(bad)])
    with pytest.raises(ConfigError, match="does not exist"):
        configure(namespace(), [str(tmp_path / "missing.py")])


def test_help_lists_every_key_with_its_meaning(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text("alpha = 1  # how much alpha\nbeta = 'b'  # the beta name\n")
    with pytest.raises(SystemExit) as exit_info:
        configure({"alpha": 1, "beta": "b", "__file__": str(script)}, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--alpha" in out and "how much alpha" in out and "the beta name" in out
    assert descriptions(str(script)) == {"alpha": "how much alpha", "beta": "the beta name"}


def test_a_preset_sits_between_defaults_and_explicit_settings(tmp_path):
    config = tmp_path / "c.py"
    config.write_text("learning_rate = 1e-2\n")
    preset = lambda settings: {"batch_size": 64, "learning_rate": 5e-3} if settings["dataset"] == "big" else {}  # noqa: E731
    settings = configure(namespace(), [str(config), "--dataset=big"], preset=preset)
    assert settings["batch_size"] == 64  # the preset beat the default
    assert settings["learning_rate"] == 1e-2  # the config file beat the preset


def test_a_config_file_runs_as_one_module(tmp_path):
    # A class body and a function see the file's own imports and names, as in any module.
    config = tmp_path / "mine.py"
    config.write_text("import math\n\nSCALE = 2\n\n\nclass Doubler:\n    def twice(self, x):\n"
                      "        return SCALE * math.floor(x)\n\n\nbatch_size = Doubler().twice(3.7)\n")
    assert configure(namespace(), [str(config)])["batch_size"] == 6
