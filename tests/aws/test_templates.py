"""IBM's AWS template fields: validation (problems name the key) and parsing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ohfp_aws.launch.spec import instance_launch_data, run_instances_params
from ohfp_aws.launch.template_fields import parse_template, validate_fields, validate_template
from ohfp_core.errors import ConfigError
from ohfp_core.models import Template

DATA = Path(__file__).with_name("data")
CORE_KEYS = ("templateId", "maxNumber", "attributes")
BASE = {"imageId": "ami-0123456789abcdef0", "vmType": "t3.micro"}


def sample_templates() -> list[Template]:
    raw = json.loads((DATA / "awsprov_templates.json").read_text())["templates"]
    return [
        Template(
            template_id=t["templateId"],
            max_number=t["maxNumber"],
            fields={k: v for k, v in t.items() if k not in CORE_KEYS},
        )
        for t in raw
    ]


def problems(**fields: Any) -> dict[str, str]:
    return {p.path: p.message for p in validate_fields({**BASE, **fields})}


def test_ibm_samples_are_valid() -> None:
    for template in sample_templates():
        assert validate_template(template) == [], template.template_id


def test_samples_parse() -> None:
    by_id = {t.template_id: parse_template(t) for t in sample_templates()}
    ondemand = by_id["OnDemand-t3-micro"]
    assert ondemand.vm_types == {"t3.micro": 1}
    assert ondemand.subnet_ids == ("subnet-0a1b2c3d",)
    assert ondemand.instance_tags == {"team": "grid", "costcenter": "1234"}
    assert (ondemand.root_device_volume_size, ondemand.volume_type) == (30, "gp3")
    spot = by_id["Spot-mixed"]
    assert spot.price_type == "spot"
    assert spot.subnet_ids == ("subnet-0a1b2c3d", "subnet-0e1f2a3b")  # comma-separated string
    assert spot.vm_types == {"m5.large": 1, "m5a.large": 1, "m6i.large": 1}
    assert spot.image_id is not None and spot.image_id.startswith("/aws/service/")
    fleet = by_id["Fleet-heterogeneous"]
    assert fleet.subnet_ids == ("subnet-0a1b2c3d", "subnet-0e1f2a3b")  # array
    assert (fleet.provider_api, fleet.fleet_type, fleet.percent_on_demand) == ("EC2Fleet", "instant", 25)


@pytest.mark.parametrize(
    ("fields", "path", "fragment"),
    [
        ({"priceType": "cheap"}, "priceType", "must be one of ondemand, spot, heterogeneous"),
        ({"imageId": "centos"}, "imageId", "AMI id"),
        ({"vmType": "large"}, "vmType", "instance type"),
        ({"vmType": None, "vmTypes": {"m5.large": 0}}, "vmTypes", "weight must be an integer ≥ 1"),
        ({"vmTypes": {"m5.large": 1}}, "vmTypes", "not both"),
        ({"subnetId": "subnet-1,vpc-2"}, "subnetId", "'vpc-2' is not a subnet-"),
        ({"subnetId": 7}, "subnetId", "comma-separated"),
        ({"securityGroupIds": ["default"]}, "securityGroupIds", "not a sg-"),
        ({"rootDeviceVolumeSize": 0}, "rootDeviceVolumeSize", "must be 1..16384, got 0"),
        ({"rootDeviceVolumeSize": 16385}, "rootDeviceVolumeSize", "must be 1..16384"),
        ({"rootDeviceVolumeSize": True}, "rootDeviceVolumeSize", "must be an integer"),
        ({"volumeType": "st1"}, "volumeType", "gp2, gp3, io1, io2, standard"),
        ({"volumeType": "io1"}, "iops", "required when volumeType is io1"),
        ({"volumeType": "io2", "iops": 50}, "iops", "must be 100..256000 for io2"),
        ({"volumeType": "gp2", "iops": 3000}, "iops", "not allowed with volumeType gp2"),
        ({"instanceTags": "team=grid;oops"}, "instanceTags", "'oops' is not key=value"),
        ({"instanceTags": "aws:x=1"}, "instanceTags", "reserved"),
        ({"percentOnDemand": 101}, "percentOnDemand", "must be 0..100"),
        ({"allocationStrategy": "cheapest"}, "allocationStrategy", "capacityOptimized"),
        ({"allocationStrategyOnDemand": "capacityOptimized"}, "allocationStrategyOnDemand", "prioritized"),
        ({"maxSpotPrice": "free"}, "maxSpotPrice", "positive price"),
        ({"providerApi": "Lambda"}, "providerApi", "EC2Fleet, ASG, SpotFleet, RunInstances"),
        ({"fleetType": "forever"}, "fleetType", "instant, request, maintain"),
        ({"providerApi": "ASG", "fleetType": "instant"}, "fleetType", "not used by providerApi ASG"),
        ({"userDataScript": "/nonexistent/boot.sh"}, "userDataScript", "cannot read '/nonexistent/boot.sh'"),
        ({"imageID": "ami-1"}, "imageID", "unknown template field"),
        ({"imageId": None}, "imageId", "required"),
        ({"vmType": None}, "vmType", "required"),
    ],
)
def test_problems_name_the_field(fields: dict[str, Any], path: str, fragment: str) -> None:
    found = problems(**fields)
    assert path in found, found
    assert fragment in found[path]


def test_max_number_range() -> None:
    template = Template(template_id="T", max_number=1_000_001, fields=BASE)
    assert [p.path for p in validate_template(template)] == ["maxNumber"]


def test_launch_template_replaces_image_and_type() -> None:
    assert validate_fields({"launchTemplateId": "lt-0123"}) == []


def test_ibm_passthrough_keys_are_accepted() -> None:
    assert problems(pgrpName=None, onDemandCapacity=0) == {}


def test_user_data_is_the_file_content(tmp_path: Path) -> None:
    (tmp_path / "boot.sh").write_text("#!/bin/sh\necho hi\n")
    template = Template(template_id="T", max_number=5, fields={**BASE, "userDataScript": "boot.sh"})
    assert parse_template(template, base_dir=tmp_path).user_data == "#!/bin/sh\necho hi\n"
    assert validate_fields(template.fields, tmp_path) == []
    assert [p.path for p in validate_fields(template.fields, tmp_path / "elsewhere")] == ["userDataScript"]
    (tmp_path / "big.sh").write_bytes(b"x" * 20000)
    assert "at most 16384" in problems(userDataScript=str(tmp_path / "big.sh"))["userDataScript"]


def test_parse_rejects_invalid_templates() -> None:
    with pytest.raises(ConfigError) as info:
        parse_template(Template(template_id="T", max_number=5, fields={**BASE, "volumeType": "io1"}))
    assert info.value.problems == ("iops: required when volumeType is io1",)


def test_launch_data_shape(tmp_path: Path) -> None:
    (tmp_path / "boot.sh").write_text("echo hi")
    fields = {
        **BASE,
        "keyName": "hf-key",
        "securityGroupIds": "sg-1,sg-2",
        "rootDeviceVolumeSize": 40,
        "volumeType": "io2",
        "iops": 1000,
        "instanceProfile": "arn:aws:iam::123456789012:instance-profile/hf",
        "userDataScript": "boot.sh",
    }
    template = parse_template(Template(template_id="T", max_number=5, fields=fields), base_dir=tmp_path)
    data = instance_launch_data(template, "ami-9", {"a": "b"}, root_device="/dev/sda1")
    assert data == {
        "ImageId": "ami-9",
        "KeyName": "hf-key",
        "SecurityGroupIds": ["sg-1", "sg-2"],
        "BlockDeviceMappings": [
            {
                "DeviceName": "/dev/sda1",
                "Ebs": {"DeleteOnTermination": True, "VolumeSize": 40, "VolumeType": "io2", "Iops": 1000},
            }
        ],
        "IamInstanceProfile": {"Arn": "arn:aws:iam::123456789012:instance-profile/hf"},
        "UserData": base64.b64encode(b"echo hi").decode(),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "a", "Value": "b"}]},
            {"ResourceType": "volume", "Tags": [{"Key": "a", "Value": "b"}]},
        ],
    }
    # botocore base64-encodes RunInstances' UserData itself: it gets the plain text.
    assert run_instances_params(template, "ami-9", {})["UserData"] == "echo hi"


def test_launch_data_minimal() -> None:
    template = parse_template(
        Template(template_id="T", max_number=5, fields={**BASE, "instanceProfile": "hf-profile"})
    )
    assert instance_launch_data(template, "ami-9", {}) == {
        "ImageId": "ami-9",
        "IamInstanceProfile": {"Name": "hf-profile"},
    }


def test_large_grids_are_not_refused() -> None:
    """IBM's plugin stops maxNumber at 10000; large grids go beyond, up to core's bound."""
    assert validate_template(Template(template_id="Big", max_number=20000, fields=BASE)) == []
