"""The ``postgresql`` section of ``ohfp.json``, and how connection text is shown safely."""

from __future__ import annotations

import re

from attrs import field, frozen

from ohfp_core.masking import MASK, mask_secrets
from ohfp_core.parsing import between, matching, rule
from ohfp_core.parsing import key as setting_key

SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PASSWORD_IN_DSN = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")


@frozen(kw_only=True)
class PostgresSettings:
    """Where the store lives.

    ``dsn``: a libpq connection string or ``postgresql://`` URL; without it libpq's
    environment decides (``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGPASSFILE``,
    ``PGSERVICE``, ``PGSSLMODE`` …). Keep passwords in ``~/.pgpass`` (``PGPASSFILE``) rather
    than here. ``schema``: the schema holding ohfp's tables (one per provider instance),
    created on first use. ``connectTimeout``: seconds to wait for the server, at most the
    call's time budget. ``lockTimeout``: seconds a write waits for another call's write.
    """

    dsn: str | None = None
    schema: str = field(
        default="ohfp",
        validator=rule(matching(SCHEMA_RE, "1 to 63 characters of [a-z0-9_], not starting with a digit")),
    )
    connect_timeout: float = field(
        default=10.0, metadata=setting_key("connectTimeout"), validator=rule(between(1, 300))
    )
    lock_timeout: float = field(
        default=30.0, metadata=setting_key("lockTimeout"), validator=rule(between(1, 3600))
    )


def mask_dsn(text: str) -> str:
    """``text`` with passwords masked, in URL (``user:pw@``) and key=value (``password=pw``) form."""
    return mask_secrets(_PASSWORD_IN_DSN.sub(rf"\1{MASK}", text))
