"""Property-based fuzzing of what Host Factory and administrators hand ohfp.

Every case runs the ``ohfp`` command in-process on the mock provider, exactly as a generated
script would (``ohfp hf <call> -f <file>``), and must give: exactly one JSON document on
stdout with a ``message``, an exit code the documentation allows for that input (0 for a
reply; 2 for bad input, 3 for bad configuration, each naming the field or file), no
traceback anywhere, and — whenever the call did not succeed — no change to the state store
or the simulated cloud.

``tests/core/test_fuzz.py`` runs a quick profile in the test suite; ``nox -s fuzz`` runs
``python -m tests.core.fuzzing --examples N`` (at least 10,000 cases in all) and prints the
counts by exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ohfp_core.cli import main
from ohfp_core.serve.wire import CALLS

TEMPLATE_IDS = ("mock-small", "mock-unlimited", "nope", "")

# -- values ---------------------------------------------------------------------------------------

_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\ud800", "\udfff", "\x00", "a" * 300, "$.x", "i-0123456789abcdef0", "req-1"]),
)
_number = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1, 2**63 - 1, 2**63, 50_000, 50_001, 1_000_000]),
)
_scalar = st.one_of(st.none(), st.booleans(), _number, _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_text, inner, max_size=5)),
    max_leaves=20,
)


def _maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a well-shaped value, sometimes anything at all."""
    return st.one_of(value, value, _json)


_machine = st.fixed_dictionaries(
    {"name": _maybe(_text)}, optional={"machineId": _maybe(_text), "extra": _json}
)
INPUTS: dict[str, st.SearchStrategy[Any]] = {
    "getAvailableTemplates": _maybe(st.just({})),
    "requestMachines": _maybe(
        st.fixed_dictionaries(
            {
                "template": _maybe(
                    st.fixed_dictionaries(
                        {"templateId": _maybe(st.sampled_from(TEMPLATE_IDS)), "machineCount": _maybe(_number)}
                    )
                )
            }
        )
    ),
    "requestReturnMachines": _maybe(
        st.fixed_dictionaries({"machines": _maybe(st.lists(_machine, max_size=4))})
    ),
    "getRequestStatus": _maybe(
        st.fixed_dictionaries(
            {
                "requests": _maybe(
                    st.lists(_maybe(st.fixed_dictionaries({"requestId": _maybe(_text)})), max_size=4)
                )
            }
        )
    ),
    "getReturnRequests": _maybe(
        st.fixed_dictionaries({}, optional={"machines": _maybe(st.lists(_machine, max_size=4))})
    ),
}
_raw = st.one_of(st.binary(max_size=200), st.sampled_from([b"", b"{", b"\xff\xfe", b"[" * 5000, b"1e999999"]))

_attribute = st.one_of(
    st.tuples(st.sampled_from(["String", "Numeric", "Boolean", "Bogus"]), _scalar).map(list), _scalar
)
_template = st.fixed_dictionaries(
    {
        "templateId": _maybe(st.sampled_from(["A", "B-1", "bad id", "x" * 65])),
        "maxNumber": _maybe(st.integers(min_value=-3, max_value=2_000_000)),
        "attributes": _maybe(
            st.fixed_dictionaries(
                {"type": _attribute, "ncpus": _attribute, "nram": _attribute}, optional={"extra": _attribute}
            )
        ),
    },
    optional={"availableNumber": _number, "imageId": _text},
)
CONFIGS: dict[str, st.SearchStrategy[Any]] = {
    "mockinstprov_templates.json": _maybe(
        st.fixed_dictionaries({"templates": _maybe(st.lists(_template, max_size=3))})
    ),
    "ohfp.json": _maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "provider": _maybe(st.sampled_from(["mock", "aws", "nope"])),
                "storage": _maybe(st.sampled_from(["sqlite", "nope"])),
                "logLevel": _maybe(st.sampled_from(["debug", "INFO", "loud"])),
                "mock": _json,
                "colour": _json,
            },
        )
    ),
    "mockinstprov_config.json": _maybe(
        st.fixed_dictionaries(
            {},
            optional={
                "MOCK_BOOT_SECONDS": _number,
                "MOCK_SEED": _number,
                "MOCK_FAIL_RATE": _number,
                "MOCK_UNKNOWN": _json,
            },
        )
    ),
}


# -- running one case -------------------------------------------------------------------------------


