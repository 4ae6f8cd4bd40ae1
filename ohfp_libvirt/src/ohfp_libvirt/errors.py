"""libvirt errors as ohfp errors: the one boundary every libvirt call crosses.

Every call into libvirt runs inside :func:`libvirt_call`, which turns ``libvirt.libvirtError``
into :class:`ohfp_core.errors.CloudError` (or a subclass) with a message of the form
``"<what>: <libvirt's message> (VIR_ERR_…)"`` and libvirt's error name as ``code``. libvirt
is imported only once an error exists, so importing this module costs nothing.

How libvirt's error codes map:

- connection lost or refused, RPC failure, timeout (``VIR_ERR_SYSTEM_ERROR``, ``_RPC``,
  ``_NO_CONNECT``, ``_INVALID_CONN``, ``_OPERATION_TIMEOUT``, ``_AGENT_UNRESPONSIVE``):
  ``CloudError(retryable=True)``; a libvirtd restarting answers again in a second;
- out of memory (``VIR_ERR_NO_MEMORY``, or QEMU unable to allocate the guest's RAM):
  :class:`~ohfp_core.errors.CapacityError`;
- authentication and access (``VIR_ERR_AUTH_*``, ``_ACCESS_DENIED``, ``_OPERATION_DENIED``):
  :class:`~ohfp_core.errors.AuthError`;
- anything else (no domain, already exists, operation invalid …): ``CloudError`` with its
  code, for the caller to tell apart with :func:`is_code` where one is expected.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ohfp_core.errors import AuthError, CapacityError, CloudError, OhfpError

NO_DOMAIN = "VIR_ERR_NO_DOMAIN"
NO_STORAGE_VOL = "VIR_ERR_NO_STORAGE_VOL"
OPERATION_INVALID = "VIR_ERR_OPERATION_INVALID"
OPERATION_FAILED = "VIR_ERR_OPERATION_FAILED"
DOM_EXIST = "VIR_ERR_DOM_EXIST"
STORAGE_VOL_EXIST = "VIR_ERR_STORAGE_VOL_EXIST"
NO_SUPPORT = ("VIR_ERR_NO_SUPPORT", "VIR_ERR_OPERATION_UNSUPPORTED")
TRANSIENT = frozenset(
    {
        "VIR_ERR_SYSTEM_ERROR",
        "VIR_ERR_RPC",
        "VIR_ERR_NO_CONNECT",
        "VIR_ERR_INVALID_CONN",
        "VIR_ERR_OPERATION_TIMEOUT",
        "VIR_ERR_AGENT_UNRESPONSIVE",
    }
)
AUTH = frozenset(
    {
        "VIR_ERR_AUTH_FAILED",
        "VIR_ERR_AUTH_CANCELLED",
        "VIR_ERR_AUTH_UNAVAILABLE",
        "VIR_ERR_ACCESS_DENIED",
        "VIR_ERR_OPERATION_DENIED",
    }
)
OUT_OF_MEMORY = ("VIR_ERR_NO_MEMORY",)
_QEMU_NO_MEMORY = "Cannot allocate memory"
_LEVELS = frozenset({"VIR_ERR_OK", "VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR"})
"""``virErrorLevel`` names, which share numbers with error codes."""
_MAX_MESSAGE = 1000


def _libvirt_error() -> type[BaseException] | None:
    module = sys.modules.get("libvirt")
    error = getattr(module, "libvirtError", None)
    return error if isinstance(error, type) else None


def code_name(number: int) -> str:
    """libvirt's name for an error number (``42`` → ``VIR_ERR_NO_DOMAIN``)."""
    module = sys.modules.get("libvirt")
    for name in dir(module):
        if name.startswith("VIR_ERR_") and name not in _LEVELS and getattr(module, name) == number:
            return name
    return f"VIR_ERR_{number}"


def translate(exc: BaseException, what: str) -> CloudError:
    """The ohfp error for a ``libvirtError`` raised while doing ``what``."""
    number = exc.get_error_code() if hasattr(exc, "get_error_code") else None
    code = code_name(int(number)) if isinstance(number, int) else type(exc).__name__
    text = " ".join((str(exc) or type(exc).__name__).split())[:_MAX_MESSAGE]
    message = f"{what}: {text} ({code})"
    if code in OUT_OF_MEMORY or _QEMU_NO_MEMORY in text:
        return CapacityError(message, code)
    if code in AUTH:
        return AuthError(message, code)
    return CloudError(message, code, retryable=code in TRANSIENT)


def is_code(exc: CloudError, *codes: str) -> bool:
    """Whether ``exc`` is a translated libvirt error with one of ``codes``."""
    return exc.code in codes


@contextmanager
def libvirt_call(what: str) -> Iterator[None]:
    """Run libvirt calls, re-raising a ``libvirtError`` as :func:`translate` of it.

    ohfp's own errors and any other exception (a bug) pass through unchanged.
    """
    try:
        yield
    except OhfpError:
        raise
    except Exception as exc:
        error = _libvirt_error()
        if error is not None and isinstance(exc, error):
            raise translate(exc, what) from exc
        raise
