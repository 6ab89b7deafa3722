"""helpers/registry.py: declared settings and the registries that hold them."""

import pytest

from helpers.registry import Option, Registry, owners

SCALE = Option(1.0, "a scale", above=0, below=10)


@pytest.mark.parametrize("option, value, expected", [
    (SCALE, 2, 2.0),  # an int where a float is expected
    (Option((), "names"), ["a", "b"], ("a", "b")),  # a list read back from JSON
    (Option("x", "a name", choices=("x", "y")), "y", "y"),
    (Option(0, "a count", low=0), 0, 0),
])
def test_a_valid_value_comes_back_as_the_options_type(option, value, expected):
    assert option.check("name", value) == expected and type(option.check("name", value)) is type(expected)


@pytest.mark.parametrize("option, value, message", [
    (SCALE, 0.0, "name must be > 0, got 0.0"),
    (SCALE, 10.0, "name must be < 10, got 10.0"),
    (Option(1, "a count", low=1), 0, "name must be >= 1, got 0"),
    (Option(0.5, "a share", above=0, high=1), 1.5, "name must be <= 1, got 1.5"),
    (Option(1, "a count"), True, "name must be int (like the default 1), got bool True"),
    (Option(1, "a count"), 1.5, "name must be int"),
    (Option((), "names"), ("a", 1), "tuple of strings"),
    (Option("x", "a name", choices=("x", "y")), "z", "unknown name 'z'; valid names: x, y"),
])
def test_an_invalid_value_says_what_is_accepted(option, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        option.check("name", value)


def test_text_is_parsed_by_the_options_type():
    assert Option("a", "text").parse("name", "shakespeare_char") == "shakespeare_char"
    assert Option((), "names").parse("name", "END") == ("END",)
    assert Option((), "names").parse("name", '("a", "b")') == ("a", "b")
    assert SCALE.parse("name", "2") == 2.0 and Option(False, "a switch").parse("name", "True") is True
    with pytest.raises(ValueError, match="name=abc is not a valid float"):
        SCALE.parse("name", "abc")
    assert SCALE.describe() == "a scale (> 0; < 10)"


def test_a_definition_run_again_replaces_itself_and_another_is_refused(monkeypatch):
    from helpers import registry as registry_module

    monkeypatch.setattr(registry_module, "OPTIONS", dict(registry_module.OPTIONS))  # kept to this test
    monkeypatch.setattr(registry_module, "REGISTRIES", list(registry_module.REGISTRIES))
    registry = Registry("test-thing")

    def define():
        class Thing:
            pass

        return Thing

    first = registry.register("thing", test_registry_size=Option(3, "a size"))(define())
    again = registry.register("thing", test_registry_size=Option(3, "a size"))(define())  # the same lines once more
    assert registry["thing"] is again is not first and owners("test_registry_size") == ["test-thing 'thing'"]

    class Other:
        pass

    with pytest.raises(ValueError, match="test-thing 'thing' is already registered to"):
        registry.register("thing")(Other)
    with pytest.raises(ValueError, match="unknown test-thing 'nothing'; valid names: thing"):
        registry.check("nothing")
