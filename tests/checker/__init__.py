"""Tests of the report command and its checker (a package, so that its test modules may share
basenames with those of other folders)."""
