"""Secret redaction: applied to everything bgmon sends to the API and to free text it writes.

Logs of coding agents are full of credentials (env dumps, curl commands, config files). Nothing
that looks like one may leave the machine, so the Claude context goes through `redact_obj`, and
text bgmon writes or shows (journal records, error messages) goes through `redact` as well.

Two layers:
- patterns for the well-known token formats and `key=value` style assignments;
- exact values bgmon knows are secret (the API key the SDK resolved, `register_secret`), which
  catch a key in any format, e.g. echoed back inside an API error message.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from typing import Any, overload

from bgmon.jsondepth import MAX_DEPTH, TOO_DEEP

MARK = "[REDACTED]"
MARK_PREFIX = "[REDACTED"  # what every marker starts with: MARK and "[REDACTED:<kind>]"

# Names of environment variables whose values are scrubbed wherever they appear.
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
# bgmon's own credentials for the API: never passed on to a program bgmon starts (an approved
# restart or run), whose output lands in files and whose own children could send them anywhere.
CHILD_SCRUBBED_ENV = (*SECRET_ENV_VARS, "ANTHROPIC_IDENTITY_TOKEN", "ANTHROPIC_IDENTITY_TOKEN_FILE",
                      "ANTHROPIC_CUSTOM_HEADERS")

_MIN_EXACT = 8  # shorter "secrets" would scrub ordinary words

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember an exact secret value (e.g. the API key the SDK resolved) to scrub everywhere."""
    if value and len(value) >= _MIN_EXACT:
        with _known_lock:
            _known.add(value)


def known_secrets() -> list[str]:
    values = {os.environ.get(name) for name in SECRET_ENV_VARS}
    with _known_lock:
        values |= _known
    # Longest first, so a key that contains another is replaced whole.
    return sorted((v for v in values if v and len(v) >= _MIN_EXACT), key=len, reverse=True)


def child_env() -> dict[str, str]:
    """The environment for a program bgmon starts: bgmon's own, less its API credentials."""
    return {k: v for k, v in os.environ.items() if k not in CHILD_SCRUBBED_ENV}


# A piece of a known secret counts from this many characters: a log line cut at a fixed width,
# or an output tail, can begin or end inside a key (`api03-…` without its `sk-ant-`).
_MIN_FRAGMENT = 12
_FRAGMENT_MIN_SECRET = 20  # shorter secrets are only matched whole
_RUN = re.compile(r"[A-Za-z0-9_\-+/=.]{" + str(_MIN_FRAGMENT) + ",}")


def _scrub_known(text: str, values: Iterable[str]) -> str:
    """Every known secret replaced, whole or as a piece cut at either end."""
    long_ones = []
    for value in values:
        if value in text:
            text = text.replace(value, MARK)
        if len(value) >= _FRAGMENT_MIN_SECRET:
            long_ones.append(value)
    if not long_ones:
        return text

    def piece(m: re.Match[str]) -> str:
        run = m.group()
        for value in long_ones:
            # A run that starts inside the key (prefix cut) or starts with it and was cut at
            # its end: its first characters are a piece of the key.
            if run[:_MIN_FRAGMENT] in value or run[-_MIN_FRAGMENT:] in value:
                return MARK
        return run

    return _RUN.sub(piece, text)


def _sub(pattern: str, label: str, flags: int = 0) -> tuple[re.Pattern[str], str]:
    return re.compile(pattern, flags), f"[REDACTED:{label}]"


