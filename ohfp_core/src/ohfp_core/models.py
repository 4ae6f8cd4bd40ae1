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
    """Starting: an acquire request reports it ``executing``; not usable yet, not reclaimed."""
    RUNNING = "running"
    """Up: ``succeed`` for an acquire request, still ``executing`` for a return request."""
    STOPPING = "stopping"
    """Stopping outside Host Factory: lost to the grid (``is_lost``); reclaimed with grace 0."""
    STOPPED = "stopped"
    """Stopped: lost to the grid (``fail`` for an acquire request), though the cloud still knows it."""
    SHUTTING_DOWN = "shutting-down"
    """On its way out: ``executing`` for a return request, ``fail`` for an acquire request."""
    TERMINATED = "terminated"
    """Gone: ``succeed`` for a return request, ``fail`` (with ``message``) for an acquire request."""

    @property
    def is_lost(self) -> bool:
        """Lost to the grid: anything but pending or running (stopping, stopped, on its way
        out or terminated)."""
        return self not in (MachineState.PENDING, MachineState.RUNNING)

    @property
    def is_ending(self) -> bool:
        """On its way out or terminated: shutting-down or terminated (a stopped machine can
        still start again; an ending one cannot)."""
        return self in (MachineState.SHUTTING_DOWN, MachineState.TERMINATED)


class RequestKind(enum.StrEnum):
    """Which Host Factory call made a request."""

    ACQUIRE = "acquire"
    """requestMachines (ids ``req-…``)."""
    RETURN = "return"
    """requestReturnMachines (ids ``ret-…``)."""


class RequestStatus(enum.StrEnum):
    """Host Factory's request status."""

    RUNNING = "running"
    """A machine is still executing, or capacity is still due."""
    COMPLETE = "complete"
    """Every machine asked for succeeded (acquire) or is gone (return)."""
    COMPLETE_WITH_ERROR = "complete_with_error"
    """Nothing is executing any more, and a machine failed or capacity fell short."""

    @property
    def is_final(self) -> bool:
        return self is not RequestStatus.RUNNING


class MachineResult(enum.StrEnum):
    """Host Factory's per-machine result."""

    EXECUTING = "executing"
    """Not there yet: booting (acquire) or shutting down (return)."""
    SUCCEED = "succeed"
    """Usable (acquire) or terminated (return)."""
    FAIL = "fail"
    """Lost before it was usable (acquire), or its termination failed (return); has a message."""


class PriceType(enum.StrEnum):
    """How a machine is paid for (reported to Host Factory as ``priceType``)."""

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
    """``String``, ``Numeric`` or ``Boolean``."""
    value: str
    """The value, always as a string (``"2"``, ``"true"``)."""


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
    """``templateId``: 1 to 64 characters of ``[0-9A-Za-z_-]``."""
    max_number: int = field()
    """``maxNumber``: the most units the template may hold at once; -1 is unlimited."""
    attributes: Mapping[str, Attribute] = field(factory=dict)
    """Name → :class:`Attribute`; ``type``, ``ncpus`` and ``nram`` (MB) are mandatory."""
    available_number: int | None = None
    """``availableNumber``: an extra cap on what getAvailableTemplates reports as available."""
    fields: Mapping[str, Any] = field(factory=dict)
    """Every other key of the file's entry, in the file's spelling, for the provider."""
    available_reason: str = ""
    """Why ``available_number`` is lower than ``maxNumber`` allows; core names it when it refuses."""

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
    """The cloud's id (``machineId``, e.g. ``i-0abc…``)."""
    name: str
    """The host name, Host Factory's identity for the host (``name``)."""
    state: MachineState
    """The cloud's state; core derives Host Factory's ``result`` from it."""
    private_ip: str | None = None
    """``privateIpAddress``; Host Factory needs it once the machine runs."""
    public_ip: str | None = None
    """``publicIpAddress``, when there is one."""
    launch_time: int = field(default=0, validator=_non_negative)
    """``launchtime``: seconds since the epoch (UTC), ≥ 0."""
    instance_type: str | None = None
    """``instanceType``, when the cloud has such a thing."""
    price_type: PriceType | None = None
    """``priceType``: on demand or spot."""
    weight: int = field(default=1, validator=_positive)
    """Units of requested capacity the machine counts for, ≥ 1."""
    message: str = ""
    """The cloud's reason when the machine failed or went away."""
    cloud_host_id: str | None = None
    """``cloudHostId``: the cloud's host id (dedicated hosts)."""
    tags: Mapping[str, str] = field(factory=dict)
    """The machine's tags, as the cloud reports them."""


@frozen(kw_only=True)
class CloudRequest:
    """What core knows about one request, handed to the provider to look it up again.

    ``handle`` is exactly what the provider returned from provisioning (JSON-serialisable,
    opaque to core). ``machine_ids`` are, for an acquire request, the machines core has seen
    so far; for a return request, the machines being returned.
    """

    request_id: str
    """Core's id: ``req-…`` (acquire) or ``ret-…`` (return)."""
    kind: RequestKind
    """Acquire or return."""
    template_id: str | None = None
    """The template of an acquire request."""
    machine_count: int = 0
    """The units an acquire request asked for."""
    handle: Mapping[str, Any] = field(factory=dict)
    """What the provider returned from provisioning (empty when the call died first)."""
    machine_ids: tuple[str, ...] = ()
    """Acquire: the machines core has seen so far. Return: the machines being returned."""
    created_at: int = 0
    """When core recorded the request, seconds since the epoch."""


