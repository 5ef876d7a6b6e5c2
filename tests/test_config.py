"""Configuration: defaults ← TOML ← flags, with clear errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest

from bgmon.config import Config, ConfigError, Reading, Thresholds, load_config, validate
from bgmon.timefmt import parse_duration, parse_time


def test_toml_overrides_defaults_and_unknown_keys_warn(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[monitor]\nsince = "2d"\nroots = ["/a", "/b"]\nnonsense = 1\n'
                    '[health]\nstuck_after = 120\nfail_streak = 4\n[recovery]\nmodel = "m"\n')
    config, warnings = load_config(path, explicit=True)
    assert config.since == 172800 and config.roots == ("/a", "/b")
    assert config.thresholds.stuck_after == 120.0 and config.thresholds.fail_streak == 4
    assert config.model == "m"
    assert any("nonsense" in w for w in warnings)


@pytest.mark.parametrize("text", ["[health]\nfail_streak = 'x'\n", "not toml [", "[monitor]\nsince = 'soon'\n"])
def test_bad_values_are_config_errors(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, explicit=True)


def test_missing_default_file_is_fine_but_named_file_is_not(tmp_path):
    assert load_config(tmp_path / "none.toml")[0].since == 86400
    with pytest.raises(ConfigError):
        load_config(tmp_path / "none.toml", explicit=True)


def test_time_forms():
    assert parse_time("2026-01-01T00:00:00Z") == parse_time(1767225600) == parse_time(1767225600000)
    assert parse_time("2026-01-01T00:00:00") == 1767225600  # no zone: UTC
    assert parse_time("garbage") is None and parse_time(True) is None and parse_time(-1) is None
    assert parse_duration("90") == 90 and parse_duration("5m") == 300 and parse_duration("24h") == 86400
    with pytest.raises(ValueError):
        parse_duration("soon")


@pytest.mark.parametrize("section", ["monitor", "health", "reading", "recovery"])
def test_a_section_that_is_not_a_table_is_a_config_error(tmp_path, section):
    path = tmp_path / "c.toml"
    path.write_text(f"{section} = 5\n")
    with pytest.raises(ConfigError, match=rf"c\.toml: \[{section}\] must be a table"):
        load_config(path, explicit=True)


@pytest.mark.parametrize(("section", "key", "value"), [
    ("recovery", "journal", "5"),
    ("recovery", "model", "5"),
    ("recovery", "patterns", "5"),
    ("recovery", "auto", '"yes"'),
    ("monitor", "journal", "[]"),
    ("monitor", "roots", "[]"),
    ("monitor", "roots", "[1]"),
    ("recovery", "journal", '""'),
    ("health", "loop_repeats", "0"),
    ("health", "fail_streak", "0"),
    ("health", "fail_window", "0"),
    ("health", "fail_window_min", "-1"),
    ("health", "stuck_after", "0"),
    ("health", "stuck_after", "-5"),
    ("health", "stuck_after", '"0s"'),
    ("health", "stuck_after", "nan"),
    ("monitor", "since", "-5"),
    ("monitor", "since", "inf"),
    ("monitor", "proc_interval", "-1"),
    ("monitor", "sweep_interval", "0"),
    ("monitor", "cpu_sample", "-1"),
    ("reading", "line_cap", "0"),
    ("reading", "startup_bytes", "0"),
    ("reading", "startup_bytes", "-1"),
    ("reading", "startup_lines", "0"),
    ("reading", "read_chunk", "0"),
])
def test_wrong_type_or_out_of_range_values_name_file_section_and_key(tmp_path, section, key, value):
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"c\.toml \[{section}\]: {key} "):
        load_config(path, explicit=True)


def test_edge_values_in_range_are_accepted(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[monitor]\ncpu_sample = 0\nsince = "1s"\nroots = "/a"\n'
                    '[health]\nloop_repeats = 1\nfail_streak = 1\nfail_window = 1\n'
                    '[reading]\nline_cap = 1\nread_chunk = 1\n'
                    '[recovery]\nauto = true\nmodel = "m"\npatterns = "p.toml"\njournal = "j.jsonl"\n')
    config, warnings = load_config(path, explicit=True)
    assert config.cpu_sample == 0 and config.since == 1 and config.roots == ("/a",)
    assert config.thresholds.loop_repeats == 1 and config.reading.read_chunk == 1
    assert config.auto_recover is True and config.model == "m"
    assert (config.patterns, config.journal) == ("p.toml", "j.jsonl")
    assert warnings == []


def test_unknown_recovery_key_warns(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[recovery]\natuo = true\n")
    config, warnings = load_config(path, explicit=True)
    assert config.auto_recover is False
    assert any("[recovery].atuo" in w for w in warnings)


@pytest.mark.parametrize(("change", "message"), [
    ({"since": 0.0}, r"\[monitor\] since \(--since\) must be"),
    ({"roots": ()}, r"\[monitor\] roots .*at least one root"),
    ({"cpu_sample": -0.5}, r"\[monitor\] cpu_sample must be"),
    ({"thresholds": Thresholds(stuck_after=0.0)}, r"\[health\] stuck_after \(--stuck-after\) must be"),
    ({"thresholds": Thresholds(loop_repeats=0)}, r"\[health\] loop_repeats must be at least 1"),
    ({"reading": Reading(startup_lines=0)}, r"\[reading\] startup_lines must be at least 1"),
])
def test_validate_checks_merged_values_such_as_flags(change, message):
    with pytest.raises(ConfigError, match=message):
        validate(replace(Config(), **change))


def test_validate_returns_a_good_config_unchanged():
    config = Config()
    assert validate(config) is config


@pytest.mark.parametrize("text", ["monitor = 5\n", "[recovery]\njournal = 5\n",
                                  "[monitor]\nroots = []\n", "[health]\nloop_repeats = 0\n"])
def test_bad_config_exits_2_without_traceback(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "bgmon", "--once", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.toml" in lines[0], proc.stderr


def test_notify_section_and_its_errors(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[notify]\non = ["failed", "healthy"]\nhold = "2m"\ncommand = "notify me \'now please\'"\n'
                    'webhook = "https://ntfy.sh/x"\nwebhook_format = "slack"\nterminal = "osc777"\n')
    notify = load_config(path, explicit=True)[0].notify
    assert notify.on == ("failed", "healthy") and notify.hold == 120
    assert notify.command == ("notify", "me", "now please")  # split into argv, never a shell
    assert notify.sinks() == ["command", "terminal", "webhook"]
    assert "[notify]" in Config(notify=notify).to_toml()
    for bad, match in (('on = ["failed", "nope"]', "unknown badge"), ('terminal = "loud"', "one of"),
                       ('webhook = "file:///etc/passwd"', "http"), ("hold = -1", "0 or more"),
                       ("command = [1]", "list of strings"), ("timeout = 0", "greater than 0")):
        path.write_text(f"[notify]\n{bad}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(path, explicit=True)
