"""End-to-end fixtures: ohfp installed as a user installs it, driven as Host Factory drives it.

One virtualenv per test session holds the distributions built from this checkout
(wheels, not editable, bytecode compiled). Each HF call runs the generated ``<call>.sh -f
<input.json>`` in a new process whose environment is only ``PATH=/usr/bin:/bin`` and the
``HF_*`` variables (plus what a test adds on purpose), exactly what Host Factory gives it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

if TYPE_CHECKING:
    from .aws_account import Account

REPO = Path(__file__).resolve().parents[2]
SOURCES = tuple(sorted(p.parent.name for p in REPO.glob("*/pyproject.toml")))
"""Every distribution of the checkout (a directory of the repository's root with a
``pyproject.toml``), so a new one is installed without anyone listing it here."""
DISTRIBUTIONS = tuple(
    tomllib.loads((REPO / source / "pyproject.toml").read_text())["project"]["name"] for source in SOURCES
)
BARE_PATH = "/usr/bin:/bin"
AWS_REGION = "us-east-1"
FAKE_AWS_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CALL_TIMEOUT = 120


def _uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    try:
        uv = importlib.import_module("uv")  # typed or not, wherever the tests run
    except ImportError:
        pytest.fail("the end-to-end tests need uv (pip install uv) to build their virtualenv")
    return [str(uv.find_uv_bin())]


@attrs.frozen
class Installation:
    """A virtualenv with ohfp installed from the checkout, and its generated HF scripts.

    Its commands and scripts find their resident service (``ohfp serve``, started by the
    first call that finds none) in a runtime directory of their own, ``<venv>-run``:
    ``OHFP_RUNTIME_DIR`` is in every environment they get; :meth:`stop_service` stops it.
    """

    venv: Path

    @property
    def runtime(self) -> Path:
        return self.venv.with_name(f"{self.venv.name}-run")

    @property
    def base_env(self) -> dict[str, str]:
        return {"PATH": BARE_PATH, "OHFP_RUNTIME_DIR": str(self.runtime)}

    def stop_service(self) -> None:
        """Stop the installation's service, if one runs, and wait until it has exited."""
        self.run(self.ohfp, "serve", "--stop")

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def ohfp(self) -> Path:
        return self.venv / "bin" / "ohfp"

    def run(
        self, *args: str | Path, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the installation with a bare environment (plus ``env``)."""
        return subprocess.run(
            [str(a) for a in args],
            env={**self.base_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def scripts(self, provider: str, directory: Path) -> Path:
        """``ohfp hf scripts --provider PROVIDER DIRECTORY`` (asserting it worked)."""
        done = self.run(self.ohfp, "hf", "scripts", "--provider", provider, directory)
        assert done.returncode == 0, done.stdout + done.stderr
        return directory


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """Every ohfp distribution built from the checkout into a fresh virtualenv (the
    extension plugins and storage backends installed but not enabled: they must change
    nothing). Its service is stopped at the end of the session."""
    made = install(tmp_path_factory.mktemp("ohfp-venv"))
    yield made
    made.stop_service()


def install(venv: Path, *extra: Path) -> Installation:
    """A new virtualenv at ``venv`` with the distributions built from the checkout (and the
    test-only distributions ``extra``)."""
    uv = _uv()
    env = {**os.environ, "UV_COMPILE_BYTECODE": "1"}
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(
        [*uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(venv)],
        check=True,
        env=env,
    )
    refresh = [arg for dist in DISTRIBUTIONS for arg in ("--reinstall-package", dist)]
    subprocess.run(
        [*uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *refresh]
        + [str(REPO / source) for source in SOURCES]
        + [str(path) for path in extra],
        check=True,
        env=env,
    )
    return Installation(venv)


@pytest.fixture(scope="session")
def crash_installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    """The distributions plus the test-only crash plugin (``tests/e2e/crashkit``), in a
    virtualenv of their own so no other test runs with it."""
    made = install(tmp_path_factory.mktemp("ohfp-crash-venv"), REPO / "tests" / "e2e" / "crashkit")
    yield made
    made.stop_service()


@pytest.fixture(scope="session")
def mock_scripts(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five scripts (``.sh`` and ``.bat``) for the mock provider."""
    return installation.scripts("mock", tmp_path_factory.mktemp("mock-scripts"))


@attrs.frozen
class Reply:
    """One HF call's outcome; ``doc`` is stdout parsed as exactly one JSON document."""

    code: int
    stdout: str
    stderr: str
    doc: Any

    @classmethod
    def of(cls, done: subprocess.CompletedProcess[str]) -> Reply:
        try:
            doc = json.loads(done.stdout)  # raises on anything but one JSON document
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"stdout is not one JSON document ({exc}):\n{done.stdout}\nstderr:\n{done.stderr}"
            ) from None
        return cls(done.returncode, done.stdout, done.stderr, doc)

    def ok(self) -> Any:
        """The reply document of a call that must have succeeded."""
        assert self.code == 0, f"exit {self.code}: {self.stdout}\nstderr:\n{self.stderr}"
        return self.doc


