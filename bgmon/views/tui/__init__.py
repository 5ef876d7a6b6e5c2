"""The Textual TUI: a live tree of tasks on the left, the selected task's evidence on the right.

`app.BgmonApp` wires the engine to the widgets; `tree`, `detail` and `filters` render and select
from immutable `TaskSnapshot`s only, so they are cheap to test without a screen. `recovery` is
the side panel (`r`/`a`/`x`) over the shared `RecoveryService`, `recovery_text` renders it and
`confirm` is the approval prompt.
"""
