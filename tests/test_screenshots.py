"""screenshots/make.py: the SVGs carry their fonts, so they render the same offline."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_make():
    spec = importlib.util.spec_from_file_location("make_screens", REPO / "screenshots" / "make.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_screens"] = module
    spec.loader.exec_module(module)
    return module


async def test_embedded_fonts_cover_every_character_drawn(tmp_path, monkeypatch):
    pytest.importorskip("fontTools")
    from fontTools.ttLib import TTFont

    make = load_make()
    try:
        for _, _, name in make.FONTS:
            make.find_font(name)
    except make.FontMissing as exc:
        pytest.skip(str(exc))
    from bgmon.views.tui.sample import screenshots

    monkeypatch.setenv("HOME", str(tmp_path))
    svg = make.embed_fonts((await screenshots(tmp_path))["main"])
    assert "cdnjs" not in svg and "Fira Code" not in svg  # no web font, nothing fetched
    assert 'xml:space="preserve"' in svg
    fonts = re.findall(r'font-family: "([\w-]+)";\s*src: url\("data:font/woff;base64,([^"]+)"', svg)
    assert {f for f, _ in fonts} == {"bgmon-mono", "bgmon-symbols"}
    import base64
    import io

    covered: set[int] = set()
    for _, data in fonts:
        covered |= set(TTFont(io.BytesIO(base64.b64decode(data))).getBestCmap())
    drawn = {c for c in make.shown_text(svg) if c.isprintable() or c == "\xa0"}
    missing = sorted(c for c in drawn if ord(c) not in covered)
    assert not missing, missing  # ⏸ and ⭘ too, from the symbol font
