"""The documentation is part of the product: these tests fail when it drifts from the code.

- every hookspec has a section in ``docs/hooks.md`` whose signature lists the spec's arguments;
- the README names every Host Factory call and every ``ohfp`` command;
- relative links in the README and ``docs/`` point at files that exist;
- the tutorial's example provider (``docs/examples/ohfp-example-provider``) is the code the
  tutorial shows, and it works: through the hooks, through core, and under the conformance kit.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ohfp_core import cli, hookspecs, status
from ohfp_core.models import (
    CloudRequest,
    MachineResult,
    MachineState,
    ProviderContext,
    RequestKind,
    RequestStatus,
    ReturnItem,
)
from ohfp_core.operations import Operations
from ohfp_core.plugin_listing import marked_hooks
from ohfp_core.plugins import Hooks, make_manager
from ohfp_core.sqlite import SQLiteStorage
from ohfp_core.testing import ProviderContract

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
HOOKS_MD = DOCS / "hooks.md"
TUTORIAL = DOCS / "writing-a-provider.md"
EXAMPLE = DOCS / "examples" / "ohfp-example-provider"

SPEC_ATTRIBUTE = f"{hookspecs.PROJECT}_spec"  # what pluggy's HookspecMarker sets on a spec


def _hookspecs() -> dict[str, Callable[..., Any]]:
    return {
        name: value
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, SPEC_ATTRIBUTE)
    }


def _sections(text: str) -> dict[str, str]:
    """``## heading`` → the text up to the next ``## `` heading."""
    sections: dict[str, str] = {}
    heading: str | None = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            sections[heading] = ""
        elif heading is not None:
            sections[heading] += line + "\n"
    return sections


# --------------------------------------------------------------------------------------
# The hook reference
# --------------------------------------------------------------------------------------


def test_hook_reference_has_exactly_one_section_per_hookspec() -> None:
    documented = {h for h in _sections(HOOKS_MD.read_text(encoding="utf-8")) if h.startswith("ohfp_")}
    specs = set(_hookspecs())
    assert specs - documented == set(), "hookspecs without a '## <name>' section in docs/hooks.md"
    assert documented - specs == set(), "docs/hooks.md documents hooks that are not hookspecs"


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_hook_reference_signature_matches_the_spec(name: str) -> None:
    section = _sections(HOOKS_MD.read_text(encoding="utf-8")).get(name)
    assert section is not None, f"docs/hooks.md has no '## {name}' section"
    signatures = re.findall(rf"`{name}\(([^)`]*)\)`", section)
    assert signatures, f"the {name} section has no signature line `{name}(…)`"
    documented = [arg.strip() for arg in signatures[0].split(",") if arg.strip()]
    assert documented == list(inspect.signature(_hookspecs()[name]).parameters)


@pytest.mark.parametrize("name", sorted(_hookspecs()))
def test_hook_reference_says_how_the_hook_is_called(name: str) -> None:
    section = _sections(HOOKS_MD.read_text(encoding="utf-8"))[name]
    firstresult = bool(getattr(_hookspecs()[name], SPEC_ATTRIBUTE)["firstresult"])
    assert ("`firstresult`" in section) is firstresult, f"{name}: firstresult={firstresult} not documented"


def _provider_hooks() -> list[str]:
    return sorted(name for name, spec in _hookspecs().items() if getattr(spec, SPEC_ATTRIBUTE)["firstresult"])


def _words(text: str) -> str:
    """``text`` as one line, RST literals spelled as Markdown's."""
    return " ".join(text.replace("``", "`").split())


@pytest.mark.parametrize("name", _provider_hooks())
def test_every_provider_hook_says_what_it_may_write(name: str) -> None:
    """The hookspec's ``Writes:`` paragraph and the reference's **Writes:** line say the same."""
    doc = inspect.getdoc(_hookspecs()[name]) or ""
    assert "\nWrites: " in doc, f"{name}: the hookspec's docstring has no 'Writes:' paragraph"
    said = _words(doc.split("\nWrites: ", 1)[1].split("\n\n", 1)[0])
    section = _sections(HOOKS_MD.read_text(encoding="utf-8"))[name]
    documented = re.search(r"^- \*\*Writes:\*\* (.+?)(?=^- |^$|\Z)", section, flags=re.MULTILINE | re.DOTALL)
    assert documented is not None, f"docs/hooks.md: {name} has no '- **Writes:**' line"
    assert _words(documented.group(1)) == said


def test_read_only_is_said_by_no_provider_hook() -> None:
    """A provider hook's writes are stated in Writes:, never as 'read only' beside it."""
    for name in _provider_hooks():
        assert "read only" not in (inspect.getdoc(_hookspecs()[name]) or "").lower(), name
        assert "read only" not in _sections(HOOKS_MD.read_text(encoding="utf-8"))[name].lower(), name