class Harness:
    """A mock provider instance in ``root`` and the counts of exit codes seen, per target."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "conf"
        self.conf.mkdir(parents=True, exist_ok=True)
        self.counts: dict[str, Counter[int]] = {}
        self.env = {
            "HF_PROVIDER_NAME": "mockinst",
            "HF_PROVIDER_CONFDIR": str(self.conf),
            "HF_PROVIDER_WORKDIR": str(root / "work"),
            "HF_PROVIDER_LOGDIR": str(root / "log"),
        }
        self.reset_config()

    def reset_config(self) -> None:
        for path in self.conf.iterdir():
            path.unlink()
        (self.conf / "mockinstprov_config.json").write_text(json.dumps({"MOCK_BOOT_SECONDS": 0}))

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        saved = {key: os.environ.get(key) for key in (*self.env, "OHFP_PROVIDER", "OHFP_LOG_LEVEL")}
        os.environ.update(self.env)
        os.environ.pop("OHFP_PROVIDER", None)
        os.environ["OHFP_LOG_LEVEL"] = "WARNING"
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def state(self) -> tuple[Any, ...]:
        """Rows of the state store and the simulated cloud (what a failed call must not change)."""
        found: list[Any] = []
        for name in ("ohfp-state.sqlite3", "mock-cloud.sqlite3"):
            path = self.root / "work" / name
            if not path.exists():
                found.append(None)
                continue
            with contextlib.closing(sqlite3.connect(path)) as db:
                tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                found.append(
                    tuple(
                        tuple(db.execute(f"SELECT * FROM {t} ORDER BY 1"))
                        for t in sorted(tables)
                        if t != "meta"
                    )
                )
        return tuple(found)

    def run(
        self, target: str, call: str, payload: bytes, allowed: frozenset[int], names: tuple[str, ...] = ()
    ) -> int:
        """One case: the call's checks as the module docstring states them."""
        path = self.root / "in.json"
        path.write_bytes(payload)
        before = self.state()
        out, err = io.StringIO(), io.StringIO()
        with self.environment(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["hf", call, "-f", str(path), "--provider", "mock"])
        reply = json.loads(out.getvalue())  # exactly one JSON document, nothing else
        assert isinstance(reply, dict) and isinstance(reply.get("message", ""), str), reply
        assert code in allowed, (code, reply)
        assert "Traceback" not in out.getvalue() + err.getvalue()
        if code != 0:
            text = " ".join([reply["message"], *map(str, reply.get("errors", []))])
            named = "$" in text or "file" in text or any(name in text for name in names)
            assert reply["message"] and reply["errors"] and named, reply
            assert self.state() == before, f"a failed {call} changed state: {reply}"
        self.counts.setdefault(target, Counter())[code] += 1
        return code


INPUT_CODES = frozenset({0, 2})
CONFIG_CODES = frozenset({0, 3})
_SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": False,
    "suppress_health_check": list(HealthCheck),
}


def _input_case(harness: Harness, call: str, examples: int) -> Callable[[], None]:
    @settings(max_examples=examples, **_SETTINGS)  # type: ignore[arg-type]
    @given(document=INPUTS[call], raw=st.one_of(st.none(), _raw))
    def case(document: Any, raw: bytes | None) -> None:
        payload = raw if raw is not None else json.dumps(document).encode("utf-8", "surrogatepass")
        harness.run(f"input:{call}", call, payload, INPUT_CODES)

    return case


def _config_case(harness: Harness, name: str, examples: int) -> Callable[[], None]:
    @settings(max_examples=examples, **_SETTINGS)  # type: ignore[arg-type]
    @given(document=CONFIGS[name])
    def case(document: Any) -> None:
        harness.reset_config()
        (harness.conf / name).write_bytes(json.dumps(document).encode("utf-8", "surrogatepass"))
        keys = tuple(document) if isinstance(document, dict) else ()
        harness.run(f"config:{name}", "getAvailableTemplates", b"{}", CONFIG_CODES, keys)

    return case


def fuzz_inputs(harness: Harness, examples: int) -> None:
    """Every HF call with generated documents and raw bytes."""
    for call in CALLS:
        _input_case(harness, call, examples)()


def fuzz_configs(harness: Harness, examples: int) -> None:
    """The templates file, ohfp.json and the provider config, read by getAvailableTemplates."""
    for name in CONFIGS:
        _config_case(harness, name, examples)()
    harness.reset_config()


TARGETS: dict[str, Callable[[Harness, int], None]] = {"inputs": fuzz_inputs, "configs": fuzz_configs}


def main_fuzz(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz ohfp's HF inputs and configuration files.")
    parser.add_argument("--examples", type=int, default=1250, help="cases per call or file (default 1250)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ohfp-fuzz-") as tmp:
        harness = Harness(Path(tmp))
        for run in TARGETS.values():
            run(harness, args.examples)
    total: Counter[int] = Counter()
    print(f"{'target':45} {'cases':>7}  by exit code")
    for target, counts in sorted(harness.counts.items()):
        total.update(counts)
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))
        print(f"{target:45} {sum(counts.values()):>7}  {codes}")
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(total.items()))
    print(f"{'all':45} {sum(total.values()):>7}  {codes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main_fuzz())
