"""The README's examples run, and print what the README says they print."""

import doctest

from locations import ROOT

README = ROOT / "README.md"


def test_readme_examples_print_what_they_show():
    result = doctest.testfile(
        str(README), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted >= 15, f"only {result.attempted} README examples were found"
    assert result.failed == 0, f"{result.failed} README examples printed something else"