# --------------------------------------------------------------------------------------
# The README and links
# --------------------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, prefix: str = "ohfp") -> Iterator[str]:
    """Every leaf command of the CLI, spelled as typed: ``ohfp templates validate`` …"""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = list(_commands(sub, f"{prefix} {name}"))
                yield from nested or [f"{prefix} {name}"]


def test_cli_walk_finds_the_commands() -> None:
    commands = set(_commands(cli.build_parser()))
    assert {
        "ohfp hf requestMachines",
        "ohfp hf scripts",
        "ohfp templates validate",
        "ohfp health",
    } <= commands


def test_readme_documents_every_hf_call_and_command() -> None:
    readme = README.read_text(encoding="utf-8")
    missing = [f"ohfp hf {call}" for call in cli.HF_CALLS if f"ohfp hf {call}" not in readme]
    missing += [command for command in _commands(cli.build_parser()) if command not in readme]
    assert missing == [], "README.md does not mention these commands"


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _without_code(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.DOTALL)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces → '-'."""
    headings = re.findall(r"^#+ (.+)$", _without_code(page.read_text(encoding="utf-8")), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = page.parent / path if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert broken == []


# --------------------------------------------------------------------------------------
# The tutorial's example provider
# --------------------------------------------------------------------------------------


def test_tutorial_shows_the_example_files_verbatim() -> None:
    """Each ``<!-- file: PATH -->`` block in the tutorial is that file of the example, exactly."""
    text = TUTORIAL.read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- file: (\S+) -->\n```[a-z]*\n(.*?)```", text, flags=re.DOTALL)
    shown = {path: body for path, body in blocks}
    assert set(shown) >= {
        "pyproject.toml",
        "src/ohfp_example/cloud.py",
        "src/ohfp_example/provider.py",
        "src/ohfp_example/extension.py",
        "tests/test_contract.py",
    }
    for path, body in shown.items():
        assert body == (EXAMPLE / path).read_text(encoding="utf-8"), f"the tutorial's {path} differs"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``ohfp_example.provider``, imported from the example's source tree (nothing installed)."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    return importlib.import_module("ohfp_example.provider")


@pytest.fixture
def extension(example: ModuleType) -> ModuleType:
    return importlib.import_module("ohfp_example.extension")


def _context(root: Path, **config: Any) -> ProviderContext:
    return ProviderContext(
        instance="exampleinst",
        provider_type="example",
        confdir=root / "conf",
        workdir=root / "work",
        config=config,
    )


def test_example_entry_points_resolve(example: ModuleType) -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    points = project["entry-points"]
    assert set(points) == {"ohfp.providers", "ohfp.plugins"}
    for group, entries in points.items():
        for value in entries.values():
            module_name, _, attribute = value.partition(":")
            target = importlib.import_module(module_name)
            obj = getattr(target, attribute) if attribute else target
            if group == "ohfp.providers":
                assert obj is example.make_provider
            else:
                assert marked_hooks(obj), f"{value} implements no ohfp hook"


def test_example_provision_status_return_cycle(example: ModuleType, tmp_path: Path) -> None:
    provider = example.make_provider(_context(tmp_path))
    hooks = Hooks(make_manager(provider, provider_name="example"), "example")
    [template] = hooks.available_templates([])
    assert hooks.validate_template(template) == []

    provisioned = hooks.provision("req-docs-1", template, 2)
    json.dumps(provisioned.handle)
    request = CloudRequest(
        request_id="req-docs-1",
        kind=RequestKind.ACQUIRE,
        template_id=template.template_id,
        machine_count=2,
        handle=provisioned.handle,
    )
    snapshot = hooks.machine_status([request])["req-docs-1"]
    results = [(m, status.acquire_result(m)) for m in snapshot.machines]
    assert [r for _, r in results] == [MachineResult.SUCCEED, MachineResult.SUCCEED]
    assert status.acquire_status(2, results, snapshot.open) is RequestStatus.COMPLETE

    machines = snapshot.machines
    assert (
        hooks.terminate_machines(
            [ReturnItem(machine_id=m.machine_id, name=m.name, request=request) for m in machines]
        )
        == {}
    )
    returned = CloudRequest(
        request_id="ret-docs-1", kind=RequestKind.RETURN, machine_ids=tuple(m.machine_id for m in machines)
    )
    after = hooks.machine_status([returned])["ret-docs-1"].machines
    assert [m.state for m in after] == [MachineState.TERMINATED, MachineState.TERMINATED]


def test_example_rejects_unknown_config_keys(example: ModuleType, tmp_path: Path) -> None:
    from ohfp_core.errors import ConfigError

    with pytest.raises(ConfigError, match="EXAMPLE_HOST_PREFX: unknown key"):
        example.make_provider(_context(tmp_path, EXAMPLE_HOST_PREFX="x"))


def test_example_accepts_the_keys_core_reads(example: ModuleType, tmp_path: Path) -> None:
    """Core reads ACCEPT_PROPAGATED_LOG_SETTING from the provider config file too."""
    example.make_provider(_context(tmp_path, ACCEPT_PROPAGATED_LOG_SETTING=True, EXAMPLE_HOST_PREFIX="x"))


def test_example_returns_hosts_named_only(example: ModuleType, tmp_path: Path) -> None:
    provider = example.make_provider(_context(tmp_path))
    hooks = Hooks(make_manager(provider, provider_name="example"), "example")
    [template] = hooks.available_templates([])
    [first, second] = hooks.provision("req-docs-2", template, 2).machines
    assert hooks.terminate_machines([ReturnItem(machine_id="", name=first.name)]) == {}
    request = CloudRequest(request_id="req-docs-2", kind=RequestKind.ACQUIRE)
    states = {m.name: m.state for m in hooks.machine_status([request])["req-docs-2"].machines}
    assert states == {first.name: MachineState.TERMINATED, second.name: MachineState.RUNNING}


@pytest.fixture
def example_ops(example: ModuleType, extension: ModuleType, tmp_path: Path) -> Iterator[Operations]:
    """Core's Host Factory calls over the example provider and its extension plugin."""
    context = _context(tmp_path)
    context.confdir.mkdir()
    provider = example.make_provider(context)
    pm = make_manager(provider, provider_name="example", extensions=[("example-site-rules", extension)])
    store = SQLiteStorage(context.workdir)
    yield Operations(Hooks(pm, "example"), store, context)
    store.close()


