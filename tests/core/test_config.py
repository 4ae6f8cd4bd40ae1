"""HF's environment, IBM's file names and ohfp's own settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ohfp_core import config
from ohfp_core.errors import ConfigError
from ohfp_core.templates import load_templates


def test_paths_from_hf_environment_with_ibm_defaults() -> None:
    paths = config.resolve_paths(
        {"HF_PROVIDER_NAME": "awsinst", "HF_CONFDIR": "/c", "HF_WORKDIR": "/w", "HF_LOGDIR": "/l"}
    )
    assert paths.confdir == Path("/c/providers/awsinst")
    assert paths.workdir == Path("/w/providers/awsinst")
    assert paths.logdir == Path("/l")
    explicit = config.resolve_paths(
        {
            "HF_PROVIDER_NAME": "x",
            "HF_PROVIDER_CONFDIR": "/pc",
            "HF_PROVIDER_WORKDIR": "/pw",
            "HF_CONFDIR": "/c",
        }
    )
    assert (explicit.confdir, explicit.workdir, explicit.logdir) == (Path("/pc"), Path("/pw"), None)


def test_no_workdir_is_a_config_error() -> None:
    paths = config.resolve_paths({})
    with pytest.raises(ConfigError, match="HF_PROVIDER_WORKDIR"):
        config.provider_context("mock", paths, config.Settings(), {})


def test_config_file_instance_name_first_then_type(tmp_path: Path) -> None:
    (tmp_path / "awsprov_config.json").write_text('{"AWS_REGION": "eu-west-1"}')
    paths = config.Paths(instance="awsinst", confdir=tmp_path, workdir=tmp_path / "w", logdir=None)
    ctx = config.provider_context("aws", paths, config.Settings(), {})
    assert ctx.config == {"AWS_REGION": "eu-west-1"}
    (tmp_path / "awsinstprov_config.json").write_text('{"AWS_REGION": "us-east-2"}')
    ctx = config.provider_context("aws", paths, config.Settings(), {"HF_PROVIDER_ACTION_TIMEOUT": "30"})
    assert ctx.config == {"AWS_REGION": "us-east-2"}
    assert ctx.config_path == tmp_path / "awsinstprov_config.json"
    assert ctx.timeout_sec == 30


def test_broken_config_json_names_file_and_position(tmp_path: Path) -> None:
    (tmp_path / "mockprov_config.json").write_text('{"A": 1,}')
    paths = config.Paths(instance=None, confdir=tmp_path, workdir=tmp_path, logdir=None)
    with pytest.raises(ConfigError) as exc:
        config.provider_context("mock", paths, config.Settings(), {})
    assert "mockprov_config.json" in str(exc.value) and "line 1" in str(exc.value)


def test_settings_file(tmp_path: Path) -> None:
    (tmp_path / "ohfp.json").write_text(
        json.dumps({"provider": "aws", "logLevel": "debug", "aws": {"handlers": {}}})
    )
    settings = config.load_settings(tmp_path, ("aws", "mock"))
    assert settings.provider == "aws"
    assert settings.log_level == "DEBUG"
    assert settings.sections == {"aws": {"handlers": {}}}
    assert settings.section("mock") == {}
    assert config.load_settings(tmp_path / "nowhere", ()) == config.Settings()


def test_unknown_settings_are_reported(tmp_path: Path) -> None:
    (tmp_path / "ohfp.json").write_text(json.dumps({"logLevel": "LOUD", "storge": "sqlite"}))
    with pytest.raises(ConfigError) as exc:
        config.load_settings(tmp_path, ("mock",))
    assert any(p.startswith("$.logLevel") for p in exc.value.problems)
    assert "$.storge: unknown setting; did you mean 'storage'?" in exc.value.problems


def test_log_level_precedence() -> None:
    settings = config.Settings(log_level="WARNING")
    assert config.log_level(settings, {}, {"OHFP_LOG_LEVEL": "debug"}) == "DEBUG"
    assert config.log_level(settings, {}, {}) == "WARNING"
    propagated = {"ACCEPT_PROPAGATED_LOG_SETTING": True}
    assert config.log_level(config.Settings(), propagated, {"HF_LOGLEVEL": "LOG_DEBUG"}) == "DEBUG"
    assert config.log_level(config.Settings(), {}, {"HF_LOGLEVEL": "LOG_DEBUG"}) == "INFO"


def test_templates_file_duplicates_and_bad_entries(tmp_path: Path) -> None:
    from ohfp_core.models import ProviderContext

    ctx = ProviderContext(instance="inst", provider_type="mock", confdir=tmp_path, workdir=tmp_path)
    assert load_templates(ctx).templates == ()
    good = {"templateId": "A", "maxNumber": 1, "attributes": {}}
    (tmp_path / "mockprov_templates.json").write_text(
        json.dumps({"templates": [good, good, {"maxNumber": "x"}]})
    )
    loaded = load_templates(ctx)
    assert [t.template_id for t in loaded.templates] == ["A"]
    problems = loaded.problems
    assert "$.templates[1].templateId: duplicate id 'A'" in problems
    assert any(p.startswith("$.templates[2].templateId") for p in problems)
    assert any(p.startswith("$.templates[2].maxNumber") for p in problems)
    (tmp_path / "mockprov_templates.json").write_text(json.dumps({"templates": "A"}))
    with pytest.raises(ConfigError) as exc:
        load_templates(ctx)
    assert exc.value.problems == ("$.templates: expected a list of templates",)
