"""Fixtures: the chart rendered once per variant for the whole session."""

from __future__ import annotations

import pytest

import chartlib


@pytest.fixture(scope="session")
def variants() -> dict[str, chartlib.Rendered]:
    """Every variant the chart ships (default and ci/*.yaml), rendered."""
    return {name: chartlib.render(values) for name, values in chartlib.variants()}


@pytest.fixture(scope="session")
def default(variants: dict[str, chartlib.Rendered]) -> chartlib.Rendered:
    return variants["default"]


@pytest.fixture(scope="session")
def full(variants: dict[str, chartlib.Rendered]) -> chartlib.Rendered:
    return variants["full-values"]


@pytest.fixture(scope="session")
def minimal(variants: dict[str, chartlib.Rendered]) -> chartlib.Rendered:
    return variants["minimal-values"]


@pytest.fixture(scope="session")
def existing(variants: dict[str, chartlib.Rendered]) -> chartlib.Rendered:
    return variants["existing-secrets-values"]
