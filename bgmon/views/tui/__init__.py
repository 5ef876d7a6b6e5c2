"""The Textual TUI: a live tree of tasks on the left, the selected task's evidence on the right.

`app.BgmonApp` wires the engine to the widgets; `tree`, `detail` and `filters` render and select
from immutable `TaskSnapshot`s only, so they are cheap to test without a screen.
"""
