"""Entry-point discovery and loading, with fake distributions on sys.path."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ohfp_core import plugins
from ohfp_core.errors import ConfigError
from ohfp_core.plugin_listing import describe_plugins
from tests.core.distributions import make_distribution

PROVIDER_MODULE = textwrap.dedent(
    """
    from ohfp_core import hookimpl
    from ohfp_core.models import Provisioned

    class FakeProvider:
        def __init__(self, ctx):
            self.ctx = ctx

        @hookimpl
        def ohfp_provision(self, request_id, template, count):
            return Provisioned(handle={"n": count})

        def ohfp_terminate_machines(self, machines):  # not marked: pluggy ignores it
            return {}

    def make_provider(ctx):
        if ctx.config.get("broken"):
            raise ValueError("broken: must be false")
        return FakeProvider(ctx)
    """
)

EXTENSION_MODULE = textwrap.dedent(
    """
    from ohfp_core import hookimpl
    from ohfp_core.models import Problem

    @hookimpl
    def ohfp_validate_template(template):
        return [Problem("site", "extension says no")]
    """
)


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site dir with providers 'fakeone' and 'faketwo' and an extension 'siteext'."""
    (tmp_path / "fakeprov_mod.py").write_text(PROVIDER_MODULE)
    (tmp_path / "siteext_mod.py").write_text(EXTENSION_MODULE)
    make_distribution(
        tmp_path,
        "ohfp-fakeone",
        "1.2.3",
        {plugins.PROVIDER_GROUP: {"fakeone": "fakeprov_mod:make_provider"}},
    )
    make_distribution(
        tmp_path,
        "ohfp-faketwo",
        "0.0.1",
        {plugins.PROVIDER_GROUP: {"faketwo": "never_imported_mod:make_provider"}},
    )
    make_distribution(tmp_path, "ohfp-siteext", "2.0", {plugins.PLUGIN_GROUP: {"siteext": "siteext_mod"}})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.PROVIDER_ENV, raising=False)
    monkeypatch.delenv(plugins.LOAD_PLUGINS_ENV, raising=False)
    for mod in ("fakeprov_mod", "siteext_mod"):
        sys.modules.pop(mod, None)
    plugins.entry_points_of.cache_clear()
    yield tmp_path
    plugins.entry_points_of.cache_clear()


def test_installed_lists_distributions(fake_site: Path) -> None:
    names = {ep.name: ep for ep in plugins.installed(plugins.PROVIDER_GROUP)}
    assert names["fakeone"].distribution == "ohfp-fakeone"
    assert names["fakeone"].version == "1.2.3"
    assert "faketwo" in names


def test_choose_provider_order(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert plugins.choose_provider("fakeone") == "fakeone"
    monkeypatch.setenv(plugins.PROVIDER_ENV, "faketwo")
    assert plugins.choose_provider(None) == "faketwo"
    assert plugins.choose_provider("fakeone") == "fakeone"  # --provider wins
    monkeypatch.delenv(plugins.PROVIDER_ENV)
    assert plugins.choose_provider(None, setting="fakeone") == "fakeone"
    with pytest.raises(ConfigError, match="several providers are installed"):
        plugins.choose_provider(None)


def test_missing_provider_lists_installed(fake_site: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        plugins.choose_provider("gcp")
    assert "'gcp' is not installed" in str(exc.value)
    assert "fakeone" in str(exc.value) and "faketwo" in str(exc.value)


def test_load_hooks_builds_the_provider_and_extensions(fake_site: Path, tmp_path: Path) -> None:
    from ohfp_core.models import ProviderContext

    ctx = ProviderContext(instance="i", provider_type="fakeone", confdir=tmp_path, workdir=tmp_path)
    hooks = plugins.load_hooks(ctx)
    assert hooks.pm.get_plugin("provider:fakeone").ctx is ctx  # type: ignore[union-attr]
    assert hooks.pm.get_plugin("siteext") is not None
    assert "faketwo" not in {name for name, _ in hooks.pm.list_name_plugin()}
    assert "never_imported_mod" not in sys.modules


def test_load_plugins_env_restricts_extensions(
    fake_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ohfp_core.models import ProviderContext

    ctx = ProviderContext(instance="i", provider_type="fakeone", confdir=tmp_path, workdir=tmp_path)
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    assert plugins.load_hooks(ctx).pm.get_plugin("siteext") is None
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "siteext")
    assert plugins.load_hooks(ctx).pm.get_plugin("siteext") is not None


def test_provider_config_complaint_is_a_config_error(fake_site: Path, tmp_path: Path) -> None:
    from ohfp_core.models import ProviderContext

    ctx = ProviderContext(
        instance="i", provider_type="fakeone", confdir=tmp_path, workdir=tmp_path, config={"broken": True}
    )
    with pytest.raises(ConfigError, match="broken: must be false"):
        plugins.load_hooks(ctx)


def test_missing_provider_hook_is_reported(tmp_path: Path) -> None:
    from ohfp_core.models import CloudRequest, RequestKind

    hooks = plugins.Hooks(plugins.make_manager(object(), provider_name="empty"), "empty")
    with pytest.raises(plugins.ProviderMissingHook, match="does not implement ohfp_machine_status"):
        hooks.machine_status([CloudRequest(request_id="r", kind=RequestKind.ACQUIRE)])
    assert hooks.reclaimed_machines([]) == []  # core default answers for providers without reclaims


def test_unknown_hook_name_is_refused_at_registration() -> None:
    from ohfp_core import hookimpl

    class Typo:
        @hookimpl
        def ohfp_provison(self) -> None:  # misspelt
            return None

    with pytest.raises(Exception, match="ohfp_provison"):
        plugins.make_manager(Typo())


def test_plugins_listing_does_not_import_unselected_providers(fake_site: Path) -> None:
    reply = describe_plugins("fakeone")
    providers = {p["name"]: p for p in reply["providers"]}
    assert providers["fakeone"]["selected"] is True
    assert providers["fakeone"]["hooks"] == ["ohfp_provision"]
    assert providers["fakeone"]["distribution"] == "ohfp-fakeone"
    assert providers["faketwo"]["hooks"] is None
    assert "never_imported_mod" not in sys.modules
    [ext] = [p for p in reply["plugins"] if p["name"] == "siteext"]
    assert ext["hooks"] == ["ohfp_validate_template"] and ext["version"] == "2.0"
    json.dumps(reply)


def test_plugins_listing_marks_the_provider_the_setting_chooses(
    fake_site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = fake_site / "conf"
    conf.mkdir()
    (conf / "ohfp.json").write_text(json.dumps({"provider": "fakeone"}))
    monkeypatch.setenv("HF_PROVIDER_CONFDIR", str(conf))
    providers = {p["name"]: p for p in describe_plugins(None)["providers"]}
    assert providers["fakeone"]["selected"] is True and providers["faketwo"]["selected"] is False
    assert providers["fakeone"]["hooks"] == ["ohfp_provision"]  # only what pluggy registers
