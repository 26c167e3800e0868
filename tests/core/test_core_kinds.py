"""kind_mismatch (user-given values against their defaults) and first_line (one-line exception messages)."""

import pytest

from ctbench.core.errors import first_line
from ctbench.core.kinds import kind_mismatch


@pytest.mark.parametrize(("default", "value", "expected"), [
    (True, False, None), (True, 1, "true or false"), (True, "yes", "true or false"),
    (3, 4, None), (3, 4.0, "a whole number"), (3, True, "a whole number"), (3, "4", "a whole number"),
    (0.5, 2, None), (0.5, 2.5, None), (0.5, False, "a number"), (0.5, "1e-3", "a number"),
    ("ddim", "x", None), ("ddim", 3, "a string"),
    ([1, 2], [3], None), ([1, 2], "1,2", "a list"),
    (None, "anything", None), ({}, 3, None),
])
def test_kind_mismatch(default, value, expected):
    assert kind_mismatch(default, value) == expected


def test_first_line_keeps_the_first_sentence_of_the_first_line():
    assert first_line(RuntimeError("PytorchStreamReader failed. Try this.\nAnd that.")) == "PytorchStreamReader failed"
    assert first_line(ValueError("one line\nadvice")) == "one line"
    assert first_line(EOFError()) == "EOFError"
