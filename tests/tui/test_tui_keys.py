"""Keys on the deterministic sample (live=False, frozen clock): filter, faults, sort, moving."""

from __future__ import annotations

from tuikit import SIZE

from bgmon.model import Badge, TaskSnapshot
from bgmon.views.tui.app import BgmonApp
from bgmon.views.tui.help import HelpScreen
from bgmon.views.tui.sample import NOW, sample_monitor


def make_app(base) -> BgmonApp:
    monitor = sample_monitor(base)
    return BgmonApp(monitor.config, monitor=monitor, live=False, clock=lambda: NOW)


def shown(app: BgmonApp) -> list[str]:
    """Task names in tree order (depth-first)."""
    out = []
    for key, _depth in ((k, d) for d, k in app.sync.tree_order()):
        if not key.startswith("group:"):
            out.append(app.sync.snaps[key].name)
    return out


def selected_name(app: BgmonApp) -> str | None:
    node = app.task_tree.cursor_node
    return node.data.name if node is not None and isinstance(node.data, TaskSnapshot) else None


async def test_sample_rows_badges_and_roll_up(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        badges = {s.name: s.health.badge for s in app.sync.snaps.values()}
        assert badges == {
            "api-refactor": Badge.HEALTHY, "flaky-tests": Badge.STRUGGLING, "migrate-db": Badge.STUCK,
            "docs-site": Badge.FAILED, "release-notes": Badge.COMPLETED, "search-index": Badge.STRUGGLING,
            "crawler": Badge.HEALTHY, "ranker": Badge.STRUGGLING, "nightly-build": Badge.FAILED,
            "terraform-plan": Badge.STUCK,
        }
        parent = app.sync.nodes[app.monitor.find("search-index").key]
        assert sorted(c.data.name for c in parent.children) == ["crawler", "ranker"]
        from rich.style import Style

        label = app.task_tree.render_label(parent, Style(), Style()).plain
        assert "⚠ struggling" in label and "(from child)" in label
        group = app.sync.groups[str(home / "work" / "shop")]
        glabel = app.task_tree.render_label(group, Style(), Style()).plain
        assert "~/work/shop" in glabel and "8 tasks" in glabel
        # The cursor starts on the first task, whose evidence is on the right.
        assert selected_name(app) == "nightly-build"
        assert "process 41020 exited" in app.query_one("#detail").plain()


async def test_navigation_moves_the_cursor_and_the_detail_follows(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        order = shown(app)
        assert selected_name(app) == order[0]
        await pilot.press("j")
        assert selected_name(app) == order[1]
        await pilot.press("down")
        # Past the end of the first group the cursor meets the second group's row.
        assert app.task_tree.cursor_node.data.key.startswith("group:")
        assert "8 tasks" in app.query_one("#detail").plain()
        await pilot.press("down")
        assert selected_name(app) == order[2]
        await pilot.press("k", "up")
        assert selected_name(app) == order[1]
        detail = app.query_one("#detail").plain()
        assert order[1] in detail and "Why" in detail


async def test_enter_and_space_fold_and_unfold(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        parent = app.sync.nodes[app.monitor.find("search-index").key]
        app.task_tree.move_cursor(parent)
        await pilot.pause()
        lines = app.task_tree.last_line
        await pilot.press("space")
        assert not parent.is_expanded and app.task_tree.last_line == lines - 2
        await pilot.press("enter")
        assert parent.is_expanded and app.task_tree.last_line == lines
        # Folding survives a rebuild (here: a sort change).
        await pilot.press("space", "s")
        await pilot.pause()
        assert not app.sync.nodes[parent.data.key].is_expanded


async def test_filter_by_text_and_escape_clears_it(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("slash")
        box = app.query_one("#filter")
        assert box.display and box.has_focus
        await pilot.press(*"rank")
        await pilot.pause()
        # A matching sub-task keeps its parent for context.
        assert shown(app) == ["search-index", "ranker"]
        assert "2 of 10 shown" in str(app.query_one("#status").render())
        # Typing q or f in the box types them: they are not quit and faults-only here.
        await pilot.press("q", "f")
        assert app.is_running and not app.sync.faults_only and box.value == "rankqf"
        assert shown(app) == []
        await pilot.press("backspace", "backspace", "enter")
        assert app.task_tree.has_focus and shown(app) == ["search-index", "ranker"]
        # The filter also matches steps and groups.
        await pilot.press("slash", "ctrl+u")
        await pilot.press(*"infra")
        await pilot.pause()
        assert sorted(shown(app)) == ["nightly-build", "terraform-plan"]
        await pilot.press("escape")
        await pilot.pause()
        assert not box.display and box.value == "" and len(shown(app)) == 10


async def test_faults_only_and_back(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("f")
        names = shown(app)
        assert "release-notes" not in names and "api-refactor" not in names and "crawler" not in names
        assert {"docs-site", "flaky-tests", "migrate-db", "nightly-build", "terraform-plan",
                "search-index", "ranker"} == set(names)
        assert "faults only" in str(app.query_one("#status").render())
        await pilot.press("f")
        assert len(shown(app)) == 10


async def test_sort_cycles_severity_activity_name(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.sync.sort == "severity"
        shop = str(home / "work" / "shop")

        def top(group: str) -> list[str]:
            return [n.data.name for n in app.sync.groups[group].children]

        assert top(shop) == ["docs-site", "migrate-db", "flaky-tests", "search-index", "api-refactor", "release-notes"]
        await pilot.press("s")
        assert app.sync.sort == "activity"
        assert top(shop) == ["api-refactor", "search-index", "flaky-tests", "migrate-db", "docs-site", "release-notes"]
        await pilot.press("s")
        assert app.sync.sort == "name"
        assert top(shop) == sorted(top(shop))
        assert "sort name" in str(app.query_one("#status").render())
        await pilot.press("s")
        assert app.sync.sort == "severity"


async def test_help_screen_palette_and_quit(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for want in ("Filter tasks", "Faults only", "Cycle sort", "Help", "Quit",
                     "Recovery: propose", "Recovery: approve", "Recovery: reject"):
            assert any(t.startswith(want) for t in titles), want
        # r, a and x belong to the recovery panel (test_tui_recovery.py). They are app bindings,
        # so they work wherever the focus is, and the footer shows them.
        bound = {b.key: b.action for b in app.BINDINGS}
        assert (bound["r"], bound["a"], bound["x"]) == ("recover", "approve", "reject")
        assert not {"r", "a", "x"} & {b.key for b in app.task_tree.BINDINGS}
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
