"""Regenerate screenshots/*.svg from bgmon's deterministic sample workspace (120×40).

    python screenshots/make.py          # writes main.svg, detail.svg, faults.svg here

The sample (bgmon/views/tui/sample.py) freezes the clock and the process facts, so the same
code gives the same pictures on every machine.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from bgmon.views.tui.sample import screenshots

OUT = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bgmon-shots-") as tmp:
        shots = asyncio.run(screenshots(Path(tmp)))
    for name, svg in shots.items():
        path = OUT / f"{name}.svg"
        path.write_text(svg, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