@attrs.define
class HostFactory:
    """A provider instance laid out as Host Factory lays it out, and the calls HF makes."""

    installation: Installation
    scripts: Path
    root: Path
    name: str
    env_extra: dict[str, str] = attrs.field(factory=dict)

    @property
    def confdir(self) -> Path:
        return self.root / "conf"

    @property
    def workdir(self) -> Path:
        return self.root / "work"

    @property
    def logdir(self) -> Path:
        return self.root / "log"

    def env(self) -> dict[str, str]:
        return {
            **self.installation.base_env,
            "HF_PROVIDER_NAME": self.name,
            "HF_PROVIDER_CONFDIR": str(self.confdir),
            "HF_PROVIDER_WORKDIR": str(self.workdir),
            "HF_PROVIDER_LOGDIR": str(self.logdir),
            **self.env_extra,
        }

    def write_config(self, suffix: str, document: Any) -> Path:
        """``<instance>prov_<suffix>.json`` in the config dir."""
        path = self.confdir / f"{self.name}prov_{suffix}.json"
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        return path

    def write_aws_config(self, endpoint: str, **extra: Any) -> Path:
        """IBM's ``awsprov_config.json`` for an AWS endpoint on loopback, as an installation
        writes it: the region, the endpoint and a shared-credentials file (fake keys, 0600);
        ``extra`` adds keys (``AWS_REQUEST_RETRY_ATTEMPTS=0`` …). The calls' environment
        holds nothing of AWS."""
        credentials = self.confdir / "credentials"
        credentials.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in FAKE_AWS_KEYS.items()))
        credentials.chmod(0o600)
        config = {
            "AWS_REGION": AWS_REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_CREDENTIAL_FILE": str(credentials),
            **extra,
        }
        return self.write_config("config", config)

    def input_file(self, payload: Any) -> Path:
        """HF's temporary input file: ``payload`` as JSON, or as is when it is a str."""
        fd, name = tempfile.mkstemp(prefix="hf_in_", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload if isinstance(payload, str) else json.dumps(payload))
        return Path(name)

    def command(self, call: str, payload: Any) -> list[str]:
        return [str(self.scripts / f"{call}.sh"), "-f", str(self.input_file(payload))]

    def call(self, call: str, payload: Any = None) -> Reply:
        """Run ``<call>.sh -f <file>`` in a new process, as HF does (``{}`` when no payload)."""
        return Reply.of(self.run(call, {} if payload is None else payload))

    def run(
        self, call: str, payload: Any, file: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``<call>.sh -f <file>`` with variables added to its environment (the input
        written to ``file`` when given); its exit code and output as they are."""
        command = self.command(call, payload)
        if file is not None:
            file.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
            command[-1] = str(file)
        return subprocess.run(
            command,
            env={**self.env(), **env},
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd=self.root,
        )

    def start(self, call: str, payload: Any) -> subprocess.Popen[str]:
        """Start a call without waiting (for overlapping calls); see :meth:`finish`."""
        return self.start_with(call, payload)

    def start_with(self, call: str, payload: Any, **env: str) -> subprocess.Popen[str]:
        """:meth:`start` with variables added to the call's environment."""
        return subprocess.Popen(
            self.command(call, payload),
            env={**self.env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=self.root,
        )

    @staticmethod
    def finish(process: subprocess.Popen[str]) -> Reply:
        """Wait for a call made with :meth:`start`."""
        stdout, stderr = process.communicate(timeout=CALL_TIMEOUT)
        return Reply.of(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))

    def status(self, *request_ids: str) -> list[dict[str, Any]]:
        reply = self.call("getRequestStatus", {"requests": [{"requestId": i} for i in request_ids]}).ok()
        entries: list[dict[str, Any]] = reply["requests"]
        return entries

    def mock(self, *args: str) -> Any:
        """``python -m ohfp_mock --workdir WORKDIR ARGS`` (the mock cloud's control CLI)."""
        done = self.installation.run(
            self.installation.python, "-I", "-m", "ohfp_mock", "--workdir", self.workdir, *args
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)

    def state_files(self) -> list[Path]:
        return sorted(p for p in self.workdir.rglob("*") if p.is_file())


def make_instance(installation: Installation, scripts: Path, root: Path, name: str) -> HostFactory:
    hf = HostFactory(installation, scripts, root, name)
    for directory in (hf.confdir, hf.workdir, hf.logdir):
        directory.mkdir(parents=True, exist_ok=True)
    return hf


MOCK_CONFIG = {"MOCK_BOOT_SECONDS": 30, "MOCK_TERMINATE_SECONDS": 20, "MOCK_SEED": 7}
"""Slow simulated boots: nothing finishes unless a test advances the mock clock."""


@pytest.fixture
def mock_hf(installation: Installation, mock_scripts: Path, tmp_path: Path) -> Iterator[HostFactory]:
    """A ``mockinst`` instance of the mock provider with its built-in demo templates."""
    hf = make_instance(installation, mock_scripts, tmp_path, "mockinst")
    hf.write_config("config", MOCK_CONFIG)
    yield hf


@pytest.fixture(scope="module", autouse=True)
def moto_like_aws() -> Iterator[None]:
    """The moto of this process (the servers the AWS tests run here) doing what AWS does where
    ohfp relies on it: :mod:`testbeds.moto_as_aws`."""
    from testbeds.moto_as_aws import like_aws

    with like_aws():
        yield


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    """A hooked moto server (one per test module) with a VPC: two subnets, a security group."""
    import urllib.request

    from testbeds.hooked_moto import HookedMotoServer

    from .aws_account import Account, add_network

    server = HookedMotoServer()
    server.start()
    try:
        # moto's backends belong to this process, whichever server serves them: start this
        # module's account empty, whatever earlier modules left in theirs.
        reset = urllib.request.Request(f"{server.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310
        subnets, group = add_network(server.endpoint, "10.1", "crash")
        yield Account(server, subnets, group)
    finally:
        server.stop()


@pytest.fixture
def hooked(account: Account) -> Iterator[Account]:
    """The account, its server's hook cleared after the test."""
    yield account
    account.server.app.hook = None
