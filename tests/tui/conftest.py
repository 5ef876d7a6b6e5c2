"""Fixtures for the TUI tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """HOME inside tmp_path, so paths show as ~/… and never leak the real home."""
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path