def test_example_host_factory_cycle(example_ops: Operations) -> None:
    reply = example_ops.request_machines({"template": {"templateId": "example-small", "machineCount": 2}})
    request_id = reply["requestId"]
    [entry] = example_ops.get_request_status({"requests": [{"requestId": request_id}]})["requests"]
    assert entry["status"] == "complete"
    assert [m["result"] for m in entry["machines"]] == ["succeed", "succeed"]


def test_example_quota_wrapper_refuses_big_requests(
    example_ops: Operations, extension: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(extension.QUOTA_ENV, "1")
    reply = example_ops.request_machines({"template": {"templateId": "example-small", "machineCount": 2}})
    assert "requestId" not in reply
    assert (
        reply["message"]
        == "Request VM from example failed: site quota: at most 1 machines per request, 2 asked"
    )
    # The wrapper raised before the provider was called: the toy cloud was never created.
    assert not (example_ops.context.workdir / "example-cloud.json").exists()


def test_example_site_rule_rejects_unlimited_templates(example_ops: Operations) -> None:
    templates = {
        "templates": [
            {"templateId": "open", "maxNumber": -1, "attributes": {"type": "X86_64", "ncpus": 1, "nram": 512}}
        ]
    }
    (example_ops.context.confdir / "exampleinstprov_templates.json").write_text(json.dumps(templates))
    assert example_ops.validate_templates() == {
        "open": ["$.templates[open].maxNumber: unlimited templates (-1) are not allowed at this site"]
    }


@pytest.fixture
def example_driver_class(example: ModuleType) -> type:
    """``ExampleDriver`` from the example's own test module (as the tutorial shows it)."""
    spec = importlib.util.spec_from_file_location(
        "ohfp_example_contract", EXAMPLE / "tests" / "test_contract.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    driver: type = module.ExampleDriver
    return driver


class TestTutorialProviderContract(ProviderContract):
    """The conformance kit against the tutorial's provider, as its own CI would run it."""

    @pytest.fixture
    def provider(self, example: ModuleType, tmp_path: Path) -> object:
        provider: object = example.make_provider(_context(tmp_path))
        return provider

    @pytest.fixture
    def cloud_driver(self, example_driver_class: type, tmp_path: Path) -> object:
        driver: object = example_driver_class(tmp_path / "work")
        return driver


def test_admin_guide_example_inputs_are_what_the_calls_accept() -> None:
    """The guide's example documents parse, and each input is accepted by its call."""
    from ohfp_core import converter

    text = (DOCS / "admin-guide.md").read_text(encoding="utf-8")
    section = text.split("### What Host Factory sends, and what it gets back", 1)[1].split("\n## ", 1)[0]
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", section, flags=re.DOTALL)]
    request, _, status, _, returned, _, reclaims, _ = blocks
    assert converter.parse_request_machines(request) == ("OnDemand-t3-micro", 3)
    assert [ok for _, ok in converter.parse_request_ids(status)] == [True]
    assert converter.parse_machines(returned, "requestReturnMachines", required=True)
    assert converter.parse_machines(reclaims, "getReturnRequests", required=False)