# Order matters: whole blocks first, then specific token formats, then generic assignments (whose
# values may already be a marker, which the value pattern skips).
_TOKENS: list[tuple[re.Pattern[str], str]] = [
    # A PEM private key, also when the text was cut before its END line.
    _sub(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?"
        r"(?:-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)",
        "private-key",
    ),
    # An AWS secret access key next to its key id (the credentials CSV, `aws configure` output),
    # before the key id itself is replaced.
    (re.compile(r"(\b(?:AKIA|ASIA)[0-9A-Z]{16}[\s,;|:\"']{1,4})[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"),
     r"\1[REDACTED:aws-secret]"),
    _sub(r"sk-ant-[A-Za-z0-9_\-]{8,}", "anthropic"),
    # The shapes of detect-secrets' plugins (Stripe, SendGrid, Slack webhooks, Twilio-free set)
    # and those it lacks (Hugging Face, Google OAuth access tokens).
    _sub(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{10,}", "stripe"),
    _sub(r"\bwhsec_[0-9A-Za-z]{20,}", "stripe"),
    _sub(r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}", "sendgrid"),
    _sub(r"\bhf_[A-Za-z0-9]{30,}", "huggingface"),
    _sub(r"\bya29\.[0-9A-Za-z_\-]{20,}", "google-oauth"),
    _sub(r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]+", "slack-webhook"),
    _sub(r"\bpypi-AgE[A-Za-z0-9_\-]{50,}", "pypi"),
    _sub(r"\bsq0(?:atp|csp)-[0-9A-Za-z_\-]{20,}", "square"),
    _sub(r"\b[0-9a-f]{32}-us[0-9]{1,2}\b", "mailchimp"),
    _sub(r"\b[0-9]{8,10}:AA[0-9A-Za-z_\-]{30,}", "telegram"),
    _sub(r"\bsk-[A-Za-z0-9_\-]{16,}", "api-key"),
    _sub(r"\bgithub_pat_[A-Za-z0-9_]{20,}", "github"),
    _sub(r"\bgh[opusr]_[A-Za-z0-9]{20,}", "github"),
    _sub(r"\bglpat-[A-Za-z0-9_\-]{20,}", "gitlab"),
    _sub(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}", "slack"),
    _sub(r"\bAIza[0-9A-Za-z_\-]{30,}", "google"),
    _sub(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b", "aws-key-id"),
    _sub(r"\bnpm_[A-Za-z0-9]{30,}", "npm"),
    # JWT: header.payload[.signature]; the signature may have been cut off.
    _sub(r"\beyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}(?:\.[A-Za-z0-9_\-]*)?", "jwt"),
]

# A value: quoted (may contain spaces) or a bare word; never an existing marker.
_VALUE = r"(?![\"']?\[REDACTED)(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s\"'&]+)"
_SECRET_WORD = (
    r"(?:password|passwd|passphrase|secret|token(?!s)|api[_\-]?key|apikey|access[_\-]?key"
    r"|private[_\-]?key|credentials?|session[_\-]?id|cookie)"
)
_CONTEXT: list[tuple[re.Pattern[str], str]] = [
    # Authorization headers (Bearer, Basic, token) and bare "Bearer xyz".
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
            r"(?:(?:bearer|basic|token|digest)\s+)?)" + _VALUE
        ),
        r"\1" + MARK,
    ),
    (re.compile(r"(?i)(\bbearer\s+)(?!\[REDACTED)[A-Za-z0-9._~+/=\-]{8,}"), r"\1" + MARK),
    # x-api-key: …, key = value, "key": "value", KEY_TOKEN=value, --password value
    (
        re.compile(
            r"(?i)((?:\b|_|-)[A-Za-z0-9_.\-]*" + _SECRET_WORD + r"[A-Za-z0-9_.\-]*[\"']?\s*[:=]\s*)"
            + _VALUE
        ),
        r"\1" + MARK,
    ),
    (
        re.compile(r"(?i)(--?(?:password|passwd|token|secret|api-?key|access-?key)\s+)" + _VALUE),
        r"\1" + MARK,
    ),
    # Azure connection strings and SAS URLs.
    (re.compile(r"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=)[^;\s\"']+"),
     r"\1" + MARK),
    (re.compile(r"([?&]sig=)[^&\s\"']+"), r"\1" + MARK),
    # mysql -pPASS (the password glued to -p), curl -u user:pass.
    (re.compile(r"(\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p)(?![\s\[])"
                r"[^\s\"']+"), r"\1" + MARK),
    (re.compile(r"(\s(?:-u|--user)[\s=]+[\"']?[^:\s\"']+:)(?!\[REDACTED)[^\s\"']+"), r"\1" + MARK),
    # Credentials inside a URL: scheme://user:password@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:)[^@\s/]+(@)"), r"\1" + MARK + r"\2"),
]


