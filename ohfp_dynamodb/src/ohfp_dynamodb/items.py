"""The table's items: one table, key ``(pk, sk)``, every query a strongly consistent read.

DynamoDB's global secondary indexes are eventually consistent, and the maxNumber
accounting must see every write committed before it, so this store keeps no GSI: each
query of :class:`~ohfp_core.storage.Storage` reads one base-table partition (or keys),
maintained in the same write group as the record it indexes.

==========================  =====================  ==========================================
item                         pk                     sk
==========================  =====================  ==========================================
request                      ``R#<request id>``     ``R``
running request              ``OPEN``               ``<kind>#<request id>`` (a copy)
running, not delivered       ``UNDELIVERED``        ``<request id>`` (a copy)
machine                      ``M#<machine id>``     ``M``
machine of a request         ``RM#<request id>``    ``<machine id>`` (a copy)
machine Host Factory holds   ``HELD``               ``T<len:04>`` + template + ``#<machine id>``
                                                    (``N#<machine id>`` without a template; a copy)
machine by host name         ``N#<name>``           ``<machine id>`` (its id and order only)
value                        ``V``                  ``<key>``
schema version, instance     ``META``               ``schema``
write lock                   ``META``               ``lock``
journal of a large write     ``J#<id>``             ``<part>``
==========================  =====================  ==========================================

Copies carry the record (``doc``, JSON) so a query needs no second read; ``created``
(requests) and ``seq`` (machines: first stored, kept on replace) give the protocol's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ohfp_core.models import RequestStatus
from ohfp_core.storage import (
    MachineRecord,
    RequestRecord,
    dumps,
    machine_record_from_doc,
    machine_record_to_doc,
    request_from_doc,
    request_to_doc,
)
from ohfp_core.storage_rules import is_held

Item = dict[str, Any]
"""An item in DynamoDB's wire format (``{"pk": {"S": "…"}, …}``)."""
Key = tuple[str, str]

OPEN = "OPEN"
UNDELIVERED = "UNDELIVERED"
HELD = "HELD"
VALUES = "V"
META = "META"
SCHEMA_SK = "schema"
LOCK_SK = "lock"


def key(pk: str, sk: str) -> Item:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def key_of(item: Mapping[str, Any]) -> Key:
    return item["pk"]["S"], item["sk"]["S"]


def request_key(request_id: str) -> Key:
    return f"R#{request_id}", "R"


def machine_key(machine_id: str) -> Key:
    return f"M#{machine_id}", "M"


def value_key(name: str) -> Key:
    return VALUES, name


def value_item(name: str, text: str, expires_at: int) -> Item:
    """A value's item: its JSON ``text`` and when it expires."""
    return make(VALUES, name, value=text, expires=expires_at)


def held_prefix(template_id: str | None) -> str:
    """The HELD sort-key prefix of a template (length-prefixed: no template's prefix is
    another's)."""
    return "N#" if template_id is None else f"T{len(template_id):04d}{template_id}#"


def make(pk: str, sk: str, **attributes: Any) -> Item:
    """An item with string (``str``) and number (``int``) attributes."""
    item = key(pk, sk)
    for name, value in attributes.items():
        item[name] = {"N": str(value)} if isinstance(value, int) else {"S": value}
    return item


# -- requests --------------------------------------------------------------------------------


def request_items(record: RequestRecord) -> dict[Key, Item | None]:
    """The items a request is stored as: its own, and its OPEN/UNDELIVERED copies (None:
    delete). The index keys follow from the request id and kind alone."""
    doc = dumps(request_to_doc(record))
    running = record.status is RequestStatus.RUNNING
    open_key = (OPEN, f"{record.kind.value}#{record.request_id}")
    undelivered_key = (UNDELIVERED, record.request_id)
    return {
        request_key(record.request_id): make(*request_key(record.request_id), doc=doc),
        open_key: make(*open_key, doc=doc, created=record.created_at) if running else None,
        undelivered_key: make(*undelivered_key, doc=doc, created=record.created_at)
        if running and not record.delivered
        else None,
    }


def request_from_item(item: Mapping[str, Any]) -> RequestRecord:
    return request_from_doc(json.loads(item["doc"]["S"]))


# -- machines --------------------------------------------------------------------------------


def _index_keys(record: MachineRecord) -> dict[str, Key]:
    keys = {"rm": (f"RM#{record.request_id}", record.machine_id)}
    if is_held(record):
        keys["held"] = (HELD, held_prefix(record.template_id) + record.machine_id)
    if record.name:
        keys["name"] = (f"N#{record.name}", record.machine_id)
    return keys


def machine_items(record: MachineRecord, seq: int, old: MachineRecord | None) -> dict[Key, Item | None]:
    """The items a machine is stored as, and the deletions of the index items its previous
    version (``old``) had and this one has not. The name item is rewritten only when new."""
    doc = dumps(machine_record_to_doc(record))
    new_keys = _index_keys(record)
    old_keys = _index_keys(old) if old is not None else {}
    items: dict[Key, Item | None] = {
        machine_key(record.machine_id): make(*machine_key(record.machine_id), doc=doc, seq=seq)
    }
    for kind, index_key in new_keys.items():
        if kind == "name":
            if old_keys.get("name") != index_key:
                items[index_key] = make(*index_key, seq=seq)
        else:
            items[index_key] = make(*index_key, doc=doc, seq=seq)
    for index_key in old_keys.values():
        if index_key not in new_keys.values():
            items[index_key] = None
    return items


def machine_from_item(item: Mapping[str, Any]) -> MachineRecord:
    return machine_record_from_doc(json.loads(item["doc"]["S"]))


def seq_of(item: Mapping[str, Any]) -> int:
    return int(item["seq"]["N"])
