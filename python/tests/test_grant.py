"""Signing keys and grants: what `sign_grant` signs, read back with the Rust verifier and by hand."""

from __future__ import annotations

import base64
import json
from typing import Any, Dict

import pytest

import cloister

MEASUREMENT = "ab" * 48


def _spec(data_owner: str, model_owner: str) -> Dict[str, Any]:
    return {
        "id": "job-1",
        "kind": "batch-inference",
        "model": {"object_id": "model-obj", "sha256": "11" * 32, "owner": model_owner},
        "data": {"object_id": "data-obj", "sha256": "22" * 32, "owner": data_owner},
        "output_recipients": [cloister.keygen()[1]],
    }


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_signing_keys() -> None:
    secret, public = cloister.signing_keygen()
    assert secret.startswith("cloister-es256-secret:") and public.startswith("cloister-es256:")
    assert cloister.signing_public_key(secret) == public
    with pytest.raises(cloister.KeyFormatError):
        cloister.signing_public_key(public)


def test_grant_names_the_job_the_input_and_the_enclaves() -> None:
    key, me = cloister.signing_keygen()
    _, model_owner = cloister.signing_keygen()
    spec = _spec(me, model_owner)
    _, result_key = cloister.keygen()
    token = cloister.sign_grant(key, spec, "data", [MEASUREMENT], ["in_abc"], [result_key])

    grant = cloister.verify_grant(token, me)
    assert grant["job_id"] == "job-1"
    assert grant["job_digest"] == cloister.job_digest(spec)
    assert grant["role"] == "data"
    assert grant["object_id"] == "data-obj" and grant["object_sha256"] == "22" * 32
    assert grant["allowed_measurements"] == [MEASUREMENT]
    assert grant["allowed_instances"] == ["in_abc"]
    assert grant["result_recipients"] == [result_key]
    assert "privacy_budget" not in grant

    # The JWS itself: ES256, issued by the signer, valid one hour.
    header, payload, signature = token.split(".")
    assert json.loads(_b64(header))["alg"] == "ES256"
    claims = json.loads(_b64(payload))
    assert claims["iss"] == me
    assert claims["exp"] - claims["iat"] == 3600
    assert len(_b64(signature)) == 64


def test_model_grant_and_privacy_budget_and_json_text() -> None:
    key, me = cloister.signing_keygen()
    _, data_owner = cloister.signing_keygen()
    spec = json.dumps(_spec(data_owner, me))
    token = cloister.sign_grant(key, spec, "model", [MEASUREMENT], ["in_x"], [], (1.5, 1e-5))
    grant = cloister.verify_grant(token, me)
    assert grant["role"] == "model" and grant["object_id"] == "model-obj"
    assert grant["privacy_budget"] == {"epsilon": 1.5, "delta": 1e-5}


def test_grant_refusals() -> None:
    key, me = cloister.signing_keygen()
    _, other = cloister.signing_keygen()
    spec = _spec(other, other)
    with pytest.raises(cloister.GrantError, match="does not own"):
        cloister.sign_grant(key, spec, "data", [MEASUREMENT], ["in_x"], [])
    with pytest.raises(cloister.GrantError, match="role"):
        cloister.sign_grant(key, _spec(me, other), "weights", [MEASUREMENT], ["in_x"], [])
    with pytest.raises(cloister.KeyFormatError):
        cloister.sign_grant(me, _spec(me, other), "data", [MEASUREMENT], ["in_x"], [])
    with pytest.raises(cloister.KeyFormatError, match="hex"):
        cloister.sign_grant(key, _spec(me, other), "data", ["zz"], ["in_x"], [])
    with pytest.raises(ValueError, match="job spec"):
        cloister.sign_grant(key, {"id": "job-1"}, "data", [MEASUREMENT], ["in_x"], [])
    with pytest.raises(ValueError):
        cloister.job_digest("{not json")
    with pytest.raises(TypeError):
        cloister.job_digest(42)  # type: ignore[arg-type]


def test_grant_verification_refusals() -> None:
    key, me = cloister.signing_keygen()
    _, other = cloister.signing_keygen()
    token = cloister.sign_grant(key, _spec(me, other), "data", [MEASUREMENT], ["in_x"], [])
    with pytest.raises(cloister.SignError):
        cloister.verify_grant(token, other)
    header, payload, signature = token.split(".")
    forged = json.loads(_b64(payload))
    forged["job_id"] = "job-2"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(cloister.SignError):
        cloister.verify_grant(f"{header}.{forged_payload}.{signature}", me)
    with pytest.raises(cloister.SignError):
        cloister.verify_grant("not.a.token", me)
    with pytest.raises(cloister.KeyFormatError):
        cloister.verify_grant(token, "cloister-es256:nope")
