"""The task tree: groups → tasks → sub-tasks. Rows are drawn from `node.data` in `render_label`,
so an update is `node.data = snapshot; node.refresh()` and never a rebuild."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from bgmon.clip import clip, clip_start
from bgmon.model import Badge, TaskSnapshot
from bgmon.printable import single_line
from bgmon.views.text import MARK, STYLES
from bgmon.views.tui.fmt import age, one_line, short_path

NAME_W = 20  # name column at task depth; sub-tasks give their indent back
NAME_MAX = 56  # the widest the name column grows on a wide terminal
NAME_MIN = 10  # … and the narrowest it shrinks to on a narrow one
BADGE_W = 12
PROGRESS_W = 8  # "⚠ struggling"
TOGGLE = Style.from_meta({"toggle": True})
BY_SEVERITY = sorted(Badge, key=lambda b: -b.severity)


@dataclass
class GroupRow:
    """A group row's data: its name and the badge counts of its tasks (kept by the app)."""

    name: str
    counts: dict[Badge, int] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"group:{self.name}"


Row = TaskSnapshot | GroupRow


def badge_cell(badge: Badge) -> Text:
    cell = Text()
    cell.append(f"{badge.glyph} {badge.value:<{BADGE_W - 2}}", style=STYLES[badge])
    return cell


def name_width(width: int) -> int:
    """The name column for a tree `width` cells wide: at least NAME_W, and on a wide terminal
    half of what the fixed columns leave (so names and ids show whole instead of empty space)."""
    fixed = BADGE_W + 1 + 6 + 1 + PROGRESS_W  # badge, age and progress always show whole
    if width < fixed + NAME_W:  # a narrow terminal: the name gives way first (to NAME_MIN)
        return max(NAME_MIN, width - fixed)
    # Wider: the name and the step share what is left, half each (up to NAME_MAX).
    return max(NAME_W, min(NAME_MAX, (width - fixed) // 2))


def name_cell(s: TaskSnapshot, width: int) -> str:
    """`name #id` in `width` cells: the name is clipped, the id never (it is typed back into
    `bgmon propose` and `history`); an id longer than the column is shown whole anyway."""
    name = single_line(s.name)  # a newline in it must not break the row (shown as ⏎)
    if s.id == s.name:
        return name
    suffix = f" #{single_line(s.id)}"
    room = width - len(suffix)
    return clip(name, room) + suffix if room >= 4 else suffix.lstrip()


def task_label(s: TaskSnapshot, now: float, width: int, name_w: int = NAME_W) -> Text:
    """`⚠ struggling  name #id        3m   2/5  ✎ mark  step…` cut to `width` cells."""
    line = badge_cell(s.health.badge)
    line.append(" ")
    name = name_cell(s, name_w)
    line.append(name, style="bold")
    line.append(" " * (name_w - len(name)))
    line.append(f" {age(now, s.last_activity):>5}", style="dim")
    line.append(f" {str(s.progress) if s.progress else '':>{PROGRESS_W}}", style="cyan")
    room = width - line.cell_len - 2
    if s.ack is not None and room > 8:  # a person has seen this fault: say so before the rest
        ack = "acknowledged" if room > 20 else "ack"
        line.append(f"  {ack}", style="dim italic")
        room -= len(ack) + 2
    if s.note and room > 6:  # bgmon's own mark (recovery), before the step: people set it
        note = one_line(s.note, min(room - 4, 32))
        line.append(f"  {MARK} {note}", style="bold yellow")
        room -= len(note) + 4
    if s.own_health is not None and room > 12:
        line.append("  (from child)", style="dim italic")
        room -= 14
    if s.step and room > 3:
        line.append("  " + one_line(s.step, room))
    return line


def group_label(g: GroupRow, width: int) -> Text:
    total = sum(g.counts.values())
    tail = Text()
    tail.append(f"  {total} task{'s' if total != 1 else ''}", style="dim")
    for badge in BY_SEVERITY:
        if g.counts.get(badge):
            tail.append(f"  {badge.glyph} {g.counts[badge]}", style=STYLES[badge])
    name = single_line(short_path(g.name))
    room = max(8, width - tail.cell_len)
    name = clip_start(name, room)
    line = Text(name, style="bold")
    line.append_text(tail)
    return line


class TaskTree(Tree[Row]):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        # Not in the footer (it is in `?`): at 80 columns the footer keeps room for x, ? and q.
        Binding("enter", "select_cursor", "Expand/collapse", key_display="⏎", show=False),
        Binding("space", "toggle_node", "Expand/collapse", show=False),
    ]

    def __init__(self, clock: Callable[[], float], **kwargs) -> None:
        super().__init__("tasks", **kwargs)
        self.clock = clock
        self._ages: dict[int, str] = {}  # node id → age text last drawn (visible rows only)
        self.show_root = False
        self.guide_depth = 3

    def depth(self, node: TreeNode[Row]) -> int:
        d, parent = 0, node.parent
        while parent is not None and parent is not self.root:
            d, parent = d + 1, parent.parent
        return d

    def render_label(self, node: TreeNode[Row], base_style: Style, style: Style) -> Text:
        depth = self.depth(node)
        if node.allow_expand:
            prefix = ("▼ " if node.is_expanded else "▶ ", base_style + TOGGLE)
        else:
            prefix = ("  ", base_style)
        width = self.scrollable_content_region.width - depth * self.guide_depth - 2
        data = node.data
        if isinstance(data, TaskSnapshot):
            # Every depth shares one name column: sub-tasks give their extra indent back.
            indent = (depth - 1) * self.guide_depth
            name_w = name_width(width + indent) - indent
            body = task_label(data, self.clock(), width, name_w)
        elif isinstance(data, GroupRow):
            body = group_label(data, width)
        else:
            body = Text(str(node.label))
        label = Text(style=style)
        label.append_text(body)
        return Text.assemble(prefix, label)

    def get_label_width(self, node: TreeNode[Row]) -> int:
        # Labels are cut to the visible width; skipping the render keeps big trees cheap.
        return 0

    def refresh_visible(self) -> None:
        """Repaint the rows on screen whose age text moved on (`12s` → `13s`, `4m` → `5m`);
        off-screen rows are drawn fresh when they scroll in."""
        now = self.clock()
        top = self.scroll_offset.y
        shown: dict[int, str] = {}
        for line in range(top, top + self.scrollable_content_region.height):
            node = self.get_node_at_line(line)
            if node is None:
                break
            if isinstance(node.data, TaskSnapshot):
                text = age(now, node.data.last_activity)
                if self._ages.get(node.id) != text:
                    node.refresh()
                shown[node.id] = text
        self._ages = shown
