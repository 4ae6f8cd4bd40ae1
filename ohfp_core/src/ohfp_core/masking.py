"""Secrets that must never reach a reply, a log line or the state store.

Two kinds of secret are masked wherever text leaves ohfp — error messages
(:class:`ohfp_core.errors.OhfpError`), replies (:func:`ohfp_core.converter.dumps`), log lines
(:mod:`ohfp_core.logs`, which also masks secret-looking keys) and so the messages stored with
requests:

- credentials written into a URL (``http://user:password@proxy:3128/``, as an endpoint,
  proxy or DSN setting may hold);
- every credential value the process holds: AWS access key ids, secret keys and session
  tokens from the environment (read once, on first use), and whatever a provider or store
  registers with :func:`remember_secret` once it has resolved credentials (botocore's chain,
  a DSN's password). A misbehaving endpoint or proxy that echoes one back (a session token
  quoted in an authentication error) is therefore masked too.
"""

from __future__ import annotations

import os
import re

MASK = "***"
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")
MIN_SECRET_LENGTH = 8
"""Shorter values are not remembered: masking them would mangle ordinary text."""
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "PGPASSWORD",
)
"""Environment variables whose values are credentials."""

_known: set[str] = set()
_pattern: re.Pattern[str] | None = None
_env_read = False


def remember_secret(*values: str | None) -> None:
    """Mask these values from now on wherever ohfp writes text (values shorter than
    :data:`MIN_SECRET_LENGTH` and None are ignored). Cheap to call again with known values."""
    global _pattern
    fresh = {v for v in values if v and len(v) >= MIN_SECRET_LENGTH and v not in _known}
    if fresh:
        _known.update(fresh)
        # Longest first, so a secret that contains another is masked whole.
        alternatives = sorted(_known, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(v) for v in alternatives))


def forget_secrets() -> None:
    """Forget every remembered value and read the environment again on next use (tests)."""
    global _pattern, _env_read
    _known.clear()
    _pattern = None
    _env_read = False


def _read_environment() -> None:
    global _env_read
    _env_read = True
    remember_secret(*(os.environ.get(name) for name in SECRET_ENV))


def mask_secrets(text: str) -> str:
    """``text`` with every remembered credential value and the user information of every URL
    (``scheme://user:password@``) masked."""
    if not _env_read:
        _read_environment()
    if _pattern is not None:
        text = _pattern.sub(MASK, text)
    if "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
