"""verify_evidence: simulated unified evidence made through the API, and real vendor evidence from
the shared vectors, with the refusals of each."""

from __future__ import annotations

import copy
import pathlib
from typing import Any, Dict, Tuple

import pytest

import cloister

MEASUREMENT = "cd" * 48
SGX_AT = "2025-06-20T00:00:00Z"


def _runtime_data() -> Dict[str, Any]:
    _, hpke_pk = cloister.keygen()
    _, receipt_pk = cloister.signing_keygen()
    return {"nonce": "n-1", "hpke_pk": hpke_pk, "tls_spki_sha256": "ee" * 32, "receipt_pk": receipt_pk}


@pytest.fixture
def sim() -> Tuple[Dict[str, Any], str]:
    secret, public = cloister.sim_platform_keygen()
    return cloister.sim_evidence(secret, _runtime_data(), MEASUREMENT), public


def test_sim_evidence_verifies_with_its_platform_key(sim: Tuple[Dict[str, Any], str]) -> None:
    evidence, anchor = sim
    claims = cloister.verify_evidence(evidence, trust_anchors=[anchor])
    assert list(claims) == ["cpu0"]
    assert claims["cpu0"]["tee"] == "sim"
    assert claims["cpu0"]["measurement"] == MEASUREMENT
    # JSON text and bytes are read too.
    import json

    assert cloister.verify_evidence(json.dumps(evidence), trust_anchors=[anchor]) == claims
    assert cloister.verify_evidence(json.dumps(evidence).encode(), trust_anchors=[anchor.encode()]) == claims


def test_sim_evidence_refusals(sim: Tuple[Dict[str, Any], str]) -> None:
    evidence, anchor = sim
    _, other = cloister.sim_platform_keygen()
    with pytest.raises(cloister.EvidenceError):
        cloister.verify_evidence(evidence)  # no anchor: the simulated TEE is never trusted by default
    with pytest.raises(cloister.EvidenceError):
        cloister.verify_evidence(evidence, trust_anchors=[other])
    rebound = copy.deepcopy(evidence)
    rebound["runtime_data"]["nonce"] = "n-2"  # the evidence no longer binds this runtime data
    with pytest.raises(cloister.EvidenceError, match="report_data"):
        cloister.verify_evidence(rebound, trust_anchors=[anchor])
    with pytest.raises(cloister.KeyFormatError):
        cloister.verify_evidence(evidence, trust_anchors=["not a sim key"])
    with pytest.raises(ValueError, match="unified evidence"):
        cloister.verify_evidence(b"{not json")
    with pytest.raises(cloister.EvidenceError):
        cloister.verify_evidence(evidence, trust_anchors=[anchor], at=1)  # made in the future


def test_sim_evidence_arguments() -> None:
    secret, _ = cloister.sim_platform_keygen()
    with pytest.raises(cloister.KeyFormatError, match="48 bytes"):
        cloister.sim_evidence(secret, _runtime_data(), "ab")
    with pytest.raises(cloister.KeyFormatError):
        cloister.sim_evidence("not a pem", _runtime_data(), MEASUREMENT)
    with pytest.raises(ValueError, match="runtime data"):
        cloister.sim_evidence(secret, {"nonce": "n"}, MEASUREMENT)


def test_real_sgx_quote_with_its_collateral(vectors: pathlib.Path) -> None:
    quote = (vectors / "sgx" / "dcapqvl_sgx_quote").read_bytes()
    collateral = (vectors / "sgx" / "dcapqvl_sgx_quote_collateral.json").read_bytes()
    claims = cloister.verify_evidence(quote, "sgx", collateral=[collateral], at=SGX_AT)
    assert claims["tee"] == "sgx"
    assert claims["tcb_status"] == "ConfigurationAndSWHardeningNeeded"
    assert claims["advisories"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
    assert claims["measurement"] == "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
    assert claims["signer"] == "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    # The Intel root given explicitly (DER) is accepted too.
    root = (vectors / "sgx" / "Intel_SGX_RootCA.der").read_bytes()
    again = cloister.verify_evidence(quote, "sgx", collateral=[collateral], trust_anchors=[root], at=SGX_AT)
    assert again["measurement"] == claims["measurement"]


def test_real_sgx_quote_refusals(vectors: pathlib.Path) -> None:
    quote = (vectors / "sgx" / "dcapqvl_sgx_quote").read_bytes()
    collateral = (vectors / "sgx" / "dcapqvl_sgx_quote_collateral.json").read_bytes()
    with pytest.raises(cloister.EvidenceError, match="sgx"):
        cloister.verify_evidence(quote, "sgx", collateral=[collateral], at="2040-01-01T00:00:00Z")
    altered = bytearray(quote)
    altered[100] ^= 0x01  # inside the signed report body
    with pytest.raises(cloister.EvidenceError):
        cloister.verify_evidence(bytes(altered), "sgx", collateral=[collateral], at=SGX_AT)
    with pytest.raises(cloister.EvidenceError, match="not one of"):
        cloister.verify_evidence(quote, "quantum", at=SGX_AT)
    with pytest.raises(cloister.EvidenceError):
        cloister.verify_evidence(quote, "tdx", collateral=[collateral], at=SGX_AT)


def test_real_tdx_quote_collateral_expiry(vectors: pathlib.Path) -> None:
    quote = (vectors / "tdx" / "dcapqvl_tdx_quote").read_bytes()
    collateral = (vectors / "tdx" / "dcapqvl_tdx_quote_collateral.json").read_bytes()
    claims = cloister.verify_evidence(quote, "tdx", collateral=[collateral], at=SGX_AT)
    assert claims["tcb_status"] == "UpToDate"
    assert claims["tdx"]["mr_td"] == claims["measurement"]
    with pytest.raises(cloister.EvidenceError, match="tcbInfo expired"):
        cloister.verify_evidence(quote, "tdx", collateral=[collateral], at="2025-08-20T00:00:00Z")
