"""The provider contract: every hook a provider or extension plugin may implement.

A process serves one provider instance. Exactly one provider is loaded, so each *provider
hook* (``firstresult=True``) has one answer. *Extension hooks* fan out to every plugin:
their results are collected into lists (validation, health) or they only observe
(lifecycle events). Extension plugins may also wrap provider hooks with
``@hookimpl(wrapper=True)`` to add quotas or auditing, or answer one first
(``tryfirst=True``) to keep it from the provider, as a dry run does.

Rules every provider hook follows:

- Arguments and results are :mod:`ohfp_core.models` objects, never dicts or SDK objects.
- Failures the cloud reports are raised as :class:`ohfp_core.errors.CloudError` (or a
  subclass: capacity, quota, auth, throttling); invalid configuration as
  :class:`ohfp_core.errors.ConfigError`. Any other exception is a provider bug.
- Calls are short: Host Factory bounds each call (``ProviderContext.timeout_sec``) and
  polls again later, so never wait for machines to boot.
- Each provider hook says what it may write (``Writes:``). What a provider keeps between
  calls goes to ``ProviderContext.values`` (:class:`ohfp_core.values.Values`): core stores
  it in the same transaction that records the call's outcome, so a call that dies first
  leaves none of it. An effect that must follow that commit (deleting queue messages whose
  notices were kept) is registered with ``Values.after_commit`` and runs after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ohfp_core.models import (
        CloudRequest,
        HealthCheck,
        Machine,
        MachineRef,
        Problem,
        ProviderContext,
        Provisioned,
        Reclaim,
        RequestSnapshot,
        ReturnItem,
        Template,
    )
    from ohfp_core.storage import StorageFactory

PROJECT = "ohfp"
_hookspec = pluggy.HookspecMarker(PROJECT)


# --------------------------------------------------------------------------------------
# Provider hooks: answered by the one loaded provider (first non-None result wins).
# --------------------------------------------------------------------------------------


@_hookspec(firstresult=True)
def ohfp_available_templates(templates: Sequence[Template]) -> Sequence[Template] | None:
    """Return the templates this provider instance offers.

    :param templates: the templates read from the instance's templates file (possibly
        empty), core fields parsed, every other key kept in ``Template.fields``.
    :returns: the templates to offer. A provider may fill in attributes it can derive
        (``ncpus``/``nram`` from an instance type), add templates of its own or drop ones it
        cannot serve. Core validates the result. Return None to offer ``templates`` as is.

    Stops at the first non-None result.

    Writes: nothing in the cloud; may keep what it read (quotas, instance types) in
    ``ProviderContext.values``.
    """


@_hookspec(firstresult=True)
def ohfp_provision(request_id: str, template: Template, count: int) -> Provisioned | None:
    """Start provisioning ``count`` machines (units of capacity) from ``template``.

    :param request_id: the id core gave the request (``req-…``); core has recorded the
        request before this call.
    :param template: the validated template.
    :param count: how many machines (or weighted units) Host Factory asked for, ≥ 1.
    :returns: a :class:`Provisioned` whose ``handle`` lets the provider find the request
        again. Return at once; do not wait for machines to boot.
    :raises CloudError: when the cloud refused the request outright (nothing was created).
    :raises ConfigError: when the template cannot be served; only before the cloud is
        touched (core then ends the request, holding nothing).

    **Idempotent on request_id**: a second call with the same id (a retry by a wrapper
    plugin, or by the provider's own SDK after a lost reply) must find what the first
    created (client tokens, tags) and never create a second set of machines. Core records
    the request before this call and never calls it again for a request whose call died:
    it removes what that call made with :func:`ohfp_cancel_request`, which finds it by the
    request id alone. So everything a request makes is findable by its request id from the
    moment it exists: tag or name it with the id in the call that creates it.

    Writes: the request's machines and what launches them, in the cloud; may note in
    ``ProviderContext.values`` what later calls should count (capacity asked for) or avoid
    (offerings short of capacity).
    """


@_hookspec(firstresult=True)
def ohfp_machine_status(requests: Sequence[CloudRequest]) -> Mapping[str, RequestSnapshot] | None:
    """Describe the machines of many requests in one batch.

    :param requests: acquire and return requests that are still running. For an acquire
        request, find its machines from ``handle``; for a return request, describe
        ``machine_ids``.
    :returns: a snapshot per ``request_id``. A request missing from the mapping, or a
        machine missing from a return request's snapshot, means the cloud no longer knows
        it (core reports acquire machines as failed and returned machines as terminated).

    Batch cloud calls across requests (one describe for many machines). Idempotent.

    Writes: nothing in the cloud, except that a provider may terminate machines stuck
    pending past its own timeout and report them terminated with a message; may keep what
    it learned in ``ProviderContext.values`` (offerings short of capacity) and in a new
    handle (``RequestSnapshot.handle``).
    """


@_hookspec(firstresult=True)
def ohfp_terminate_machines(machines: Sequence[ReturnItem]) -> Mapping[str, str] | None:
    """Terminate machines Host Factory returns, and shrink what launched them.

    :param machines: machines from one or many acquire requests (``ReturnItem.request``
        is None when core does not know where a machine came from; ``machine_id`` is empty
        for a host Host Factory named only, to be found by ``name``).
    :returns: an error message per ``machine_id`` (per ``name`` for a host without an id)
        that could not be terminated; an empty mapping when every termination was accepted.
        A host the cloud does not know is gone, not an error.

    A fleet or group that would replace a returned machine must have its target capacity
    lowered; returning its last machine deletes it and anything made for it. Idempotent: a
    machine already terminated or unknown to the cloud is not an error.

    Writes: the machines' termination and their fleets' or groups' capacity, in the cloud.
    """


@_hookspec(firstresult=True)
def ohfp_reclaimed_machines(machines: Sequence[MachineRef]) -> Sequence[Reclaim] | None:
    """Report hosts the cloud is taking back without Host Factory asking.

    :param machines: hosts Host Factory holds from this provider, minus those core already
        returns. ``MachineRef.machine_id`` may be None when only a name is known.
    :returns: a :class:`Reclaim` per host being reclaimed: spot interruptions with the
        seconds of notice left, hosts stopped or terminated outside Host Factory and hosts
        the cloud no longer knows (grace 0). Hosts that are fine are left out.

    Idempotent.

    Writes: nothing in the cloud, except that it may consume a queue of the cloud's notices:
    each notice kept in ``ProviderContext.values``, its message deleted from the queue only
    after that is committed (``Values.after_commit``).
    """


@_hookspec(firstresult=True)
def ohfp_cancel_request(request: CloudRequest) -> bool | None:
    """Remove everything the cloud made for an acquire request Host Factory never got.

    :param request: an acquire request whose call died before its id reached Host Factory
        (at any point: before, during or after provisioning). ``request.handle`` is the
        stored handle when provisioning had returned, else empty: find what was made by the
        request id (tags, names derived from it).
    :returns: True once every machine, fleet, group and launch template made for the
        request is deleted or on its way out (also when nothing was ever made). Return None
        (do not implement the hook) to let core terminate the machines
        ``ohfp_machine_status`` finds for the request instead.
    :raises CloudError: when the cloud refused; core tries again on a later call.

    Idempotent: called again until it succeeds.

    Writes: the deletion of what the cloud made for the request.
    """


@_hookspec(firstresult=True)
def ohfp_request_details(request: CloudRequest) -> Mapping[str, Any] | None:
    """Explain a request to an administrator (``ohfp requests show ID``).

    :param request: an acquire or return request as core stored it (running or finished).
    :returns: a JSON-serialisable mapping: what the cloud made for it and, for a request that
        fell short or failed, why (per offering: insufficient capacity, quota, price,
        unsupported). Return None when there is nothing to add to core's own record.

    Stops at the first non-None result. May call the cloud. Optional.

    Writes: nothing.
    """


# --------------------------------------------------------------------------------------
# Extension hooks: every plugin (the provider too) may answer; results are collected.
# --------------------------------------------------------------------------------------


@_hookspec
def ohfp_configure(context: ProviderContext, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Configure a plugin for this call, before any other hook runs.

    :param context: the provider instance's context (directories, provider type, Host
        Factory's time budget).
    :param settings: ``ohfp.json``'s sections by name. An extension plugin reads its own,
        named as its ``ohfp.plugins`` entry point (``"budget": {…}``); a missing section
        means defaults.
    :raises ConfigError: when the plugin's settings are invalid (the call then fails with
        exit code 3 before anything reaches the cloud).

    Called once per process for every plugin but the provider (which gets its context from
    its factory). Must not call the cloud.
    """


@_hookspec
def ohfp_call_started(timeout_sec: float) -> None:
    """A Host Factory call starts now and has ``timeout_sec`` seconds (``HF_PROVIDER_ACTION_TIMEOUT``).

    Called once per call, before any other hook of the call, on every plugin. A plugin
    object may serve many calls: the resident service (``ohfp serve``) keeps providers
    warm between calls. A plugin that bounds its work by the call's time (a provider's
    budget for its cloud calls) counts it from here. Must not call the cloud.
    """


@_hookspec
def ohfp_wait_for_events(seconds: float) -> None:
    """No call is running for this instance: wait up to ``seconds`` for events from the cloud.

    Called only by the resident service (``ohfp serve``), between calls, on an instance of
    its own; never during a call, never in a call's own process. A provider with an event
    source (the AWS provider's interruption queue) long-polls it and stores what arrives as
    its calls would, so the next call answers from state (core commits what it wrote to
    ``ProviderContext.values`` as the wait ends, then runs its after-commit effects). Must
    return within ``seconds`` plus one cloud call's time; a cloud failure is logged, never
    raised.
    """


@_hookspec
def ohfp_validate_template(template: Template) -> Sequence[Problem] | None:
    """Check a template beyond core's own rules.

    :param template: a template as read from the file (``fields`` in the file's spelling).
    :returns: problems whose ``path`` names the field as the user wrote it, relative to the
        template: return ``vmType`` and core reports ``$.templates[<templateId>].vmType``.
        Return None or an empty list when the template is fine.

    Called for every template by ``ohfp templates validate`` and getAvailableTemplates, and
    for the requested one by requestMachines. Must not call the cloud (validation runs
    offline).
    """


@_hookspec
def ohfp_validate_templates_online(templates: Sequence[Template]) -> Mapping[str, Sequence[Problem]] | None:
    """Check that what ``templates`` name exists in the cloud (images, networks, launch
    templates …), for ``ohfp templates validate --online``.

    :param templates: the templates that passed every offline rule, as offered
        (``fields`` in the file's spelling).
    :returns: problems per template id (``path`` names the field as the user wrote it, the
        message the missing value: ``subnetId``: ``subnet-0abc does not exist``), an empty
        mapping when everything exists; None when the plugin has no online checks (when no
        plugin has, the command says so).
    :raises CloudError: when the cloud cannot be asked (credentials, network); core reports
        it as the command's failure.

    Read only and idempotent: describe calls, batched (one per kind of resource where the
    cloud allows), never a create. Called only by that command, never by a Host Factory call.
    """


@_hookspec
def ohfp_health_check() -> Sequence[HealthCheck] | None:
    """Report health checks for ``ohfp health``.

    :returns: checks run by this plugin (credentials, reachability of the cloud API,
        quotas). A failure, a cloud that cannot be reached included, is a check with
        ``ok=False``: never raise. May call the cloud, read only.
    """


@_hookspec
def ohfp_register_storage(register: Callable[[str, StorageFactory], None]) -> None:
    """Register storage backends by name.

    :param register: call ``register(name, factory)``; ``factory(context)`` takes a
        :class:`ohfp_core.storage.StorageContext` (the work directory and the backend's own
        ``ohfp.json`` section, named ``name``) and returns a :class:`ohfp_core.storage.Storage`.
        Core registers ``"sqlite"`` itself; the backend used is chosen by the ``storage``
        setting. The factory is called only for the backend in use.
    """


# --------------------------------------------------------------------------------------
# Lifecycle events: observers only, results ignored. Called after state is stored.
# --------------------------------------------------------------------------------------


@_hookspec
def ohfp_request_submitted(request: CloudRequest) -> None:
    """An acquire or return request was accepted and recorded."""


@_hookspec
def ohfp_machines_ready(request: CloudRequest, machines: Sequence[Machine]) -> None:
    """Machines of an acquire request reached ``succeed`` for the first time."""


@_hookspec
def ohfp_machines_returned(request: CloudRequest, machines: Sequence[Machine]) -> None:
    """Machines of a return request were terminated (the request finished)."""


@_hookspec
def ohfp_machines_reclaimed(reclaims: Sequence[Reclaim]) -> None:
    """The cloud began taking back hosts (first time each host is reported)."""
