"""Shared fixtures: the test vectors, the `cloister` binary, and a running attestation service and
simulated-TEE worker for the attested client."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
from typing import Dict, Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


def _missing(what: str) -> None:
    """Skip locally, fail in CI, where everything the tests need must be there."""
    if IN_CI:
        pytest.fail(f"{what} (CI is set: nothing may be skipped)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def vectors() -> pathlib.Path:
    """The real evidence vectors: $CLOISTER_VECTORS, else shared/vectors beside the repository."""
    path = pathlib.Path(os.environ.get("CLOISTER_VECTORS", REPO.parent / "shared" / "vectors"))
    if not path.is_dir():
        _missing(f"no evidence vectors at {path} (set CLOISTER_VECTORS)")
    return path


@pytest.fixture(scope="session")
def cloister_bin() -> pathlib.Path:
    """The `cloister` binary: $CLOISTER_BIN, else $CARGO_TARGET_DIR/debug/cloister."""
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    path = pathlib.Path(os.environ.get("CLOISTER_BIN", target / "debug" / "cloister"))
    if not path.is_file():
        _missing(f"no cloister binary at {path} (build it, or set CLOISTER_BIN)")
    return path


def _wait_for(path: pathlib.Path, text: str, process: subprocess.Popen, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited {process.returncode}: {content[-2000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"no {text!r} in {path} after {seconds} s")


def _listening(log: str) -> Dict[str, str]:
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "listening":
            return event
    raise RuntimeError("no listening event")


@pytest.fixture(scope="session")
def stack(cloister_bin: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, str]]:
    """An attestation service, an instance admitting this `cloister` binary in the simulated TEE,
    and a worker, as README.md's "Serving a model from the shell" starts them."""
    home = tmp_path_factory.mktemp("stack")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    processes = []

    def run(*args: str, extra: Dict[str, str]) -> str:
        out = subprocess.run(
            [str(cloister_bin), *args], cwd=home, env={**env, **extra}, check=True,
            capture_output=True, text=True, timeout=60,
        )
        return out.stdout

    try:
        service_log = home / "service.log"
        with service_log.open("w") as log:
            service = subprocess.Popen(
                [str(cloister_bin), "serve", "attestation", "--listen", "127.0.0.1:0",
                 "--database", "sqlite://authority.db", "--operator-token-file", "operator-token"],
                cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=log,
            )
        processes.append(service)
        listening = _listening(_wait_for(service_log, '"event":"listening"', service))
        server = {"CLOISTER_SERVER": listening["url"]}
        operator = (home / "operator-token").read_text().strip()
        tenant = json.loads(run("tenant", "create", "acme", "--json",
                                extra={**server, "CLOISTER_TOKEN": operator}))
        auth = {**server, "CLOISTER_TOKEN": tenant["token"]}
        run("keygen", "--sim-platform", "--secret", "sim-platform.key", "--public", "sim-platform.pub",
            extra={})
        measurement = run("measure", str(cloister_bin), extra={}).strip()
        (home / "reference-values.json").write_text(json.dumps({"measurements": [measurement]}))
        instance = json.loads(run(
            "instance", "create", "prod", "--builtin-policy", "dev-sim",
            "--sim-platform-key", "sim-platform.pub", "--reference-values", "reference-values.json",
            "--json", extra=auth))
        (home / "models").mkdir()
        worker_json = home / "worker.json"
        with worker_json.open("w") as out, (home / "worker.log").open("w") as log:
            worker = subprocess.Popen(
                [str(cloister_bin), "serve", "worker", "--listen", "127.0.0.1:0",
                 "--instance", instance["id"], "--tee", "sim",
                 "--sim-platform-key", "sim-platform.key",
                 "--service-fingerprint", listening["service_fingerprint"],
                 "--authority", listening["url"], "--data-dir", "worker", "--repository", "models"],
                cwd=home, env={**env, **auth}, stdout=out, stderr=log,
            )
        processes.append(worker)
        _wait_for(worker_json, '"url"', worker)
        (home / "instance-ca.pem").write_text(instance["ca_certificate_pem"])
        yield {
            "url": json.loads(worker_json.read_text())["url"],
            "ca_pem": instance["ca_certificate_pem"],
            "ca_path": str(home / "instance-ca.pem"),
            "measurement": measurement,
            "instance": instance["id"],
            "server": listening["url"],
            "token": tenant["token"],
        }
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def stack_ca(vectors: pathlib.Path) -> str:
    """A real CA certificate (AWS Nitro's root) that issued none of the chains the tests make up."""
    return (vectors / "nitro" / "AWS_NitroEnclaves_Root-G1.pem").read_text()
