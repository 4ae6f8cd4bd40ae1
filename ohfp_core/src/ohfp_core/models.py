"""Core models: what providers receive and return, and what core stores.

Every model is a frozen attrs class. Validators name the offending field so a bad value
raised deep inside a provider still reads well in the HF reply. Serialisation lives in
:mod:`ohfp_core.converter`; these classes know nothing about JSON spelling.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from attrs import field, frozen

from ohfp_core.values import Values

TEMPLATE_ID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")
MANDATORY_ATTRIBUTES = ("type", "ncpus", "nram")
ATTRIBUTE_TYPES = ("String", "Numeric", "Boolean")


class MachineState(enum.StrEnum):
    """Cloud state of a machine, in Host Factory's spelling."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"

    @property
    def is_gone(self) -> bool:
        """True when the machine is lost to the grid (stopped or on its way out)."""
        return self not in (MachineState.PENDING, MachineState.RUNNING)


class RequestKind(enum.StrEnum):
    ACQUIRE = "acquire"
    RETURN = "return"


class RequestStatus(enum.StrEnum):
    """Host Factory's request status."""

    RUNNING = "running"
    COMPLETE = "complete"
    COMPLETE_WITH_ERROR = "complete_with_error"

    @property
    def is_final(self) -> bool:
        return self is not RequestStatus.RUNNING


class MachineResult(enum.StrEnum):
    """Host Factory's per-machine result."""

    EXECUTING = "executing"
    SUCCEED = "succeed"
    FAIL = "fail"


class PriceType(enum.StrEnum):
    ONDEMAND = "ondemand"
    SPOT = "spot"


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be ≥ 0, got {value}")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be ≥ 1, got {value}")


