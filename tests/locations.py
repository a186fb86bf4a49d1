"""Where the tests find the project: the tests folder (its helper modules, e.g. broken_impls and
user_modules, are imported by name, also in the checker's worker processes), the repository's
root, its src folder and the test data."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SRC = ROOT / "src"
DATA = TESTS / "data"
