"""ohfp-core: the Host Factory provider framework.

Provider and extension plugins import :data:`hookimpl` to mark their hook implementations.
"""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl"]

hookimpl = pluggy.HookimplMarker("ohfp")
"""Marks a function or method as an implementation of an ohfp hook."""