@frozen(kw_only=True)
class Provisioned:
    """The provider's answer to a provisioning call.

    ``handle`` must be JSON-serialisable; core stores it and passes it back in
    :class:`CloudRequest`. ``machines`` lists machines already known (may be empty: the
    request is asynchronous).
    """

    handle: Mapping[str, Any] = field(factory=dict)
    """JSON-serialisable; stored and handed back as :attr:`CloudRequest.handle`."""
    machines: tuple[Machine, ...] = ()
    """Machines already known (often none yet)."""
    message: str = ""
    """Replaces requestMachines' success message when not empty."""


@frozen(kw_only=True)
class RequestSnapshot:
    """The cloud's view of one request right now.

    ``open`` is True while the cloud may still deliver machines for an acquire request (a
    fleet that has not reached its target and has not expired). ``handle`` replaces the
    stored handle when not None.
    """

    machines: tuple[Machine, ...] = ()
    """Every machine of an acquire request; a return request's machines the cloud still knows."""
    open: bool = False
    """True while the cloud may still deliver machines for an acquire request."""
    message: str = ""
    """Shown as the request's message (e.g. why capacity fell short)."""
    handle: Mapping[str, Any] | None = None
    """A new handle to store, or None to keep the stored one."""


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
    """The machine's id; empty when Host Factory named the host only."""
    name: str
    """The host name; how to find the machine when ``machine_id`` is empty."""
    request: CloudRequest | None = None
    """The acquire request it came from, when core knows it."""


@frozen(kw_only=True)
class MachineRef:
    """A host Host Factory holds, for the reclaim check. ``machine_id`` may be unknown."""

    name: str
    """The host name."""
    machine_id: str | None = None
    """The machine's id, or None when only the name is known: look the host up by name."""
    request: CloudRequest | None = None
    """The acquire request it came from, when core knows it."""


@frozen(kw_only=True)
class Reclaim:
    """A host the cloud is taking back without Host Factory asking.

    ``grace_period`` is the seconds left before the host is lost (0 when already gone).
    """

    name: str
    """The host name, as Host Factory knows it."""
    grace_period: int = field(validator=_non_negative)
    """Seconds left before the host is lost (``gracePeriod``), ≤ 120 for a spot notice; 0 when gone."""
    machine_id: str | None = None
    """The machine's id, when known."""
    reason: str = ""
    """Why (spot interruption, terminated from the console, unknown to the cloud); logged."""


@frozen
class Problem:
    """A validation problem; ``path`` names the field in the user's spelling."""

    path: str
    """The field in the user's spelling, relative to the template (``vmType``)."""
    message: str
    """What is wrong and how to fix it."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@frozen(kw_only=True)
class HealthCheck:
    """One health check result."""

    name: str
    """What was checked (``credentials``, ``EC2 API``)."""
    ok: bool
    """Whether it passed."""
    detail: str = ""
    """What was found, or why it failed."""


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
    - ``settings``: the provider's section of ``ohfp.json``, and ``settings_path`` that file
      (None without one): a provider names the files in its configuration errors.
    - ``timeout_sec``: Host Factory's time budget for this call
      (``HF_PROVIDER_ACTION_TIMEOUT``); a provider bounds its cloud calls and retries by it.
    - ``values``: the provider's memory between calls, kept in the state store
      (:class:`ohfp_core.values.Values`).
    """

    instance: str
    """The provider instance (``HF_PROVIDER_NAME``, e.g. ``awsinst``)."""
    provider_type: str
    """The ``ohfp.providers`` entry point name (``aws``, ``mock``)."""
    confdir: Path
    """The instance's config directory (``HF_PROVIDER_CONFDIR``): config, templates, ``ohfp.json``."""
    workdir: Path
    """The instance's work directory (``HF_PROVIDER_WORKDIR``): state that outlives each call."""
    logdir: Path | None = None
    """The log directory (``HF_PROVIDER_LOGDIR``), or None when logs go to stderr."""
    config: Mapping[str, Any] = field(factory=dict)
    """The instance's config file, parsed (IBM's ``<instance>prov_config.json``)."""
    config_path: Path | None = None
    """Which config file was read, or None when there is none."""
    settings: Mapping[str, Any] = field(factory=dict)
    """The provider's section of ``ohfp.json``."""
    settings_path: Path | None = None
    """Which ``ohfp.json`` was read, or None when there is none (a provider names it in its
    errors about ``settings``)."""
    timeout_sec: float = 240.0
    """Seconds left of Host Factory's budget for this call: bound retries by it."""
    values: Values = field(factory=Values, eq=False, repr=False)
    """The provider's memory between calls, kept in the state store."""
