import pytest

from configurator import ConfigError, configure, script_settings
from helpers.registry import Option, Registry

SCRIPT_DEFAULTS = {"learning_rate": 6e-4, "batch_size": 12, "dataset": "x", "decay_lr": True}
# A file that registers a component with an option of its own, as docs/adding_a_model.md does.
DECLARING_FILE = '''
from helpers.registry import Option
from model import MLPS, GeluMLP


@MLPS.register("test-scaled", test_scale=Option(1.0, "what the test MLP multiplies by", above=0))
class ScaledMLP(GeluMLP):
    pass
'''


@pytest.fixture(scope="module")
def component(tmp_path_factory):
    """The file, one for every test: a second file registering the same name would be refused."""
    path = tmp_path_factory.mktemp("component") / "component.py"
    path.write_text(DECLARING_FILE)
    return path


def namespace():
    return dict(SCRIPT_DEFAULTS, __file__=__file__, CONSTANT=3, _private=1)


def test_overrides_are_parsed_and_typed():
    ns = namespace()
    settings = configure(ns, ["--learning_rate=1", "--batch_size=4", "--dataset=shakespeare_char", "--decay_lr=False"])
    assert settings == {"learning_rate": 1.0, "batch_size": 4, "dataset": "shakespeare_char", "decay_lr": False}
    assert type(ns["learning_rate"]) is float and ns["batch_size"] == 4
    assert settings.explicit == {"learning_rate", "batch_size", "dataset", "decay_lr"}


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
    # Files run first, whatever their place: the command line still wins.
    assert configure(namespace(), ["--batch_size=8", str(config)])["batch_size"] == 8


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("bach_size = 32\n")
    with pytest.raises(ConfigError, match="sets 'bach_size', which no script takes: did you mean 'batch_size'"):
        configure(namespace(), [str(bad)])
    with pytest.raises(ConfigError, match="does not exist"):
        configure(namespace(), [str(tmp_path / "missing.py")])


def test_a_files_own_names_and_other_scripts_settings_are_left_alone(tmp_path):
    # `cache` is no near miss of a setting, `_x` is private, and `start` and `num_samples` are
    # sample.py's: this script takes none of them, and none is an error.
    config = tmp_path / "mine.py"
    config.write_text("cache = 4\n_bach_size = 3\nstart = 'Once'\nnum_samples = 2\nbatch_size = 5\n")
    settings = configure(namespace(), [str(config)])
    assert settings == SCRIPT_DEFAULTS | {"batch_size": 5} and settings.explicit == {"batch_size"}
    # Typed on the command line, another script's setting is this script's error.
    with pytest.raises(ConfigError, match="--start is not a setting of test_configurator.py"):
        configure(namespace(), ["--start=Once"])


