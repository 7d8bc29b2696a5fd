"""Helpers the test files share: plain functions and classes, no fixtures (those live in the
conftest.py files). Test files import from here, never from each other or from a conftest."""
