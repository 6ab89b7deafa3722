"""helpers/run_start.py: a run that continues a saved model takes what the run asks for, or
refuses it in one line, never silently."""

import pytest

import components  # noqa: F401
from configurator import Settings
from helpers import archs
from helpers.errors import UserError
from helpers.run_start import asked, continued_config
from model import GPTConfig

DEFAULTS = {"arch": "", "n_layer": 4, "n_head": 4, "n_embd": 32, "layers": (), "mixer": "attention", "dropout": 0.0,
            "scan_layers": False, "scan_unroll": 1}


def settings(explicit: dict) -> Settings:
    return Settings(DEFAULTS | explicit, set(explicit))


def test_a_preset_and_a_list_of_layers_ask_for_the_layers_count():
    # tiny's n_layer is 2; three layers make three, as for a new model.
    layers = ("attention", "conv", "attention")
    preset = archs.preset_settings(DEFAULTS | {"arch": "tiny"})  # what configure applies under the flags
    run = Settings(DEFAULTS | preset | {"arch": "tiny", "layers": layers}, {"arch", "layers"})
    assert asked(run)["n_layer"] == 3
    saved = archs.config_from_settings(run, vocab_size=65)
    assert saved.n_layer == 3 and continued_config(saved, run, "ckpt", print) == saved


def test_what_the_saved_model_contradicts_or_does_not_use_is_refused():
    saved = GPTConfig(n_layer=4, n_head=4, n_embd=32, block_size=16, vocab_size=65, scan_layers=False)
    said = []
    with pytest.raises(UserError, match=r"ckpt holds another architecture: n_layer=4 \(asked: 3\)"):
        continued_config(saved, settings({"n_layer": 3}), "ckpt", said.append)
    with pytest.raises(UserError, match="ckpt: kernel_size is an option of mixer 'conv', which its model does not use"):
        continued_config(saved, Settings(DEFAULTS | {"kernel_size": 8}, {"kernel_size"}), "ckpt", said.append)
    # What is only a default is not asked for; run fields are the run's own, and said.
    config = continued_config(saved, settings({"dropout": 0.1}), "ckpt", said.append)
    assert config.dropout == 0.1 and config.n_layer == 4
    assert said == ["continuing with this run's dropout=0.1 (the saved model's: 0.0)"]
