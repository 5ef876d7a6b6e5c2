"""Configuration: defaults ← TOML ← flags, with clear errors."""

from __future__ import annotations

import pytest

from bgmon.config import ConfigError, load_config
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