# Lowercase pieces at least one of which every pattern above needs to match (ASCII text only):
# text with none of them has nothing to redact, and skipping the regexes keeps `bgmon run` fast
# on chatty output. Keep in step with _TOKENS, _CONTEXT and _SECRET_WORD.
_HINTS = (
    "private key", "sk-", "github_pat_", "gho_", "ghp_", "ghu_", "ghs_", "ghr_", "glpat-", "xox",
    "aiza", "akia", "asia", "agpa", "aida", "aroa", "anpa", "anva", "aipa", "npm_", "eyj",
    "authorization", "bearer", "passw", "passphrase", "secret", "token", "apikey", "api_key",
    "api-key", "access", "private", "credential", "session", "cookie", "://",
    "k_live_", "k_test_", "whsec_", "sg.", "hf_", "ya29.", "pypi-", "sq0", "-us", ":aa",
    "accountkey", "sharedaccess", "sig=", "mysql", "mariadb", "-u ", "-u\t", "--user",
)


def _maybe_secret(text: str) -> bool:
    if not text.isascii():  # case-insensitive matching beyond ASCII: let the patterns decide
        return True
    low = text.lower()
    return any(h in low for h in _HINTS)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every secret bgmon recognises replaced by a [REDACTED…] marker."""
    if not text:
        return text
    text = _scrub_known(text, [*known_secrets(), *(e for e in extra if e and len(e) >= _MIN_EXACT)])
    if not _maybe_secret(text):
        return text
    for pattern, mark in _TOKENS:
        text = pattern.sub(mark, text)
    for pattern, repl in _CONTEXT:
        text = pattern.sub(repl, text)
    return text


def has_marker(text: str) -> bool:
    """Whether `text` holds a redaction marker (a value bgmon stored redacted)."""
    return MARK_PREFIX in text


@overload
def redact_obj(value: str, extra: Iterable[str] = (), depth: int = MAX_DEPTH) -> str: ...
@overload
def redact_obj(value: dict, extra: Iterable[str] = (), depth: int = MAX_DEPTH) -> dict[str, Any]: ...
@overload
def redact_obj(value: list | tuple, extra: Iterable[str] = (), depth: int = MAX_DEPTH) -> list[Any]: ...
@overload
def redact_obj(value: object, extra: Iterable[str] = (), depth: int = MAX_DEPTH) -> object: ...


def redact_obj(value: object, extra: Iterable[str] = (), depth: int = MAX_DEPTH) -> object:
    """Redact every string inside JSON-like data (dict keys stay, their values are redacted;
    tuples come back as lists); nesting deeper than `depth` becomes a marker (bgmon.jsondepth)."""
    extra = tuple(extra)
    if isinstance(value, dict | list | tuple) and depth <= 0:
        return TOO_DEEP
    if isinstance(value, str):
        return redact(value, extra)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if re.fullmatch(r"(?i)[A-Za-z0-9_.\-]*" + _SECRET_WORD + r"[A-Za-z0-9_.\-]*", key) and (
                isinstance(v, str | int | float) and not isinstance(v, bool)
            ):
                # {"password": "x"} has no "=" in it once it is data, not text.
                out[key] = MARK
            else:
                out[key] = redact_obj(v, extra, depth - 1)
        return out
    if isinstance(value, list | tuple):
        return [redact_obj(v, extra, depth - 1) for v in value]
    return value


def scrub(text: str) -> str:
    """Only the known secrets (whole or cut): for text whose shape must stay (e.g. an argv)."""
    return _scrub_known(text, known_secrets())
