"""A batch job whose grants Python signs, run by the real worker, and its receipt verified by
Python: `sign_grant` is what the worker accepts, `verify_batch_receipt` what `cloister job fetch`
checks."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from typing import Dict

import pytest

import cloister

REPO = pathlib.Path(__file__).resolve().parents[2]
ROWS = 20


def _features(rows: int) -> bytes:
    """The first rows of the shipped breast-cancer table, features only (the label dropped)."""
    lines = (REPO / "assets" / "breast_cancer.csv").read_text().splitlines()[1 : rows + 1]
    return "".join(line.rsplit(",", 1)[0] + "\n" for line in lines).encode()


def test_python_grants_run_a_batch_job_and_its_receipt_verifies(
    stack: Dict[str, str], cloister_bin: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOISTER_")}
    env.update(CLOISTER_SERVER=stack["server"], CLOISTER_TOKEN=stack["token"], CLOISTER_WORKER=stack["url"])
    measurement, instance = stack["measurement"], stack["instance"]
    target = ["--ca", stack["ca_path"], "--measurement", measurement, "--accept-sim"]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(cloister_bin), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"cloister {' '.join(args[:2])}: {done.stderr}"
        return done.stdout

    def register(name: str) -> str:
        out = cli("key", "register", name, "--instance", instance, "--measurement", measurement, "--json")
        return json.loads(out)["recipient"]

    owner_key, _ = cloister.signing_keygen()
    alice_key, _ = cloister.signing_keygen()
    (tmp_path / "owner.key").write_text(owner_key)
    (tmp_path / "alice.key").write_text(alice_key)
    (tmp_path / "data.csv").write_bytes(_features(ROWS))
    _, results_public = cloister.keygen()

    model = json.loads(cli(
        "job", "upload", str(REPO / "assets" / "breast_cancer_classifier.onnx"), *target,
        "--id", "py-model", "--recipient", register("pymodel"), "--owner-key", "owner.key",
        "--content-type", "application/onnx",
    ))
    data = json.loads(cli(
        "job", "upload", "data.csv", *target, "--id", "py-data", "--recipient", register("pydata"),
        "--owner-key", "alice.key", "--content-type", "text/csv",
    ))
    spec = {"id": "py-job", "kind": "batch-inference", "model": model, "data": data,
            "output_recipients": [results_public]}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    for name, key, role in (("model", owner_key, "model"), ("data", alice_key, "data")):
        grant = cloister.sign_grant(key, spec, role, [measurement], [instance], [results_public])
        (tmp_path / f"{name}.grant").write_text(grant)

    cli("job", "submit", *target, "--job", "job.json", "--grant", "model.grant", "--grant", "data.grant",
        "--chunk-rows", "8")
    cli("job", "status", "py-job", *target, "--watch")
    status = json.loads(cli("job", "status", "py-job", *target, "--json"))
    assert status["state"] == "done", status

    receipt = cloister.verify_batch_receipt(status, stack["ca_pem"], [measurement], accept_sim=True)
    assert receipt["job_id"] == "py-job"
    assert receipt["rows"] == ROWS
    assert [c["rows"] for c in receipt["chunks"]] == [8, 8, 4]
    assert receipt["measurement"] == measurement

    with pytest.raises(cloister.EnclaveError, match="sim"):
        cloister.verify_batch_receipt(status, stack["ca_pem"], [measurement])
    with pytest.raises(cloister.EnclaveError, match="allow-list"):
        cloister.verify_batch_receipt(status, stack["ca_pem"], ["00" * 48], accept_sim=True)
    header, payload, signature = status["receipt"].split(".")
    forged = {**status, "receipt": f"{header}.{payload}.{signature[:-4]}AAAA"}
    with pytest.raises(cloister.ReceiptError):
        cloister.verify_batch_receipt(forged, stack["ca_pem"], [measurement], accept_sim=True)
    with pytest.raises(cloister.ReceiptError, match="job"):
        cloister.verify_batch_receipt({**status, "job_id": "other"}, stack["ca_pem"], [measurement],
                                      accept_sim=True)
