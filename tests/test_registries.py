"""helpers/registries.py: --list names every registered entry with its first sentence and options."""

from helpers.registries import describe, summary


def test_every_registry_is_listed_with_its_entries_and_their_options():
    listing = describe()
    for section in ("models (--model)", "mixers", "MLPs", "norms", "blocks", "positions", "presets", "optimizers"):
        assert section in listing
    assert "  conv " in listing and "--kernel_size=4:" in listing  # components.py's, with its option
    assert "  muon " in listing and "  swiglu " in listing


def test_a_summary_is_the_first_sentence():
    assert summary("One thing. Then another.\n\nMore.") == "One thing."
    assert summary(type("Bare", (), {"__doc__": None})) == "(no description)"
