"""Regenerate screenshots/*.svg from bgmon's deterministic sample workspace (120×40).

    python screenshots/make.py   # writes main.svg, detail.svg, faults.svg, recovery.svg here

The sample (bgmon/views/tui/sample.py) freezes the clock and the process facts, so the same
code gives the same pictures on every machine. It is built in a fixed directory,
/tmp/bgmon-sample: the recovery panel shows exact paths (the directory a restart runs in),
and a random temporary directory would make them differ from run to run.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from bgmon.views.tui.sample import screenshots

OUT = Path(__file__).resolve().parent
BASE = Path("/tmp/bgmon-sample")


def main() -> int:
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    try:
        shots = asyncio.run(screenshots(BASE))
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    for name, svg in shots.items():
        path = OUT / f"{name}.svg"
        path.write_text(svg, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
