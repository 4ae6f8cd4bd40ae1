"""griffe extension for the reference site: Sphinx cross-reference roles become links.

ohfp's docstrings are in Sphinx style (``:param x:``, ``:returns:``, ``:raises E:``), which the
site's renderer (mkdocstrings' Sphinx parser) understands, and they name other objects with
Sphinx roles (``:class:`~ohfp_core.storage.Storage```), which it prints as they are. This
extension rewrites each role, before rendering, into an *optional* autoref: a link to the
object's entry when the site documents it, its name in code otherwise, so a role never shows
raw and never breaks the strict build. A name is resolved as Sphinx would: as written, then
relative to the docstring's class and module.
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|mod|attr|data|exc|obj|const|type):`(?P<tilde>~?)\.?(?P<name>[\w.]+)(?:\(\))?`"
)


class SphinxRoles(Extension):
    """Rewrite Sphinx roles in every docstring into optional autorefs."""

    def on_object(self, *, obj: Object, loader: Any, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or ":`" not in docstring.value:
            return
        collection = loader.modules_collection

        def known(path: str) -> bool:
            try:
                collection.get_member(path)
            except Exception:  # not loaded, not there, or an alias to outside the site
                return False
            return True

        def link(match: re.Match[str]) -> str:
            name = match["name"]
            scopes = [obj.path, *(p.path for p in _parents(obj))]
            candidates = [name, *(f"{scope}.{name}" for scope in scopes)]
            target = next((c for c in candidates if known(c)), name)
            shown = name.rsplit(".", 1)[-1] if match["tilde"] else name
            code = f"<code>{html.escape(shown)}</code>"
            return f'<autoref identifier="{html.escape(target)}" optional>{code}</autoref>'

        docstring.value = ROLE.sub(link, docstring.value)


def _parents(obj: Object) -> list[Object]:
    found: list[Object] = []
    parent = obj.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found
