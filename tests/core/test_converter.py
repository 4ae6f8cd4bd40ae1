"""Reading HF's input documents and templates, writing replies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ohfp_core import converter
from ohfp_core.errors import ConfigError, InputError
from ohfp_core.models import Machine, MachineResult, MachineState, PriceType
from ohfp_core.templates import template_from_json


def problems_of(exc: pytest.ExceptionInfo[InputError]) -> list[str]:
    return list(exc.value.problems)


def test_request_machines_ok() -> None:
    assert converter.parse_request_machines({"template": {"templateId": "T-1", "machineCount": 3}}) == (
        "T-1",
        3,
    )


def test_request_machines_extra_keys_are_ignored() -> None:
    data = {"template": {"templateId": "T", "machineCount": 1, "userData": "x"}, "rc_account": "a"}
    assert converter.parse_request_machines(data) == ("T", 1)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"template": {"templateId": "T", "machineCount": 0}}, "$.template.machineCount: must be ≥ 1, got 0"),
        (
            {"template": {"templateId": "T", "machineCount": "3"}},
            "$.template.machineCount: expected an integer",
        ),
        (
            {"template": {"templateId": "T", "machineCount": 1.5}},
            "$.template.machineCount: expected an integer",
        ),
        ({"template": {"machineCount": 1}}, "$.template.templateId: required field missing"),
        ({"template": {"templateId": "a b", "machineCount": 1}}, "$.template.templateId: must be 1 to 64"),
        ({}, "$.template: required field missing"),
        ([], "$: expected a JSON object"),
    ],
)
def test_request_machines_errors_name_the_field(data: object, expected: str) -> None:
    with pytest.raises(InputError) as exc:
        converter.parse_request_machines(data)
    assert any(p.startswith(expected) for p in problems_of(exc)), problems_of(exc)


def test_machines_input() -> None:
    parsed = converter.parse_machines(
        {"machines": [{"name": "h1", "machineId": "i-1"}, {"name": "h2"}]}, "x", required=True
    )
    assert [(m.name, m.machine_id) for m in parsed] == [("h1", "i-1"), ("h2", None)]
    assert converter.parse_machines({}, "x", required=False) == []
    with pytest.raises(InputError) as exc:
        converter.parse_machines({"machines": [{"machineId": "i-1"}]}, "x", required=True)
    assert problems_of(exc) == ["$.machines[0].name: required field missing"]
    with pytest.raises(InputError):
        converter.parse_machines({}, "x", required=True)


def test_request_ids_both_forms_and_malformed_entries() -> None:
    assert converter.parse_request_ids({"requests": [{"requestId": "a"}, {"requestId": "b"}]}) == [
        ("a", True),
        ("b", True),
    ]
    assert converter.parse_request_ids({"requests": {"requestId": "a"}}) == [("a", True)]
    assert converter.parse_request_ids({"requests": [{"requestId": 7}, {}, "x"]}) == [
        ("7", False),
        ("", False),
        ("", False),
    ]
    with pytest.raises(InputError):
        converter.parse_request_ids({"requests": 5})


def test_read_input(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text("")
    assert converter.read_input(path) == {}
    path.write_text('{"a": 1}')
    assert converter.read_input(path) == {"a": 1}
    path.write_text("{oops")
    with pytest.raises(InputError) as exc:
        converter.read_input(path)
    assert "line 1 column 2" in problems_of(exc)[0]
    with pytest.raises(InputError, match="cannot read"):
        converter.read_input(tmp_path / "missing.json")


def test_template_attributes_as_pairs_or_scalars() -> None:
    entry = {
        "templateId": "T",
        "maxNumber": 5,
        "attributes": {"type": "X86_64", "ncpus": 2, "nram": ["Numeric", "1024"], "gpu": True, "mem": 1.0},
        "imageId": "ami-1",
    }
    template = template_from_json(entry, "$.templates[0]")
    reply = converter.template_json(template)
    assert reply["attributes"] == {
        "type": ["String", "X86_64"],
        "ncpus": ["Numeric", "2"],
        "nram": ["Numeric", "1024"],
        "gpu": ["Boolean", "true"],
        "mem": ["Numeric", "1"],
    }
    assert template.fields == {"imageId": "ami-1"}
    assert "imageId" not in reply


def test_template_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as exc:
        template_from_json(
            {"templateId": "T", "maxNumber": -2, "attributes": {"ncpus": ["Numbr", "1"]}}, "$.templates[3]"
        )
    text = " | ".join(exc.value.problems)
    assert "$.templates[3].maxNumber" in text
    assert "$.templates[3].attributes.ncpus[0]" in text


def test_machine_json_uses_hf_spelling() -> None:
    machine = Machine(
        machine_id="i-1",
        name="ip-10-0-0-1.ec2.internal",
        state=MachineState.RUNNING,
        private_ip="10.0.0.1",
        launch_time=1734619942,
        instance_type="t3.micro",
        price_type=PriceType.SPOT,
    )
    reply = converter.machine_json(machine, MachineResult.SUCCEED)
    assert reply == {
        "machineId": "i-1",
        "name": "ip-10-0-0-1.ec2.internal",
        "result": "succeed",
        "status": "running",
        "privateIpAddress": "10.0.0.1",
        "publicIpAddress": None,
        "launchtime": 1734619942,
        "message": "",
        "priceType": "spot",
        "instanceType": "t3.micro",
    }
    json.dumps(reply)
