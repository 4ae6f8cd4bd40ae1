"""Secrets that must never reach a reply, a log line or the state store.

Credentials written into a URL (``http://user:password@proxy:3128/``, as an endpoint or
proxy setting may hold) are masked wherever text leaves ohfp: error messages
(:class:`ohfp_core.errors.OhfpError`), replies (:func:`ohfp_core.converter.dumps`) and log
lines (:mod:`ohfp_core.logs`, which also masks secret-looking keys).
"""

from __future__ import annotations

import re

MASK = "***"
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]*@")


def mask_secrets(text: str) -> str:
    """``text`` with the user information of every URL (``scheme://user:password@``) masked."""
    if "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(rf"\1{MASK}@", text)
