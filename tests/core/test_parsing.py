"""One strict cattrs path from JSON to attrs classes, with errors in the user's spelling."""

from __future__ import annotations

import attrs
import pytest

from ohfp_core.errors import ConfigError
from ohfp_core.parsing import between, key, make_converter, rule, structure, unknown_key


@attrs.frozen(kw_only=True)
class Limit:
    units: int = attrs.field(metadata=key("maxUnits"), validator=rule(between(0, 10)))


@attrs.frozen(kw_only=True)
class Doc:
    limits: dict[str, Limit] = attrs.field(factory=dict)
    names: tuple[str, ...] = ()


def _problems(converter: object, data: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as raised:
        structure(data, Doc, converter=converter, error=ConfigError, message="bad")  # type: ignore[arg-type]
    return raised.value.problems


def test_errors_name_every_field_in_the_users_spelling() -> None:
    converter = make_converter(forbid_extra_keys=True)
    assert _problems(
        converter, {"limits": {"a": {"maxUnits": 11}, "b x": {"maxUnits": "3"}}, "extra": 1}
    ) == (
        "$.limits.a.maxUnits: must be 0..10, got 11",
        '$.limits["b x"].maxUnits: expected an integer, got "3"',
        "$.extra: unknown key; known: limits, names",
    )


@pytest.mark.parametrize(
    ("key", "known", "message"),
    [
        ("vmTyp", ["vmType", "imageId", "maxNumber"], "unknown key; did you mean 'vmType'?"),
        ("logLvl", ["logLevel", "provider", "storage"], "unknown key; did you mean 'logLevel'?"),
        ("VMTYPE", ["vmType", "imageId"], "unknown key; did you mean 'vmType'?"),
        ("colour", ["b", "a"], "unknown key; known: a, b"),
        # A shared prefix alone is no likeness: AWS_SECRET is not a misspelt AWS_REGION.
        (
            "AWS_SECRET",
            ["AWS_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_PROXY_HOST"],
            "unknown key; known: AWS_ENDPOINT_URL, AWS_PROFILE, AWS_PROXY_HOST, AWS_REGION",
        ),
        (
            "zzz",
            [f"key{n}" for n in range(30)],
            "unknown key (none of the 30 keys known here is close to it)",
        ),
        ("zzz", [], "unknown key"),
    ],
)
def test_an_unknown_key_gets_the_closest_known_key_not_a_list_of_thirty(
    key: str, known: list[str], message: str
) -> None:
    assert unknown_key(key, known) == message


def test_collections_stay_strict_however_often_types_are_looked_up() -> None:
    """A string is never walked as a list, nor a list read as an object, even after the
    converter's lookup cache was cleared by another registration."""
    converter = make_converter(forbid_extra_keys=True)
    assert structure(
        {"limits": {"a": {"maxUnits": 1}}}, Doc, converter=converter, error=ConfigError, message="x"
    )
    # Another mapping type: cattrs' own mapping factory would register its hook directly and
    # clear the lookup cache, so Doc's structuring is built again.
    assert converter.structure({"a": 1}, dict[str, int]) == {"a": 1}
    assert _problems(converter, {"limits": [], "names": "abc"}) == (
        "$.limits: expected an object, got a list",
        "$.names: expected a list, got a string",
    )
