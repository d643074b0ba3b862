"""The attested client against a real attestation service and simulated-TEE worker (the `cloister`
binary), and its refusals: other expectations, no authorization, an unreachable worker."""

from __future__ import annotations

import ssl
import urllib.parse
from typing import Dict

import pytest

import cloister


def test_client_attests_and_pins_the_enclave(stack: Dict[str, str]) -> None:
    client = cloister.Client(stack["url"], stack["ca_pem"], [stack["measurement"]], accept_sim=True)
    assert client.enclave["tee"] == "sim"
    assert client.enclave["measurement"] == stack["measurement"]
    assert client.enclave["instance"] == stack["instance"]
    assert client.enclave["hpke_pk"].startswith("cloister-hpke-x25519:")
    assert "sim" in repr(client)


def test_signed_requests_reach_the_enclave(stack: Dict[str, str]) -> None:
    key, _ = cloister.signing_keygen()
    client = cloister.Client(
        stack["url"], stack["ca_pem"], [stack["measurement"]], accept_sim=True, signing_key=key
    )
    models = client.get("/v1/models")
    assert models.ok, models.body
    assert models.json()["data"] == []
    # No model is deployed: the chat helper raises with the worker's answer.
    with pytest.raises(cloister.ClientError):
        client.chat("smollm2", [{"role": "user", "content": "hello"}], max_tokens=4)
    # Without the requester's signature the enclave refuses.
    bare = cloister.Client(stack["url"], stack["ca_pem"], [stack["measurement"]], accept_sim=True)
    refused = bare.get("/v1/models")
    assert refused.status == 401, refused
    with pytest.raises(cloister.ClientError, match="401"):
        refused.raise_for_status()


def test_the_worker_certificate_verifies_as_an_enclave(stack: Dict[str, str]) -> None:
    address = urllib.parse.urlsplit(stack["url"])
    leaf = ssl.get_server_certificate((address.hostname, address.port))
    enclave = cloister.verify_enclave(leaf, stack["ca_pem"], [stack["measurement"]], accept_sim=True)
    assert enclave["measurement"] == stack["measurement"]
    assert enclave["tee"] == "sim"
    # Sealing to the certificate seals to the attested enclave's key.
    sealed = cloister.seal(
        b"for the enclave", [leaf], ca_pem=stack["ca_pem"], measurements=[stack["measurement"]],
        accept_sim=True,
    )
    assert len(sealed) > len(b"for the enclave")
    with pytest.raises(cloister.EnclaveError, match="sim|TEE"):
        cloister.seal(b"x", [leaf], ca_pem=stack["ca_pem"], measurements=[stack["measurement"]])


def test_expectations_are_enforced(stack: Dict[str, str]) -> None:
    # The attested TLS handshake refuses the enclave, so nothing is sent; the refusal comes back
    # as a connection failure that names the check (cloister-client reports it as a transport
    # error, not as an EnclaveError).
    with pytest.raises(cloister.CloisterError, match="sim TEE, which is not in the accepted list"):
        cloister.Client(stack["url"], stack["ca_pem"], [stack["measurement"]])
    with pytest.raises(cloister.CloisterError, match="not on the allow-list"):
        cloister.Client(stack["url"], stack["ca_pem"], ["00" * 48], accept_sim=True)


def test_another_ca_is_refused(stack: Dict[str, str], stack_ca: str) -> None:
    with pytest.raises(cloister.CloisterError):
        cloister.Client(stack["url"], stack_ca, [stack["measurement"]], accept_sim=True)


def test_expectations_are_read_before_connecting() -> None:
    with pytest.raises(cloister.EnclaveError, match="no CERTIFICATE"):
        cloister.Client("https://127.0.0.1:9", "not a pem", ["00" * 48])
    with pytest.raises(cloister.KeyFormatError, match="hex"):
        cloister.Client("https://127.0.0.1:9", "not a pem", ["not hex"])


def test_unreachable_worker_with_a_usable_ca(stack_ca: str) -> None:
    with pytest.raises(cloister.ClientError, match="127.0.0.1:9"):
        cloister.Client("https://127.0.0.1:9", stack_ca, ["00" * 48])
