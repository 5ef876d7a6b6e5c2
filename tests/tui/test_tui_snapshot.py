"""The main screen as an SVG, compared with the committed tests/tui/snapshots/main.svg.

Regenerate after an intended change with:  BGMON_UPDATE_SNAPSHOTS=1 pytest tests/tui
(then look at the SVG: `rsvg-convert tests/tui/snapshots/main.svg -o /tmp/main.png`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bgmon.views.tui.sample import screenshots

SNAPSHOTS = Path(__file__).parent / "snapshots"


def normalise(svg: str) -> str:
    # Rich names the SVG's CSS classes after a hash of the content; keep diffs about content.
    return re.sub(r"terminal-\d+", "terminal", svg)


async def test_main_screen_matches_the_snapshot(tmp_path):
    shots = await screenshots(tmp_path)
    got = normalise(shots["main"])
    path = SNAPSHOTS / "main.svg"
    if os.environ.get("BGMON_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with BGMON_UPDATE_SNAPSHOTS=1 to create it"
    want = path.read_text(encoding="utf-8")
    if got != want:
        out = tmp_path / "main.actual.svg"
        out.write_text(got, encoding="utf-8")
        raise AssertionError(
            f"main screen differs from {path}; see {out}. "
            "If the change is intended, rerun with BGMON_UPDATE_SNAPSHOTS=1."
        )
    # Paths are shown from ~ and no wall-clock time appears: the SVG is the same anywhere.
    assert str(tmp_path) not in got and "~/work/shop" in got.replace("&#160;", " ")
