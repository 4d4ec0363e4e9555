"""Tests of the built-in CI simulator (a package, so its conftest and helpers do not
shadow the top-level `conftest` module)."""
