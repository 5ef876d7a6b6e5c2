"""The failure-pattern catalogue: classify error text and health rules into known failure kinds.

One catalogue serves `bgmon run` (classifying output lines) and the rule-based proposals.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TYPES = frozenset({"network", "process", "resource", "validation", "timeout", "coordination"})
SEVERITIES = ("low", "medium", "high", "critical")
STRATEGIES = frozenset(
    {"wait_restart", "restart", "restart_once", "no_restart", "wait", "kill_restart", "kill", "mark"}
)


class CatalogueError(ValueError):
    """A pattern file a person must fix (bad TOML, bad regex, unknown field value)."""


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    type: str
    severity: str
    retryable: bool
    strategy: str
    advice: str
    regex: re.Pattern[str] | None = None
    health_rules: tuple[str, ...] = ()

    def matches_text(self, text: str) -> bool:
        return self.regex is not None and self.regex.search(text) is not None

    def classification(self) -> dict[str, object]:
        return {
            "pattern": self.name,
            "type": self.type,
            "severity": self.severity,
            "retryable": self.retryable,
        }


class Catalogue:
    def __init__(self, patterns: Iterable[Pattern]) -> None:
        self.patterns: tuple[Pattern, ...] = tuple(patterns)
        self._text = [p for p in self.patterns if p.regex is not None]

    def match_text(self, text: str | None) -> Pattern | None:
        """The first pattern whose regex finds `text` (catalogue order is priority order)."""
        if not text:
            return None
        for p in self._text:
            if p.matches_text(text):
                return p
        return None

    def match_rules(self, rules: Iterable[str]) -> list[Pattern]:
        wanted = set(rules)
        return [p for p in self.patterns if wanted.intersection(p.health_rules)]

    def get(self, name: str) -> Pattern | None:
        return next((p for p in self.patterns if p.name == name), None)


def _pattern(raw: dict, where: str) -> Pattern:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CatalogueError(f"{where}: every [[pattern]] needs a name")
    where = f"{where}: pattern {name!r}"
    ptype = raw.get("type", "process")
    if ptype not in TYPES:
        raise CatalogueError(f"{where}: type must be one of {sorted(TYPES)}, not {ptype!r}")
    severity = raw.get("severity", "medium")
    if severity not in SEVERITIES:
        raise CatalogueError(f"{where}: severity must be one of {list(SEVERITIES)}")
    strategy = raw.get("strategy", "mark")
    if strategy not in STRATEGIES:
        raise CatalogueError(f"{where}: strategy must be one of {sorted(STRATEGIES)}")
    regex = raw.get("regex")
    compiled = None
    if regex is not None:
        try:
            compiled = re.compile(str(regex))
        except re.error as exc:
            raise CatalogueError(f"{where}: bad regex: {exc}") from None
    rules = raw.get("health_rules", ())
    if compiled is None and not rules:
        raise CatalogueError(f"{where}: needs a regex or health_rules")
    return Pattern(
        name=name,
        type=ptype,
        severity=severity,
        retryable=bool(raw.get("retryable", False)),
        strategy=strategy,
        advice=str(raw.get("advice", "")),
        regex=compiled,
        health_rules=tuple(str(r) for r in rules),
    )


def _parse(text: str, where: str) -> list[Pattern]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{where}: not valid TOML: {exc}") from None
    raw = data.get("pattern", [])
    if not isinstance(raw, list):
        raise CatalogueError(f"{where}: use [[pattern]] tables")
    return [_pattern(r, where) for r in raw if isinstance(r, dict)]


def builtin_patterns() -> list[Pattern]:
    text = resources.files("bgmon.recovery").joinpath("patterns.toml").read_text("utf-8")
    return _parse(text, "built-in patterns.toml")


def load_catalogue(extra: Path | str | None = None) -> Catalogue:
    """Built-in patterns, with a user file's patterns first (same name replaces the built-in)."""
    patterns = builtin_patterns()
    if extra is not None:
        path = Path(extra).expanduser()
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError as exc:
            raise CatalogueError(f"patterns file {path}: not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise CatalogueError(f"cannot read patterns file {path}: {exc.strerror or exc}") from None
        user = _parse(text, str(path))
        names = {p.name for p in user}
        patterns = user + [p for p in patterns if p.name not in names]
    return Catalogue(patterns)
