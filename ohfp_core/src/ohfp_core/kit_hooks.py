"""The conformance kit's view of a provider: core's hooks, each result and exception checked.

:class:`KitHooks` calls the provider exactly as core's :class:`~ohfp_core.plugins.Hooks`
does and checks what comes back before a kit test uses it: the type of every result and of
the model fields attrs leaves unchecked, a JSON handle, and that a hook raises only what the
hook reference allows. A breach raises :class:`ContractViolation` with the message
``<hook>: <what happened> (<the rule>)``, so a failing kit test names the hook, the rule and
what to fix. No pytest here: :mod:`ohfp_core.testing` holds the tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from ohfp_core.errors import CloudError, ConfigError
from ohfp_core.models import (
    CloudRequest,
    HealthCheck,
    Machine,
    MachineRef,
    MachineState,
    Problem,
    Provisioned,
    Reclaim,
    RequestSnapshot,
    ReturnItem,
    Template,
)
from ohfp_core.plugins import Hooks

__all__ = ["ContractViolation", "KitHooks", "ProvisionInterrupted", "violated"]


class ContractViolation(AssertionError):
    """A provider broke a rule of the hook reference; the message names the hook and the rule."""


class ProvisionInterrupted(BaseException):
    """Raised by the kit inside ``ohfp_provision`` where the cloud driver says the cloud has made
    the machines: it stands for the Host Factory call being killed there. A provider never
    catches it, as a killed process runs no handler (catch ``Exception``, never ``BaseException``).
    """


def violated(hook: str, what: str, rule: str) -> NoReturn:
    """Fail the running test: ``<hook>: <what> (<rule>)``."""
    __tracebackhide__ = True
    raise ContractViolation(f"{hook}: {what} ({rule})")


def expect(condition: object, hook: str, what: str, rule: str) -> None:
    """:func:`violated` unless ``condition`` holds."""
    __tracebackhide__ = True
    if not condition:
        violated(hook, what, rule)


def type_name(value: object) -> str:
    return type(value).__name__


_CLOUD_RULE = "failures the cloud reports are raised as ohfp_core.errors.CloudError"
_RAISES: dict[str, tuple[tuple[type[Exception], ...], str]] = {
    "ohfp_available_templates": ((CloudError, ConfigError), _CLOUD_RULE),
    "ohfp_provision": ((CloudError, ConfigError), _CLOUD_RULE),
    "ohfp_machine_status": ((CloudError,), _CLOUD_RULE),
    "ohfp_terminate_machines": ((CloudError,), _CLOUD_RULE),
    "ohfp_cancel_request": ((CloudError,), _CLOUD_RULE),
    "ohfp_reclaimed_machines": ((CloudError,), _CLOUD_RULE),
    "ohfp_validate_template": ((), "report a problem as a Problem; validation never raises"),
    "ohfp_health_check": ((), "report a failure as HealthCheck(ok=False); a health check never raises"),
}
"""What each provider hook may raise (hooks.md), and the rule a hook raising anything else breaks."""


def allowed_exceptions(hook: str) -> tuple[type[Exception], ...]:
    """The exceptions ``hook`` may raise."""
    return _RAISES[hook][0]


@contextmanager
def raises_only(hook: str) -> Iterator[None]:
    """Let through what ``hook`` may raise; anything else is a breach naming the exception."""
    __tracebackhide__ = True
    allowed, rule = _RAISES[hook]
    passing: tuple[type[BaseException], ...] = (ContractViolation, *allowed)
    try:
        yield
    except passing:
        raise
    except Exception as exc:
        bug = "a provider bug that core answers with an internal error"
        names = " or ".join(a.__name__ for a in allowed)
        violated(
            hook,
            f"raised {type_name(exc)}: {str(exc)[:300]}",
            f"{rule}; {hook} may raise {names}, anything else is {bug}" if names else f"{rule}: {bug}",
        )


def each(hook: str, values: object, kind: type, what: str) -> list[Any]:
    """``values`` as a list, every item a ``kind``, or the hook is named as the culprit."""
    __tracebackhide__ = True
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        violated(hook, f"returned {type_name(values)} as {what}", f"must be a sequence of {kind.__name__}")
    items = list(values)
    for item in items:
        expect(
            isinstance(item, kind),
            hook,
            f"returned a {type_name(item)} among {what}",
            f"results are ohfp_core.models objects: {kind.__name__}, never dicts or SDK objects",
        )
        for name, expected in _FIELD_TYPES.get(kind, {}).items():
            value = getattr(item, name)
            expect(
                isinstance(value, expected) and not (expected is int and isinstance(value, bool)),
                hook,
                f"returned {kind.__name__}.{name} = {value!r} ({type_name(value)})",
                f"{kind.__name__}.{name} is a {getattr(expected, '__name__', expected)}",
            )
    return items


_FIELD_TYPES: dict[type, dict[str, type]] = {
    Machine: {"machine_id": str, "name": str, "state": MachineState, "launch_time": int, "weight": int},
    Reclaim: {"name": str, "grace_period": int},
    HealthCheck: {"name": str, "ok": bool},
}
"""Fields attrs does not check by itself, checked so a wrong type fails naming the hook."""


def _answered(hook: str, result: object, valid: Callable[[Any], bool], must: str) -> None:
    """The one provider's answer exists and has the type ``must`` describes."""
    __tracebackhide__ = True
    expect(result is not None, hook, "is not implemented", "every provider implements it")
    expect(valid(result), hook, f"returned {type_name(result)} {str(result)[:200]}", must)


