"""Test, lint, benchmark and demo sessions for the ohfp monorepo.

Needs only Python ≥ 3.11 with ``pip install nox uv``; uv makes the virtualenvs and
installs everything else. ``nox`` alone runs ``lint``, ``tests`` and ``system``; CI runs those,
``guests`` and ``docs``.

- ``tests``: pytest over ``tests/`` but the system runs (arguments after ``--`` go to pytest).
- ``system``: the whole-system runs: crash injection, AWS on a bad day, failover between hosts.
- ``guests``: the libvirt provider with real guests under QEMU on a private libvirtd (root and
  Debian's qemu and libvirt packages; ``.ci/run`` installs them).
- ``lint``: ruff check, ruff format --check, mypy (strict, config in pyproject.toml).
- ``crash``: every HF call killed at every point (mock and each AWS API), with figures.
- ``fuzz``: property-based fuzzing of the HF inputs and config files, counts by exit code.
- ``bench``: latency per HF call (mock and AWS under a moto server), import costs, AWS API
  calls per HF call; per state store backend, HF call latency and one request's lookups
  with 1k/10k/100k machines; the libvirt provider on ``test:///default`` and with real
  guests. Prints figures; asserts nothing about time.
- ``quickstart``: the README's lifecycle demo on the mock provider.
- ``dist``: build every distribution's wheel and sdist into ``dist/`` and check them.
- ``docs``: build the reference site (mkdocs, strict) into ``site/``.

The distributions are installed as users get them (built wheels, not editable, with
bytecode compiled). uv caches a local project's build by its pyproject.toml, so each run
asks for those to be rebuilt: a reused virtualenv always runs the current source.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests", "system"]

DISTRIBUTIONS = (
    "ohfp-core",
    "ohfp-mock",
    "ohfp-aws",
    "ohfp-extras",
    "ohfp-postgresql",
    "ohfp-dynamodb",
    "ohfp-libvirt",
)
SOURCES = (
    "./ohfp_core",
    "./ohfp_mock",
    "./ohfp_aws",
    "./ohfp_extras",
    "./ohfp_postgresql",
    "./ohfp_dynamodb",
    "./ohfp_libvirt",  # libvirt-python builds against the system's libvirt (libvirt-dev, pkg-config)
)
TEST_DEPS = (
    "pytest>=8",
    "moto[server,ec2,autoscaling,ssm,sts,iam,sqs,events,servicequotas,dynamodb]>=5.1",
    "boto3>=1.34",
    "uv",  # the end-to-end tests build a user-like virtualenv with it
    "hypothesis>=6.100",  # property-based fuzzing of the HF inputs and config files
    "pytest-xdist>=3.5",  # the suite is mostly processes waiting on processes: two workers
)
# Linters pinned: a new release may add rules or change formatting under everyone's feet.
LINT_DEPS = (
    "ruff==0.17.6",
    "mypy==2.4.1",
    # ohfp-aws's AWS calls are typed by these stubs (lint only: at run time it is botocore alone);
    # pinned, as the type names mypy checks against are generated from AWS's models.
    "boto3-stubs[ec2,autoscaling,ssm,sts,iam,sqs,events,service-quotas]==1.43.126",
    "pytest>=8",
    "nox",  # noxfile.py is type-checked too
    "werkzeug",  # benchmarks/moto_counter.py serves moto with it
    "moto>=5.1",  # the tests are type-checked too
    "hypothesis>=6.100",
    "griffe>=1.0",  # tools/griffe_roles.py, the reference site's docstring extension
)

# Every HF call is a new process: without compiled bytecode each one recompiles ohfp and its
# dependencies (PYTHONDONTWRITEBYTECODE may be set in the environment).
UV_ENV = {"UV_COMPILE_BYTECODE": "1"}


def _install_ohfp(session: nox.Session, *extra: str) -> None:
    refresh = [arg for dist in DISTRIBUTIONS for arg in ("--reinstall-package", dist)]
    session.install(*refresh, *SOURCES, *extra, env=UV_ENV)


# Two workers, a test file each at a time: the files' module-scoped moto servers and
# instances stay whole, and the end-to-end files (processes waiting on processes) overlap.
PARALLEL = ("-n", "2", "--dist", "loadfile")


@nox.session
def tests(session: nox.Session) -> None:
    """pytest over tests/ (unit, conformance, moto and end-to-end through the scripts) on two
    workers, the system runs left to ``system`` and the real guests to ``guests``; posargs go
    to pytest instead (then serial unless they say ``-n``)."""
    _install_ohfp(session, *TEST_DEPS)
    session.run("pytest", *(session.posargs or [*PARALLEL, "-m", "not system and not guests and not site"]))


@nox.session
def system(session: nox.Session) -> None:
    """The whole-system runs (``-m system``): calls killed at every point (AWS sampled; all of
    them in ``crash``), AWS on a bad day, failover between two hosts (one killed at every point
    of a call), a state server that stops answering. CI runs them too."""
    _install_ohfp(session, *TEST_DEPS)
    session.run("pytest", *(session.posargs or [*PARALLEL, "-m", "system"]))


@nox.session
def guests(session: nox.Session) -> None:
    """The libvirt provider with real guests (``-m guests``): QEMU without KVM under a private
    libvirtd in a network namespace, driven through the generated scripts. One worker: the
    guests need the cores. Needs root; skipped without QEMU and libvirtd unless
    ``OHFP_REQUIRE_LIBVIRT`` is set (CI sets it)."""
    _install_ohfp(session, *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["-m", "guests", "tests/libvirt"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and strict mypy over the packages, the tests, the test beds, the
    benchmarks and tools."""
    _install_ohfp(session, *LINT_DEPS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("mypy", "noxfile.py", "benchmarks", "examples", "testbeds", "tests", "tools")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Fuzz the five HF inputs and the config files (``-- --examples N`` per target; the
    default 1250 makes 10,000 cases) and print the cases by exit code."""
    _install_ohfp(session, *TEST_DEPS)
    session.run("python", "-m", "tests.core.fuzzing", *(session.posargs or ["--examples", "1250"]))


@nox.session
def crash(session: nox.Session) -> None:
    """Kill HF calls at every point (the test suite samples the AWS ones) and print the figures."""
    _install_ohfp(session, *TEST_DEPS)
    session.run(
        "pytest",
        "-s",
        "tests/e2e/test_crash.py",
        "tests/e2e/test_crash_aws.py",
        *session.posargs,
        env={"OHFP_CRASH_EVERY_POINT": "1"},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Print latency and API-call figures (``-- --runs 15``); asserts nothing about time."""
    # The benchmarks stand on the test beds (testbeds/: moto, PostgreSQL, the libvirt lab), as the
    # tests do; testbeds.moto_as_aws patches with pytest's MonkeyPatch, bench_storage.py loads
    # with the storage kit's (ohfp_core.testing) default loader.
    _install_ohfp(
        session,
        "moto[server,ec2,autoscaling,ssm,sts,iam,sqs,events,servicequotas,dynamodb]>=5.1",
        "boto3>=1.34",
        "pytest>=8",
    )
    session.run("python", "benchmarks/bench_hf.py", *session.posargs)
    session.run("python", "benchmarks/bench_storage.py", *session.posargs)
    session.run("python", "benchmarks/bench_libvirt.py", *session.posargs)


@nox.session
def quickstart(session: nox.Session) -> None:
    """The README's copy-paste demo: one request's life on the mock provider."""
    _install_ohfp(session)
    session.run("python", "examples/quickstart.py", *session.posargs)


def _distribution_dirs() -> list[str]:
    """Every directory holding a distribution (a pyproject.toml with a [project] table)."""
    import pathlib
    import tomllib

    return sorted(
        str(path.parent)
        for path in pathlib.Path().glob("*/pyproject.toml")
        if "project" in tomllib.loads(path.read_text(encoding="utf-8"))
    )


@nox.session
def dist(session: nox.Session) -> None:
    """Build every distribution's wheel and sdist into dist/ and check them for publishing:
    ``twine check --strict`` (metadata valid, README renders) and tools/check_dists.py (LICENSE,
    py.typed, no stray files, classifiers, bounds between ohfp distributions)."""
    import pathlib
    import shutil

    session.install("twine")
    out = pathlib.Path("dist")
    shutil.rmtree(out, ignore_errors=True)
    for directory in _distribution_dirs():
        session.run("uv", "build", "--quiet", "--out-dir", str(out), directory, external=True)
    built = sorted(str(path) for path in out.iterdir() if path.name.endswith((".whl", ".tar.gz")))
    session.run("twine", "check", "--strict", *built)
    session.run("python", "tools/check_dists.py", "--license", "LICENSE", *built)


DOCS_DEPS = ("mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the reference site into site/ with mkdocs in strict mode (a broken link, page or
    docstring reference fails), then test what was built (``-m site``: no raw Sphinx role on
    any page; search, tables and the command-line page in headless Chromium).
    ``nox -s docs -- serve`` previews it instead."""
    _install_ohfp(session, *DOCS_DEPS, "pytest>=8")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:], env=env)
        return
    session.run("mkdocs", "build", "--strict", *session.posargs, env=env)
    session.run("pytest", "-m", "site", "tests/docs_site", "-p", "no:cacheprovider")