def _template_id(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not TEMPLATE_ID_RE.match(value):
        raise ValueError(f"templateId must be 1 to 64 characters of [0-9A-Za-z_-], got {value!r}")


@frozen
class Attribute:
    """One template attribute: HF wants ``[type, value]`` with the value as a string."""

    type: str = field(validator=attrs.validators.in_(ATTRIBUTE_TYPES))
    value: str


@frozen(kw_only=True)
class Template:
    """A machine template as Host Factory sees it.

    ``fields`` holds every other key of the template file entry, in the file's own spelling
    (``imageId``, ``vmType`` …): core does not interpret them, the provider does.
    ``available_number`` caps what the template can provide now (a provider may lower it,
    e.g. to what an account quota allows); ``available_reason`` then says why, and core
    names it when it refuses a request beyond it.
    """

    template_id: str = field(validator=_template_id)
    max_number: int = field()
    attributes: Mapping[str, Attribute] = field(factory=dict)
    available_number: int | None = None
    fields: Mapping[str, Any] = field(factory=dict)
    available_reason: str = ""

    @max_number.validator
    def _max_number(self, attribute: attrs.Attribute[int], value: int) -> None:
        if value < -1:
            raise ValueError(f"maxNumber must be -1 (unlimited) or ≥ 0, got {value}")

    @property
    def unlimited(self) -> bool:
        return self.max_number == -1


@frozen(kw_only=True)
class Machine:
    """A machine as the provider last saw it in the cloud.

    ``name`` is the host name Host Factory uses as the host's identity (on AWS the private
    DNS name). ``weight`` is how many units of requested capacity the machine counts for
    (1 unless the template weights instance types). ``message`` carries the cloud's reason
    for a machine that failed or went away.
    """

    machine_id: str
    name: str
    state: MachineState
    private_ip: str | None = None
    public_ip: str | None = None
    launch_time: int = field(default=0, validator=_non_negative)
    instance_type: str | None = None
    price_type: PriceType | None = None
    weight: int = field(default=1, validator=_positive)
    message: str = ""
    cloud_host_id: str | None = None
    tags: Mapping[str, str] = field(factory=dict)


@frozen(kw_only=True)
class CloudRequest:
    """What core knows about one request, handed to the provider to look it up again.

    ``handle`` is exactly what the provider returned from provisioning (JSON-serialisable,
    opaque to core). ``machine_ids`` are, for an acquire request, the machines core has seen
    so far; for a return request, the machines being returned.
    """

    request_id: str
    kind: RequestKind
    template_id: str | None = None
    machine_count: int = 0
    handle: Mapping[str, Any] = field(factory=dict)
    machine_ids: tuple[str, ...] = ()
    created_at: int = 0


@frozen(kw_only=True)
class Provisioned:
    """The provider's answer to a provisioning call.

    ``handle`` must be JSON-serialisable; core stores it and passes it back in
    :class:`CloudRequest`. ``machines`` lists machines already known (may be empty: the
    request is asynchronous).
    """

    handle: Mapping[str, Any] = field(factory=dict)
    machines: tuple[Machine, ...] = ()
    message: str = ""


@frozen(kw_only=True)
class RequestSnapshot:
    """The cloud's view of one request right now.

    ``open`` is True while the cloud may still deliver machines for an acquire request (a
    fleet that has not reached its target and has not expired). ``handle`` replaces the
    stored handle when not None.
    """

    machines: tuple[Machine, ...] = ()
    open: bool = False
    message: str = ""
    handle: Mapping[str, Any] | None = None


@frozen(kw_only=True)
class ReturnItem:
    """One machine Host Factory asked to return, with the acquire request it came from.

    ``request.machine_ids`` are the machines of that request Host Factory still holds (this
    return's included): when every one of them is being returned, nothing of the request is
    left for Host Factory, and the provider deletes what launched them.

    ``machine_id`` is empty when Host Factory named the host only and core does not know it:
    the provider finds it by ``name`` (and keys an error for it by the name).
    """

    machine_id: str
    name: str
    request: CloudRequest | None = None


@frozen(kw_only=True)
class MachineRef:
    """A host Host Factory holds, for the reclaim check. ``machine_id`` may be unknown."""

    name: str
    machine_id: str | None = None
    request: CloudRequest | None = None


@frozen(kw_only=True)
class Reclaim:
    """A host the cloud is taking back without Host Factory asking.

    ``grace_period`` is the seconds left before the host is lost (0 when already gone).
    """

    name: str
    grace_period: int = field(validator=_non_negative)
    machine_id: str | None = None
    reason: str = ""


@frozen
class Problem:
    """A validation problem; ``path`` names the field in the user's spelling."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@frozen(kw_only=True)
class HealthCheck:
    """One health check result."""

    name: str
    ok: bool
    detail: str = ""


@frozen(kw_only=True)
class ProviderContext:
    """Everything a provider factory gets to build the provider for one instance.

    - ``instance``: the provider instance's name (``HF_PROVIDER_NAME``, e.g. ``awsinst``).
    - ``provider_type``: the entry point name the provider was chosen by (``aws``).
    - ``confdir``: where the instance's files are read (``HF_PROVIDER_CONFDIR``); relative
      paths in them (a ``userDataScript``) are taken from here.
    - ``workdir``: where state lives (``HF_PROVIDER_WORKDIR``); a provider may keep files of
      its own here.
    - ``logdir``: Host Factory's log directory (``HF_PROVIDER_LOGDIR``), or None (stderr).
    - ``config``: the instance's provider config file as parsed JSON (IBM's
      ``<instance>prov_config.json``), and ``config_path`` that file (None without one).
    - ``settings``: the provider's section of ``ohfp.json``.
    - ``timeout_sec``: Host Factory's time budget for this call
      (``HF_PROVIDER_ACTION_TIMEOUT``); a provider bounds its cloud calls and retries by it.
    - ``values``: the provider's memory between calls, kept in the state store
      (:class:`ohfp_core.values.Values`).
    """

    instance: str
    provider_type: str
    confdir: Path
    workdir: Path
    logdir: Path | None = None
    config: Mapping[str, Any] = field(factory=dict)
    config_path: Path | None = None
    settings: Mapping[str, Any] = field(factory=dict)
    timeout_sec: float = 240.0
    values: Values = field(factory=Values, eq=False, repr=False)
