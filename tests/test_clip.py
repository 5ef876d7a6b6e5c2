"""The one clipping helper: word boundaries, an ellipsis on every cut, never past the limit."""

from __future__ import annotations

from bgmon.clip import clip, clip_start, flat, one_line
from bgmon.recovery import rules


def test_a_cut_falls_at_a_word_boundary_and_is_marked():
    text = "could not open a connection to server at 10.0.0.1 (refused)"
    out = clip(text, 40)
    assert out == "could not open a connection to server…"
    assert len(out) <= 40


def test_a_short_text_is_left_alone():
    assert clip("all good", 8) == "all good"
    assert one_line("", 5) == "" and one_line(None, 5) == ""


def test_one_long_token_is_still_cut_and_marked():
    token = "x" * 300
    assert clip(token, 20) == "x" * 19 + "…"


def test_one_line_shows_newlines_and_folds_whitespace():
    assert one_line("first   line\n\n  second line\n", 80) == "first line ⏎ second line"
    assert flat("a\n b\t c", 80) == "a b c"


def test_every_limit_is_respected():
    text = "alpha beta, gamma; delta epsilon zeta eta theta iota kappa"
    for limit in range(0, len(text) + 2):
        out = clip(text, limit)
        assert len(out) <= max(limit, 0)
        if len(text) > limit and limit > 0:
            assert out.endswith("…")


def test_evidence_in_rules_is_not_cut_mid_word(tmp_path):
    # The evidence quoted by the rules goes through the same helper.
    long = "psycopg.OperationalError: connection to server at db (10.0.0.5), port 5432 failed " * 4
    out = rules.flat(long, 60)
    assert out.endswith("…") and not out[:-1].endswith(("serve", "fail"))


def test_a_path_is_cut_from_its_start():
    assert clip_start("/home/me/work/shop", 10) == "…work/shop"
    assert clip_start("short", 10) == "short"
    assert all(len(clip_start("/a/b/c/d/e/f", n)) <= n for n in range(0, 14))


def test_a_long_failure_in_a_reason_is_cut_at_a_word_with_an_ellipsis():
    """Issue 15's reproduction: the demo's refused connection read "connection to serve)"."""
    from bgmon.health import _failure_text
    from bgmon.model import Event

    error = ("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at "
             '"localhost" (127.0.0.1), port 5432 failed: Connection refused')
    text = _failure_text(Event(ts=0.0, kind="tool_result", tool="Bash", error=error))
    assert text.endswith("…") and "serve)" not in text and "connection to…" in text
