"""The recovery journal's records: their kinds, their shapes, and the proposal states.

Record kinds: health (a badge transition), proposal, decision (approved/rejected/superseded),
result (what the approved actions did), mark (bgmon's note on a task), ack (a person
acknowledged a task's badge), auto (what automatic recovery did instead of acting). A kind this
version does not know is kept and shown, never dropped.
"""

from __future__ import annotations

from typing import Any

VERSION = 1
DURABLE_KINDS = frozenset({"decision", "result", "mark", "ack"})
# `by` of decisions no person made: the monitor's auto-recover, and `bgmon run`'s restarts.
AUTOMATIC = frozenset({"auto", "bgmon run"})

# Proposal states, derived from the records that follow a proposal.
PENDING, APPROVED, REJECTED, EXECUTED, FAILED, SUPERSEDED = (
    "pending", "approved", "rejected", "executed", "failed", "superseded"
)
KNOWN_KINDS = ("health", "proposal", "decision", "result", "mark", "ack")


def _opt(value: object, *types: type) -> bool:
    return value is None or isinstance(value, types)


def well_formed(record: dict[str, Any]) -> bool:
    """Whether a record of a known kind has the shape every reader relies on (a damaged or
    hand-edited journal: `"proposal": 5`, `"patterns": 5`); unknown kinds pass unchecked."""
    kind = record.get("kind")
    if kind not in KNOWN_KINDS:
        return True
    if not (_opt(record.get("task"), str) and _opt(record.get("task_id"), str)):
        return False
    if kind == "health":
        return (isinstance(record.get("to"), str) and _opt(record.get("from"), str)
                and _opt(record.get("reasons"), list) and _opt(record.get("patterns"), list))
    if kind == "proposal":
        p = record.get("proposal")
        return (isinstance(p, dict) and _opt(p.get("actions"), list)
                and _opt(record.get("patterns"), list) and _opt(record.get("basis"), dict))
    if kind == "decision":
        return _opt(record.get("proposal"), str)
    if kind == "result":
        return _opt(record.get("proposal"), str) and _opt(record.get("results"), list)
    if kind == "ack":
        return _opt(record.get("badge"), str) and _opt(record.get("note"), str)
    return _opt(record.get("note"), str)  # mark


def proposal_id(record: dict) -> str | None:
    """The id of the proposal a `proposal` record holds."""
    if record.get("kind") != "proposal" or not isinstance(record.get("proposal"), dict):
        return None
    pid = record["proposal"].get("id")
    return pid if isinstance(pid, str) else None


def action_results(record: dict) -> list[dict]:
    """The per-action results of a `result` record (entries of the wrong type left out)."""
    results = record.get("results")
    return [a for a in results if isinstance(a, dict)] if isinstance(results, list) else []
