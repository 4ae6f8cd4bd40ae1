"""MOCK_CLOUD_DIR: instances with different work dirs share one simulated cloud."""

from __future__ import annotations

from pathlib import Path

import pytest

from ohfp_core.errors import ConfigError
from ohfp_core.models import CloudRequest, ProviderContext, RequestKind, Template
from ohfp_mock.provider import make_provider


def provider(root: Path, cloud: Path | None) -> object:
    config = {"MOCK_BOOT_SECONDS": 0, **({"MOCK_CLOUD_DIR": str(cloud)} if cloud else {})}
    return make_provider(
        ProviderContext(
            instance="m", provider_type="mock", confdir=root, workdir=root / "work", config=config
        )
    )


def test_two_work_dirs_naming_one_cloud_dir_see_the_same_machines(tmp_path: Path) -> None:
    cloud = tmp_path / "cloud"
    host_a, host_b = provider(tmp_path / "a", cloud), provider(tmp_path / "b", cloud)
    template = Template(template_id="mock-small", max_number=10)
    made = host_a.ohfp_provision(request_id="req-1", template=template, count=2)  # type: ignore[attr-defined]
    request = CloudRequest(request_id="req-1", kind=RequestKind.ACQUIRE, template_id="mock-small",
                           machine_count=2, handle=dict(made.handle))  # fmt: skip
    seen = host_b.ohfp_machine_status(requests=[request])["req-1"]  # type: ignore[attr-defined]
    assert {m.machine_id for m in seen.machines} == {m.machine_id for m in made.machines}
    assert (cloud / "mock-cloud.sqlite3").is_file()
    assert not (tmp_path / "a" / "work" / "mock-cloud.sqlite3").exists()
    alone = provider(tmp_path / "c", None)
    unseen = alone.ohfp_machine_status(requests=[request]).get("req-1")  # type: ignore[attr-defined]
    assert unseen is None or unseen.machines == (), "a work dir of its own is a cloud of its own"


def test_a_cloud_dir_that_is_not_a_path_is_refused(tmp_path: Path) -> None:
    context = ProviderContext(
        instance="m", provider_type="mock", confdir=tmp_path, workdir=tmp_path, config={"MOCK_CLOUD_DIR": 3}
    )
    with pytest.raises(ConfigError, match="MOCK_CLOUD_DIR: must be a directory path"):
        make_provider(context)
