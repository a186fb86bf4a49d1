"""docs/layers.md's examples run and print what the page shows."""

import doctest

from locations import ROOT

PAGE = ROOT / "docs" / "layers.md"


def test_the_layers_page_examples_print_what_they_show():
    result = doctest.testfile(
        str(PAGE), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted >= 10, f"only {result.attempted} examples were found in {PAGE.name}"
    assert result.failed == 0, f"{result.failed} examples of {PAGE.name} printed something else"
