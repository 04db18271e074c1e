"""STRATEGY_PACKAGES and STRATEGY_REQUIREMENTS on the deploying machine: bad input stops the
deploy with a clear error before any server is contacted; the packages are part of the
release's content and name, so the same packages make the same release and a changed one a
new release (`deploy_to_server.sh --build-only`, which builds everything a deploy ships)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.deploy.strategy_package import write_package
from tests.support import ROOT

DEPLOY = ROOT / "ops/scripts/deploy_to_server.sh"


def deploy(*args: str, **env: str) -> subprocess.CompletedProcess:
    # A server that cannot exist, reached through no network: any contact would fail on it.
    base = {k: v for k, v in os.environ.items() if not k.startswith("STRATEGY_")}
    return subprocess.run(
        ["bash", str(DEPLOY), *args],
        env={**base, "SERVER": "trad-unreachable.invalid", "SSH_OPTS": "-o ConnectTimeout=1", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


def refused(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "preflight" not in result.stdout, "the server was contacted"
    assert "shipping" not in result.stdout


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def test_a_path_that_does_not_exist_is_refused_before_the_server_is_contacted(tmp_path: Path, cache: str):
    good = write_package(tmp_path / "good")
    result = deploy(STRATEGY_PACKAGES=f"{good} {tmp_path}/missing", TRAD_DEPLOY_CACHE=cache)
    refused(result, f"STRATEGY_PACKAGES: '{tmp_path}/missing' does not exist")
    assert not Path(cache).exists() or not any(Path(cache).glob("strategy-*")), "nothing is built either"


def test_a_directory_that_is_no_package_and_a_file_that_is_no_wheel_are_refused(tmp_path: Path, cache: str):
    (tmp_path / "empty").mkdir()
    refused(
        deploy(STRATEGY_PACKAGES=str(tmp_path / "empty"), TRAD_DEPLOY_CACHE=cache),
        "is a directory without pyproject.toml or setup.py, not a package",
    )
    (tmp_path / "notes.txt").write_text("strategy\n")
    refused(
        deploy(STRATEGY_PACKAGES=str(tmp_path / "notes.txt"), TRAD_DEPLOY_CACHE=cache),
        "is neither a package directory nor a wheel (.whl)",
    )
    refused(
        deploy(STRATEGY_REQUIREMENTS=str(tmp_path / "missing.txt"), TRAD_DEPLOY_CACHE=cache),
        f"STRATEGY_REQUIREMENTS: '{tmp_path / 'missing.txt'}' is not a file",
    )


def test_a_package_that_does_not_build_is_refused_and_its_directory_is_left_alone(tmp_path: Path, cache: str):
    package = write_package(tmp_path / "broken")
    (package / "pyproject.toml").write_text("[project\nname = 'broken'\n")  # not TOML
    before = sorted(p.relative_to(package) for p in package.rglob("*"))
    result = deploy(STRATEGY_PACKAGES=str(package), TRAD_DEPLOY_CACHE=cache)
    refused(result, f"the strategy package {package} does not build")
    assert "nothing was shipped" in result.stderr
    assert sorted(p.relative_to(package) for p in package.rglob("*")) == before
    assert not list(Path(cache).glob("strategy-*")), "no half-built package is cached"


def build(**env: str) -> tuple[str, str]:
    """--build-only: the release's version (its last line of output) and the whole output."""
    result = deploy("--build-only", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()[-1], result.stdout


def deploy_cache() -> Path:
    return Path(os.environ.get("TRAD_DEPLOY_CACHE", Path.home() / ".cache/trad-deploy"))


def release_wheels(version: str) -> list[str]:
    with tarfile.open(deploy_cache() / f"release-wheels-{version}.tar") as tar:
        return sorted(name.removeprefix("./") for name in tar.getnames() if name.endswith(".whl"))


@pytest.mark.e2e  # builds wheels with the package index, as a deploy does
def test_the_packages_are_part_of_the_release(tmp_path: Path):
    package = write_package(tmp_path / "tinystrat")
    bare, _ = build()
    first, out = build(STRATEGY_PACKAGES=str(package))
    assert "strategy packages: tinystrat-0.1.0-py3-none-any.whl" in out
    assert first != bare
    again, out = build(STRATEGY_PACKAGES=str(package))
    assert again == first, "the same packages make the same release"
    assert "release wheels: unchanged (cached)" in out and "building a wheel" not in out
    assert not (package / "build").exists() and not list(package.glob("*.egg-info")), "built from a copy"
    # trad's own wheel and the package; numpy is in the wheelhouse already and is not shipped twice.
    assert [w.split("-")[0] for w in release_wheels(first)] == ["strategies/tinystrat", "trad/trad"]

    (package / "tinystrat/__init__.py").write_text((package / "tinystrat/__init__.py").read_text() + "# v2\n")
    changed, _ = build(STRATEGY_PACKAGES=str(package))
    assert changed not in (first, bare), "a changed package makes a new release"

    # The same package handed over as a wheel file, and a requirements file alone.
    with tarfile.open(deploy_cache() / f"release-wheels-{first}.tar") as tar:
        tar.extract("./strategies/tinystrat-0.1.0-py3-none-any.whl", tmp_path / "wheel", filter="data")
    as_wheel, out = build(STRATEGY_PACKAGES=str(tmp_path / "wheel/strategies/tinystrat-0.1.0-py3-none-any.whl"))
    assert as_wheel != bare and "strategy packages: tinystrat-0.1.0-py3-none-any.whl" in out
    assert "strategies/tinystrat-0.1.0-py3-none-any.whl" in release_wheels(as_wheel)
    requirements = tmp_path / "strategies.txt"
    requirements.write_text("numpy\n")
    only_requirements, out = build(STRATEGY_REQUIREMENTS=str(requirements))
    assert only_requirements not in (bare, first, changed, as_wheel)
    assert "strategy packages: requirements strategies.txt" in out


@pytest.mark.e2e
def test_dependencies_that_conflict_with_trads_pins_are_refused_before_shipping(tmp_path: Path):
    package = write_package(tmp_path / "needsoldnumpy", name="needsoldnumpy", dependencies=("numpy<1.0",))
    result = deploy("--build-only", STRATEGY_PACKAGES=str(package))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "dependencies cannot be met with trad's pinned ones" in result.stderr
