"""Every screen fits and scrolls at 80×24, 120×40 and 200×50 (issue 15): rows, footer keys, the
help screen and the approval dialog; wide terminals give names the spare width; ids are never
cut; Ctrl-C quits; names sort naturally; bgmon's commands lead the palette; NO_COLOR badges
use weight and reverse video, never low contrast."""

from __future__ import annotations

import pytest
from rich.style import Style
from textual.widgets import OptionList
from textual.widgets._footer import FooterKey
from tuikit import badge_of, config_for, wait_for, write_task

from bgmon.model import Badge, TaskSnapshot
from bgmon.views.text import STYLES
from bgmon.views.tui.app import BgmonApp
from bgmon.views.tui.confirm import ConfirmScreen
from bgmon.views.tui.help import HelpScreen
from bgmon.views.tui.sample import NOW, sample_monitor, sample_recovery

SIZES = [(80, 24), (120, 40), (200, 50)]


def sample_app(base) -> BgmonApp:
    monitor = sample_monitor(base)
    return BgmonApp(monitor.config, monitor=monitor, live=False, clock=lambda: NOW,
                    recovery=sample_recovery(base))


def rows(app: BgmonApp) -> dict[str, str]:
    """Each task's row as drawn, by name."""
    tree = app.task_tree
    out = {}
    for line in range(tree.last_line + 1):
        node = tree.get_node_at_line(line)
        if node is not None and isinstance(node.data, TaskSnapshot):
            out[node.data.name] = tree.render_label(node, Style(), Style()).plain
    return out


async def fits_and_scrolls_to_its_end(pilot, box, size: tuple[int, int]) -> None:
    """A dialog's box lies within the terminal, and `end` scrolls it to its last line."""
    assert box.region.right <= size[0] and box.region.bottom <= size[1], (size, box.region)
    await pilot.press("end")
    await pilot.pause()
    assert box.scroll_y == box.max_scroll_y


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_rows_fit_and_progress_shows_whole(home, size):
    app = sample_app(home)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        tree = app.task_tree
        room = tree.scrollable_content_region.width
        for name, label in rows(app).items():
            node = next(n for n in app.sync.nodes.values() if n.data.name == name)
            indent = tree.depth(node) * tree.guide_depth  # the tree's guides; the label has the rest
            assert indent + len(label) <= room, (size, name, label)
        shown = rows(app)
        assert "880/1200" in shown["crawler"] and "5/12" in shown["flaky-tests"]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_footer_shows_every_key_up_to_quit(home, size):
    app = sample_app(home)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        keys = {k.key_display or k.key: k for k in app.screen.query(FooterKey)}
        for key in ("/", "f", "s", "r", "a", "x", "?", "q"):
            widget = next((w for d, w in keys.items() if d == key), None)
            assert widget is not None, (size, sorted(keys))
            assert widget.region.width > 0 and widget.region.right <= size[0], (size, key)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_help_fits_and_scrolls_to_its_last_line(home, size):
    app = sample_app(home)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one("#help")
        assert app.focused is box  # the arrow keys scroll it
        await fits_and_scrolls_to_its_end(pilot, box, size)
        # The last line of the help is on screen after scrolling.
        assert box.scroll_y + box.scrollable_content_region.height >= box.virtual_size.height


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_approval_dialog_shows_the_whole_effect(home, size):
    app = sample_app(home)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        app.task_tree.move_cursor(app.sync.nodes[app.monitor.find("nightly-build").key])
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        box = app.screen.query_one("#confirm")
        body = app.screen.query_one("#confirm-body")
        # Nothing is cut sideways: the body wraps within the box, so the exact effect is all there.
        assert body.region.right <= box.region.right
        assert box.max_scroll_x == 0
        await fits_and_scrolls_to_its_end(pilot, box, size)


async def test_a_wide_terminal_gives_names_the_spare_width_and_never_cuts_an_id(home):
    long = "build-assets-for-the-storefront"
    write_task(home, long, id="bg_e8305b")
    write_task(home, "another-rather-long-task-name-here", id="bg_0123456789abcdef01")
    for size in SIZES:
        app = BgmonApp(config_for(home))
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda a=app: badge_of(a, long) is not None, what="the tasks")
            shown = rows(app)
            # Ids are whole at every size; the name gives way instead.
            assert "#bg_e8305b" in shown[long] and "#bg_0123456789abcdef01" in "".join(shown.values())
            if size[0] >= 200:
                assert f"{long} #bg_e8305b" in shown[long]
            else:
                assert "…" in shown[long]


async def test_names_sort_naturally(home):
    for n in (1, 2, 10):
        write_task(home, f"task {n}", status="running")
    app = BgmonApp(config_for(home))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: badge_of(app, "task 10") is not None, what="the tasks")
        await pilot.press("s", "s")  # by name
        await pilot.pause()
        order = [n for n in rows(app) if n.startswith("task")]
        assert order == ["task 1", "task 2", "task 10"]


async def test_ctrl_c_quits_as_the_docs_say(home):
    app = sample_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.return_code == 0 and not app.is_running


async def test_bgmons_commands_lead_the_palette(home):
    app = sample_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")
        await pilot.pause(0.5)
        options = app.screen.query_one(OptionList)
        names = [str(options.get_option_at_index(i).prompt).split("\n")[0]
                 for i in range(options.option_count)]
        textual_own = {"Theme", "Quit", "Keys", "Maximize", "Screenshot"}
        first_textual = min(i for i, n in enumerate(names) if n in textual_own)
        assert first_textual >= 8 and not textual_own & set(names[:first_textual]), names
        assert names[0] == "Filter tasks"


def test_no_color_badges_use_weight_and_reverse(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    for badge in (Badge.FAILED, Badge.STUCK):
        assert "reverse" in STYLES[badge] and "bold" in STYLES[badge]
    assert "bold" in STYLES[Badge.STRUGGLING]
    assert not any("dim" in STYLES[b] for b in Badge)
    monkeypatch.delenv("NO_COLOR")
    assert STYLES[Badge.FAILED] == "bold red"


async def test_no_color_rows_draw_faults_in_reverse(home, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = sample_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        node = app.sync.nodes[app.monitor.find("docs-site").key]
        label = app.task_tree.render_label(node, Style(), Style())
        styles = [Style.parse(str(span.style)) for span in label.spans if "failed" in
                  label.plain[span.start:span.end]]
        assert styles and all(s.reverse and s.bold and not s.dim for s in styles)
