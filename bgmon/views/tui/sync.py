"""Keeping the tree in step with the snapshots, cheaply.

`TreeSync` owns the key → node dicts. A batch of changes updates nodes in place
(`node.data = snap; node.refresh()`), adds or removes only the nodes that appeared or went away,
and rebuilds the whole tree (once, in a batch) only when the sort or the filter changes or a task
moves to another parent. When the order under the current sort no longer holds, `resort` moves
just the rows whose sort key moved, and rebuilds only when that cannot give the order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice

from textual.widgets.tree import TreeNode

from bgmon.engine import Change
from bgmon.model import Badge, TaskSnapshot
from bgmon.views.order import aged_out, arrange, sort_key
from bgmon.views.tui.filters import visible_keys
from bgmon.views.tui.tree import GroupRow, Row, TaskTree

Signature = list[tuple[int, str]]
MANY = 64  # more new tasks than this in one batch: one rebuild beats sorted inserts
MOVES = 500  # more rows out of place than this: one rebuild beats moving them one by one


@dataclass
class Applied:
    touched: set[str] = field(default_factory=set)  # keys whose data changed
    reorder: bool = False  # a sort key moved: the order may be off
    rebuilt: bool = False


class TreeSync:
    def __init__(self, tree: TaskTree) -> None:
        self.tree = tree
        self.age_out = 0.0  # seconds; 0 shows finished tasks however old (config.age_out)
        self.snaps: dict[str, TaskSnapshot] = {}
        self.nodes: dict[str, TreeNode[Row]] = {}
        self.groups: dict[str, TreeNode[Row]] = {}
        self.collapsed: set[str] = set()  # task keys and group keys the user folded
        self.sort = "severity"
        self.text = ""
        self.faults_only = False
        self.moved: set[str] = set()  # tasks whose sort key moved since the last resort
        self.rebuilds = 0  # for tests: how often the whole tree was rebuilt

    # -- what should be shown ----------------------------------------------------------------

    def aged(self) -> set[str]:
        """Finished worktree tasks past `age_out`: out of the default view (--all keeps them)."""
        if not self.age_out:
            return set()
        now = self.tree.clock()
        return {k for k, s in self.snaps.items() if aged_out(s, now, self.age_out)}

    def wanted(self) -> set[str]:
        return visible_keys(self.snaps, self.text, self.faults_only, self.aged())

    def wanted_order(self) -> Signature:
        want = self.wanted()
        out: Signature = []
        for group, rows in arrange((self.snaps[k] for k in want), self.sort):
            out.append((0, f"group:{group}"))
            out += [(depth + 1, s.key) for depth, s in rows]
        return out

    def tree_order(self) -> Signature:
        out: Signature = []

        def walk(node: TreeNode[Row], depth: int) -> None:
            for child in node.children:
                data = child.data
                out.append((depth, data.key if data is not None else ""))
                walk(child, depth + 1)

        walk(self.tree.root, 0)
        return out

    # -- applying changes ----------------------------------------------------------------------

    def apply(self, changes: Iterable[Change], rebuild: bool = False) -> Applied:
        """Apply a batch: update snapshots, then patch the tree (or rebuild it once)."""
        done = Applied()
        added = 0
        restructure = False
        for ch in changes:
            done.touched.add(ch.key)
            if ch.kind == "removed" or ch.snapshot is None:
                self.snaps.pop(ch.key, None)
                continue
            old, new = self.snaps.get(ch.key), ch.snapshot
            self.snaps[ch.key] = new
            if old is None:
                added += 1
                done.reorder = True  # a new group lands last: let the order check place it
                continue
            if old.parent != new.parent or old.group != new.group:
                restructure = True
            if self._moves(old, new):
                done.reorder = True
                self.moved.add(ch.key)
        if rebuild or restructure or added > MANY or not self._patch(done.touched):
            self.rebuild()
            done.rebuilt, done.reorder = True, False
        return done

    def _moves(self, old: TaskSnapshot, new: TaskSnapshot) -> bool:
        if self.sort == "severity":
            return old.health.badge != new.health.badge
        if self.sort == "activity":
            return old.last_activity != new.last_activity
        return old.name != new.name

    def _patch(self, touched: set[str]) -> bool:
        """Add, remove and update nodes in place. False when that cannot be done (rebuild)."""
        want = self.wanted()
        gone = [k for k in self.nodes if k not in want]
        for key in gone:
            if any(c.data is not None and c.data.key in want for c in self.nodes[key].children):
                return False  # its sub-tasks stay: let the rebuild re-home them
        for key in sorted(gone, key=self._depth):
            node = self.nodes.pop(key, None)
            if node is not None:
                self._remove(node)
        new = sorted((k for k in want if k not in self.nodes), key=self._depth)
        for key in new:
            if not self._insert(self.snaps[key], want):
                return False
        for key in touched:
            node = self.nodes.get(key)
            if node is not None and key in self.snaps and node.data is not self.snaps[key]:
                node.data = self.snaps[key]
                node.refresh()
        return True

    def _remove(self, node: TreeNode[Row]) -> None:
        stack = list(node.children)
        while stack:  # its descendants go with it
            child = stack.pop()
            stack += child.children
            if child.data is not None:
                self.nodes.pop(child.data.key, None)
        parent = node.parent
        node.remove()
        if parent is None or parent.children:
            return
        if isinstance(parent.data, GroupRow):
            self.groups.pop(parent.data.name, None)
            parent.remove()
        else:
            parent.allow_expand = False

    def _depth(self, key: str) -> int:
        depth, s = 0, self.snaps.get(key)
        while s is not None and s.parent is not None and depth < 64:
            depth, s = depth + 1, self.snaps.get(s.parent)
        return depth

    def _insert(self, s: TaskSnapshot, want: set[str]) -> bool:
        if s.parent is not None and s.parent in want:
            parent = self.nodes.get(s.parent)
            if parent is None:
                return False
        else:
            parent = self._group(s.group)
        key = sort_key(self.sort)
        before = None
        for sibling in parent.children:
            if isinstance(sibling.data, TaskSnapshot) and key(sibling.data) > key(s):
                before = sibling
                break
        self._add(parent, s, before)
        return True

    def _group(self, name: str) -> TreeNode[Row]:
        node = self.groups.get(name)
        if node is None:
            row = GroupRow(name)
            node = self.tree.root.add(name, data=row, expand=row.key not in self.collapsed)
            self.groups[name] = node
        return node

    def _add(self, parent: TreeNode[Row], s: TaskSnapshot, before: TreeNode[Row] | None = None) -> None:
        if isinstance(parent.data, TaskSnapshot):
            parent.allow_expand = True
        node = parent.add(s.name, data=s, expand=s.key not in self.collapsed, allow_expand=False, before=before)
        self.nodes[s.key] = node

    def resort(self) -> bool:
        """Put the tree in the sort's order. → True when it was out of order.

        A batch of badge changes leaves a few rows out of place among thousands: they are taken
        out and put back where the order wants them, since a rebuild re-creates every node
        (0.4 s at 10,000 tasks, the screen frozen meanwhile). It rebuilds when groups must move,
        a moved row has rows under it, or moving did not give the order."""
        moved, self.moved = self.moved, set()
        want = self.wanted_order()
        if self.tree_order() == want:
            return False
        if not self._move(moved, want) or self.tree_order() != want:
            self.rebuild()
        return True

    def _move(self, keys: set[str], want: Signature) -> bool:
        """Take out the rows of `keys` and insert each before the row that follows it in `want`
        (from the last, so that row is in place already). False when that cannot do it."""
        nodes = [self.nodes.get(k) for k in keys]
        if len(keys) > MOVES or any(node is None or node.children for node in nodes):
            return False
        if [c.data.key for c in self.tree.root.children if c.data is not None] != [
                k for depth, k in want if depth == 0]:
            return False  # the groups' order changed too
        at = {key: i for i, (_, key) in enumerate(want)}
        if any(k not in at for k in keys):
            return False
        for node in nodes:
            assert node is not None
            node.remove()
        for key in sorted(keys, key=at.__getitem__, reverse=True):
            i = at[key]
            depth = want[i][0]
            snap = self.snaps[key]
            parent = self.nodes.get(snap.parent or "") if depth > 1 else self.groups.get(snap.group)
            if parent is None:
                return False
            before = None
            for later_depth, later in islice(want, i + 1, None):
                if later_depth <= depth:
                    before = self.nodes.get(later) if later_depth == depth else None
                    break
            self._add(parent, snap, before)
        return True

    def rebuild(self) -> None:
        """Clear and re-add every shown node, in order. One layout pass follows."""
        self.rebuilds += 1
        self.moved.clear()
        self.tree.clear()
        self.nodes.clear()
        self.groups.clear()
        want = self.wanted()
        for group, rows in arrange((self.snaps[k] for k in want), self.sort):
            gnode = self._group(group)
            for depth, s in rows:
                parent = self.nodes.get(s.parent) if depth and s.parent else None
                self._add(parent or gnode, s)
        self.count()

    def count(self) -> None:
        """Badge counts per group row; repaint only the rows whose counts moved."""
        counts: dict[str, dict[Badge, int]] = {}
        for s in self.snaps.values():
            c = counts.setdefault(s.group, {})
            c[s.health.badge] = c.get(s.health.badge, 0) + 1
        for name, node in self.groups.items():
            row = node.data
            fresh = counts.get(name, {})
            if isinstance(row, GroupRow) and row.counts != fresh:
                row.counts = fresh
                node.refresh()

    def node_for(self, key: str | None) -> TreeNode[Row] | None:
        if key is None:
            return None
        if key.startswith("group:"):
            return self.groups.get(key[6:])
        return self.nodes.get(key)
