"""Regenerate screenshots/*.svg from bgmon's deterministic sample workspace (120×40).

    python screenshots/make.py   # writes main.svg, detail.svg, faults.svg, recovery.svg and
                                 # main-80x24.svg (the smallest screen) here

The sample (bgmon/views/tui/sample.py) freezes the clock and the process facts, so the same
code gives the same pictures on every machine. It is built in a fixed directory,
/tmp/bgmon-sample: the recovery panel shows exact paths (the directory a restart runs in),
and a random temporary directory would make them differ from run to run.

Fonts are embedded: Rich's SVGs name the Fira Code web font, and where it cannot be fetched
(offline, or a viewer that loads nothing) a fallback font of another width made the text
overlap. Each SVG carries a subset (only the characters it shows) of DejaVu Sans Mono, regular
and bold, and of Symbola for the few symbols DejaVu lacks (⏸, ⭘), so it renders the same
everywhere. Needs fontTools (in the dev extra) and those two fonts (Debian: fonts-dejavu-core,
fonts-symbola).
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import re
import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent
BASE = Path("/tmp/bgmon-sample")
FONT_DIRS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts",
             Path.home() / ".local/share/fonts", Path("/Library/Fonts"),
             Path.home() / "Library/Fonts"]
# (family in the SVG, weight, font file name): the first family that has a character draws it.
FONTS = [
    ("bgmon-mono", 400, "DejaVuSansMono.ttf"),
    ("bgmon-mono", 700, "DejaVuSansMono-Bold.ttf"),
    ("bgmon-symbols", 400, "Symbola_hint.ttf"),
]
FAMILY = "bgmon-mono, bgmon-symbols, monospace"


class FontMissing(Exception):
    pass


def find_font(name: str) -> Path:
    for folder in FONT_DIRS:
        if folder.is_dir():
            found = next(folder.rglob(name), None)
            if found is not None:
                return found
    raise FontMissing(f"font {name} not found (install DejaVu Sans Mono and Symbola: on Debian, "
                      "apt-get install fonts-dejavu-core fonts-symbola)")


def shown_text(svg: str) -> set[str]:
    """Every character the SVG draws."""
    return set(html.unescape("".join(re.findall(r">([^<>]*)</text>", svg))))


def embed_fonts(svg: str) -> str:
    """The SVG with Rich's web-font rules replaced by embedded font subsets."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    wanted = {c for c in shown_text(svg) if c.isprintable() or c == "\xa0"}  # nbsp: the gaps
    rules = []
    covered: set[str] = set()
    for family, weight, name in FONTS:
        font = TTFont(find_font(name))
        cmap = font.getBestCmap()
        # The mono font draws all it can; the symbol font only what the mono font lacks.
        chars = {c for c in wanted if ord(c) in cmap and (family == "bgmon-mono" or c not in covered)}
        if family == "bgmon-mono":
            covered |= chars
        if not chars:
            continue
        options = subset.Options()
        options.flavor = "woff"
        options.layout_features = []
        options.name_IDs = ["*"]  # keep the copyright and licence records
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(ord(c) for c in chars))
        subsetter.subset(font)
        buf = io.BytesIO()
        font.flavor = "woff"
        font.save(buf)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        rules.append(
            f'    @font-face {{\n        font-family: "{family}";\n'
            f'        src: url("data:font/woff;base64,{data}") format("woff");\n'
            f"        font-weight: {weight};\n    }}\n"
        )
    svg = re.sub(r"\s*@font-face \{[^}]*\}", "", svg)
    svg = svg.replace("<style>\n", "<style>\n" + "".join(rules), 1)
    svg = svg.replace("font-family: Fira Code, monospace;", f"font-family: {FAMILY};")
    # Keep every space where Rich put it: some renderers (librsvg) otherwise drop the gaps that
    # open a text run ("~/work/infra  2 tasks" drawn as "~/work/infra2 tasks").
    return svg.replace("<svg ", '<svg xml:space="preserve" ', 1)


def main() -> int:
    from bgmon.views.tui.sample import screenshots

    try:
        for _, _, name in FONTS:
            find_font(name)
    except FontMissing as exc:
        print(f"screenshots/make.py: {exc}", file=sys.stderr)
        return 2
    shutil.rmtree(BASE, ignore_errors=True)
    BASE.mkdir(parents=True)
    try:
        shots = asyncio.run(screenshots(BASE))
        # The smallest screen bgmon is made for: everything must fit (docs/tui.md).
        shots["main-80x24"] = asyncio.run(screenshots(BASE, size=(80, 24)))["main"]
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    for name, svg in shots.items():
        path = OUT / f"{name}.svg"
        path.write_text(embed_fonts(svg), encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
