"""verify_receipt and verify_batch_receipt refuse what does not come from an attested enclave."""

from __future__ import annotations

import json

import pytest

import cloister

MEASUREMENT = "ab" * 48
NOT_A_CHAIN = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def _spec() -> str:
    _, owner = cloister.signing_keygen()
    return json.dumps({
        "id": "job-1",
        "kind": "batch-inference",
        "model": {"object_id": "m", "sha256": "11" * 32, "owner": owner},
        "data": {"object_id": "d", "sha256": "22" * 32, "owner": owner},
        "output_recipients": [],
    })


def test_receipt_needs_a_usable_ca() -> None:
    with pytest.raises(cloister.EnclaveError, match="CERTIFICATE|CA"):
        cloister.verify_receipt("a.b.c", NOT_A_CHAIN, "not a pem", [MEASUREMENT], _spec(), b"out")


def test_receipt_needs_a_verified_enclave_chain(stack_ca: str) -> None:
    with pytest.raises(cloister.EnclaveError):
        cloister.verify_receipt("a.b.c", NOT_A_CHAIN, stack_ca, [MEASUREMENT], _spec(), b"out")
    with pytest.raises(cloister.EnclaveError):
        cloister.verify_receipt("a.b.c", "", stack_ca, [MEASUREMENT], _spec(), b"out")


def test_receipt_arguments_are_checked(stack_ca: str) -> None:
    with pytest.raises(cloister.KeyFormatError, match="hex"):
        cloister.verify_receipt("a.b.c", NOT_A_CHAIN, stack_ca, ["xyz"], _spec(), b"out")
    with pytest.raises(TypeError):
        cloister.verify_receipt("a.b.c", NOT_A_CHAIN, stack_ca, [MEASUREMENT], 7, b"out")  # type: ignore[arg-type]


def test_batch_receipt_refusals(stack_ca: str) -> None:
    status = {"job_id": "b-1", "state": "done", "rows_done": 1, "chunks": []}
    with pytest.raises(cloister.ReceiptError, match="no receipt"):
        cloister.verify_batch_receipt(status, stack_ca, [MEASUREMENT])
    with pytest.raises(cloister.ReceiptError, match="certificate chain"):
        cloister.verify_batch_receipt({**status, "receipt": "a.b.c"}, stack_ca, [MEASUREMENT])
    with pytest.raises(cloister.ReceiptError):
        cloister.verify_batch_receipt(
            {**status, "receipt": "a.b.c", "receipt_signer_chain_pem": NOT_A_CHAIN}, stack_ca, [MEASUREMENT]
        )
    with pytest.raises(ValueError, match="batch status"):
        cloister.verify_batch_receipt("{}", stack_ca, [MEASUREMENT])


def test_enclave_chain_refusals(stack_ca: str) -> None:
    with pytest.raises(cloister.EnclaveError):
        cloister.verify_enclave(NOT_A_CHAIN, stack_ca, [MEASUREMENT])
    with pytest.raises(cloister.EnclaveError, match="no CERTIFICATE"):
        cloister.verify_enclave(NOT_A_CHAIN, "", [MEASUREMENT])