def test_help_lists_every_key_with_its_meaning(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text("alpha = 1  # how much alpha\nbeta = 'b'  # the beta name\n")
    with pytest.raises(SystemExit) as exit_info:
        configure({"alpha": 1, "beta": "b", "__file__": str(script)}, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--alpha" in out and "how much alpha" in out and "the beta name" in out
    assert {k: (o.default, o.help) for k, o in script_settings(script).items()} == {
        "alpha": (1, "how much alpha"), "beta": ("b", "the beta name")}


def test_a_model_field_is_checked_and_described_by_its_declaration(capsys):
    ns = dict(namespace(), mlp="swiglu", window=0)
    with pytest.raises(ConfigError, match="window must be >= 0, got -4"):
        configure(ns, ["--window=-4"])
    with pytest.raises(ConfigError, match="unknown mlp 'relu'; valid names: gelu, swiglu, relu2"):
        configure(ns, ["--mlp=relu"])
    with pytest.raises(SystemExit):
        configure(ns, ["--help"])
    assert "what each position computes on its own (one of gelu, swiglu, relu2" in capsys.readouterr().out


def test_an_option_is_declared_by_a_file_and_set_like_any_setting(tmp_path, component):
    # The option comes before the file that declares it: files run first.
    settings = configure(namespace(), ["--test_scale=2", str(component)], models=True)
    assert settings["test_scale"] == 2.0 and "test_scale" in settings.explicit
    # In a file too, checked against its declaration.
    config = tmp_path / "config.py"
    config.write_text("test_scale = 0.5\n")
    assert configure(namespace(), [str(component), str(config)], models=True)["test_scale"] == 0.5
    config.write_text("test_scale = -1.0\n")
    with pytest.raises(ConfigError, match="test_scale must be > 0"):
        configure(namespace(), [str(component), str(config)], models=True)
    # A script that builds no model does not take it.
    with pytest.raises(ConfigError, match="--test_scale is not a setting"):
        configure(namespace(), [str(component), "--test_scale=2"])


def test_help_shows_a_files_options(component, capsys):
    with pytest.raises(SystemExit):
        configure(namespace(), [str(component), "--help"], models=True)
    line = next(line for line in capsys.readouterr().out.splitlines() if "--test_scale" in line)
    assert "what the test MLP multiplies by (> 0)" in line and "[mlp 'test-scaled']" in line


def test_a_name_means_one_thing(monkeypatch):
    from helpers import registry

    monkeypatch.setattr(registry, "OPTIONS", dict(registry.OPTIONS))  # this test's declarations stay its own
    monkeypatch.setattr(registry, "REGISTRIES", list(registry.REGISTRIES))
    first = Registry("test-kind")
    first.register("a", test_meaning=Option(1, "one meaning"))(type("A", (), {}))
    first.register("b", test_meaning=Option(1, "one meaning"))(type("B", (), {}))  # the same Option: fine
    with pytest.raises(ValueError, match="declares option 'test_meaning', which is declared already with another"):
        first.register("c", test_meaning=Option(2, "another meaning"))(type("C", (), {}))
    with pytest.raises(ValueError, match="'a' is already registered to A"):
        first.register("a")(type("D", (), {}))


def test_an_option_named_like_a_scripts_setting_is_refused(tmp_path):
    clash = tmp_path / "clash.py"
    clash.write_text("from helpers.registry import Option\nfrom model import MLPS, GeluMLP\n\n"
                     "MLPS.register('test-clash', temperature=Option(1.0, 'a clash with sample.py'))(GeluMLP)\n")
    with pytest.raises(ConfigError, match="option 'temperature', declared by mlp 'test-clash', has the name of a script"):
        configure(namespace(), [str(clash)], models=True)


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


def test_a_files_values_are_checked_whatever_their_type(tmp_path):
    import numpy as np  # noqa: F401 (the file imports it)

    config = tmp_path / "c.py"
    config.write_text("dataset = 'big'\nstop = ['a', 'b']\n")  # a list where a tuple is declared: taken as one
    assert configure(dict(namespace(), stop=()), [str(config)])["stop"] == ("a", "b")
    config.write_text("import numpy as np\n\nlearning_rate = np.float32(3e-4)\n")  # not a float: an error, not dropped
    with pytest.raises(ConfigError, match="learning_rate must be float"):
        configure(namespace(), [str(config)])


def test_a_command_line_only_key_is_left_to_the_script_a_file_means(tmp_path):
    # sample.py's init_from names what to sample; in a training file it is where training starts.
    config = tmp_path / "finetune.py"
    config.write_text("init_from = 'gpt2-xl'\nout_dir = 'out-finetune'\n")
    ns = dict(namespace(), init_from="resume", out_dir="out")
    settings = configure(ns, [str(config)], command_line_only=("init_from",))
    assert settings["init_from"] == "resume" and settings["out_dir"] == "out-finetune"
    assert configure(ns, [str(config), "--init_from=gpt2"], command_line_only=("init_from",))["init_from"] == "gpt2"


def test_a_script_declares_what_each_setting_accepts_on_its_line(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text('from helpers.registry import accepts\n'
                      'MODES = ("fast", "slow")\n'
                      'beta1: accepts(low=0, below=1) = 0.9  # momentum\n'
                      'mode: accepts(choices=MODES) = "fast"  # how to go\n'
                      'steps = 10  # how many\n')
    ns = {"__file__": str(script), "MODES": ("fast", "slow"), "beta1": 0.9, "mode": "fast", "steps": 10}
    assert configure(ns, ["--beta1=0.5", "--mode=slow", "--steps=-3"]) == {"beta1": 0.5, "mode": "slow", "steps": -3}
    with pytest.raises(ConfigError, match="beta1 must be < 1, got 1.5"):
        configure(ns, ["--beta1=1.5"])
    with pytest.raises(ConfigError, match="unknown mode 'medium'; valid names: fast, slow"):
        configure(ns, ["--mode=medium"])
    with pytest.raises(SystemExit):
        configure(ns, ["--help"])
    assert "momentum (>= 0; < 1)" in capsys.readouterr().out
    # Read for its help alone (another script's), a rule naming the script's objects is left out.
    assert script_settings(script)["mode"].choices is None and script_settings(script)["beta1"].below == 1
