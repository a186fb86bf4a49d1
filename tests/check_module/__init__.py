"""Tests of check-module (a package, so that its test modules may share basenames with those of
other folders)."""