class KitHooks(Hooks):
    """Core's :class:`Hooks`, checking each provider result's type before core would use it and
    turning an exception a hook may not raise into a :class:`ContractViolation`."""

    def available_templates(self, templates: Sequence[Template]) -> list[Template]:
        with raises_only("ohfp_available_templates"):
            result = self.pm.hook.ohfp_available_templates(templates=tuple(templates))
        return each("ohfp_available_templates", result, Template, "the templates")

    def provision(self, request_id: str, template: Template, count: int) -> Provisioned:
        hook = "ohfp_provision"
        with raises_only(hook):
            result = self.pm.hook.ohfp_provision(request_id=request_id, template=template, count=count)
        _answered(hook, result, lambda r: isinstance(r, Provisioned), "must be a Provisioned")
        try:
            json.dumps(result.handle)
        except (TypeError, ValueError) as exc:
            violated(hook, f"returned a handle that is not JSON ({exc})", "core stores the handle as JSON")
        each(hook, result.machines, Machine, "Provisioned.machines")
        return result  # type: ignore[no-any-return]

    def machine_status(self, requests: Sequence[CloudRequest]) -> dict[str, RequestSnapshot]:
        hook = "ohfp_machine_status"
        if not requests:
            return {}
        with raises_only(hook):
            result = self.pm.hook.ohfp_machine_status(requests=tuple(requests))
        _answered(
            hook,
            result,
            lambda r: isinstance(r, Mapping),
            "must be a mapping of request id to RequestSnapshot",
        )
        asked = {request.request_id for request in requests}
        for key, snapshot in result.items():
            expect(key in asked, hook, f"answered {key!r}, which was not asked about", "answer by request id")
            expect(
                isinstance(snapshot, RequestSnapshot),
                hook,
                f"returned a {type_name(snapshot)} for {key}",
                "each answer is a RequestSnapshot",
            )
            each(hook, snapshot.machines, Machine, f"the machines of {key}")
        return dict(result)

    def terminate_machines(self, machines: Sequence[ReturnItem]) -> dict[str, str]:
        hook = "ohfp_terminate_machines"
        if not machines:
            return {}
        with raises_only(hook):
            result = self.pm.hook.ohfp_terminate_machines(machines=tuple(machines))
        _answered(
            hook,
            result,
            lambda r: (
                isinstance(r, Mapping)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in r.items())
            ),
            "must be a mapping of machine id (or name) to an error message",
        )
        return dict(result)

    def cancel_request(self, request: CloudRequest) -> bool:
        with raises_only("ohfp_cancel_request"):
            result = self.pm.hook.ohfp_cancel_request(request=request)
        expect(
            result is None or isinstance(result, bool),
            "ohfp_cancel_request",
            f"returned {result!r}",
            "must be True once everything is removed, or the hook left out",
        )
        return bool(result)

    def reclaimed_machines(self, machines: Sequence[MachineRef]) -> list[Reclaim]:
        if not machines:
            return []
        with raises_only("ohfp_reclaimed_machines"):
            result = self.pm.hook.ohfp_reclaimed_machines(machines=tuple(machines))
        return each("ohfp_reclaimed_machines", result, Reclaim, "the reclaims")

    def validate_template(self, template: Template) -> list[Problem]:
        with raises_only("ohfp_validate_template"):
            results = self.pm.hook.ohfp_validate_template(template=template)
        return [
            problem
            for result in results
            for problem in each("ohfp_validate_template", result or (), Problem, "the problems")
        ]

    def health_check(self) -> list[HealthCheck]:
        with raises_only("ohfp_health_check"):
            results = self.pm.hook.ohfp_health_check()
        checks: list[HealthCheck] = []
        for result in results:
            checks += each("ohfp_health_check", result or (), HealthCheck, "the checks")
        return checks
