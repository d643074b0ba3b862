"""Cloister from Python: seal and open data, sign grants, verify receipts and TEE evidence, and
talk to an attested worker.

Every function here is a thin wrapper over Cloister's Rust crates (``cloister._cloister``, built
with PyO3): the same envelope, the same signatures, the same verifiers as the ``cloister``
command. Errors are typed; every one is a :class:`CloisterError`::

    import cloister

    secret, public = cloister.keygen()
    sealed = cloister.seal(b"rows", [public])
    assert cloister.open(sealed, secret) == b"rows"
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _cloister
from ._cloister import (
    ClientError,
    CloisterError,
    EnclaveError,
    EvidenceError,
    GrantError,
    KeyFormatError,
    OpenError,
    ReceiptError,
    SealError,
    SignError,
)

__all__ = [
    "Client",
    "ClientError",
    "CloisterError",
    "EnclaveError",
    "EvidenceError",
    "GrantError",
    "KeyFormatError",
    "OpenError",
    "ReceiptError",
    "Response",
    "SealError",
    "SignError",
    "job_digest",
    "keygen",
    "open",
    "seal",
    "sign_grant",
    "signing_keygen",
    "signing_public_key",
    "sim_evidence",
    "sim_platform_keygen",
    "verify_batch_receipt",
    "verify_enclave",
    "verify_evidence",
    "verify_grant",
    "verify_receipt",
]

JsonLike = Union[str, bytes, Dict[str, Any]]


def _json_text(value: JsonLike, what: str) -> str:
    """A JSON argument as text: a dict is serialised, bytes decoded, text taken as it is."""
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"{what} must be a dict, JSON text or JSON bytes, not {type(value).__name__}")


def _text(value: Union[str, bytes]) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def _bytes(value: Union[str, bytes]) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


# ---------------------------------------------------------------------------------------------
# The sealed envelope


def keygen(suite: str = "x25519") -> Tuple[str, str]:
    """Make an envelope key pair; returns ``(secret_text, public_text)``.

    ``suite`` is ``"x25519"`` (``cloister-hpke-x25519:…``) or ``"sm"`` (ShangMi, ``cloister-sm2:…``).
    Keep the secret text secret; give the public text to whoever seals to you.
    """
    return _cloister.keygen(suite)


def seal(
    data: bytes,
    recipients: Sequence[str],
    *,
    ca_pem: Optional[str] = None,
    measurements: Sequence[str] = (),
    accept_sim: bool = False,
    accept_test_root: bool = False,
) -> bytes:
    """Seal ``data`` to every recipient and return the envelope bytes.

    A recipient is what ``cloister seal --recipient`` reads: an envelope public key
    (``cloister-hpke-x25519:…`` or ``cloister-sm2:…``), a key-broker recipient
    (``cloister-broker:kb_…``), or an enclave certificate chain (PEM). A certificate chain is
    verified first against ``ca_pem`` (the attestation instance's CA) and ``measurements`` (hex);
    the simulated TEE and test roots are refused unless accepted (development only).

    Raises :class:`KeyFormatError`, :class:`EnclaveError` or :class:`SealError`.
    """
    return _cloister.seal(
        bytes(data), [_text(r) for r in recipients], ca_pem, list(measurements), accept_sim,
        accept_test_root,
    )


def open(data: bytes, secret: str) -> bytes:  # noqa: A001 - the name of the operation
    """Open an envelope with an envelope secret key (text) and return the plaintext.

    Nothing is returned unless the whole envelope authenticated: a truncated, extended or
    altered envelope, or a key that is not one of its recipients, raises :class:`OpenError`.
    """
    return _cloister.open(bytes(data), _text(secret))


# ---------------------------------------------------------------------------------------------
# Signing keys, grants, receipts


def signing_keygen() -> Tuple[str, str]:
    """Make a party signing key (ES256); returns ``(secret_text, public_text)``.

    The public text (``cloister-es256:…``) is what job specs name as an input's owner.
    """
    return _cloister.signing_keygen()


def signing_public_key(signing_key: str) -> str:
    """The public text of a party signing key."""
    return _cloister.signing_public_key(_text(signing_key))


def job_digest(job_spec: JsonLike) -> str:
    """The digest of a job spec (hex SHA-256 of its canonical JSON): what grants and receipts name."""
    return _cloister.job_digest(_json_text(job_spec, "job_spec"))


def sign_grant(
    signing_key: str,
    job_spec: JsonLike,
    role: str,
    measurements: Sequence[str],
    instances: Sequence[str],
    result_recipients: Sequence[str],
    privacy_budget: Optional[Tuple[float, float]] = None,
) -> str:
    """Sign a grant letting the job use the signer's input; returns the compact JWS.

    ``role`` is ``"data"`` or ``"model"``: the input the signer owns (its public key must be the
    input's ``owner`` in the job spec). The grant admits enclaves measured one of
    ``measurements`` (hex) and appraised by one of the attestation ``instances`` (``in_…``), and
    lets results be sealed only to ``result_recipients`` (envelope public keys). For a training
    job's data, ``privacy_budget=(epsilon, delta)`` caps the privacy spent (DP-SGD required).
    Valid one hour.

    Raises :class:`KeyFormatError`, :class:`GrantError` (e.g. the signer does not own the input)
    or ``ValueError`` for a job spec that is not valid JSON of a job.
    """
    return _cloister.sign_grant(
        _text(signing_key),
        _json_text(job_spec, "job_spec"),
        role,
        list(measurements),
        list(instances),
        list(result_recipients),
        privacy_budget,
    )


def verify_grant(token: str, signer_public_key: str) -> Dict[str, Any]:
    """Verify a grant with its signer's public key (now) and return the grant as a dict.

    Raises :class:`SignError` if the token is not a grant signed by that key or has expired.
    """
    return json.loads(_cloister.verify_grant(_text(token), _text(signer_public_key)))


def verify_enclave(
    chain_pem: str,
    ca_pem: str,
    measurements: Sequence[str],
    *,
    accept_sim: bool = False,
    accept_test_root: bool = False,
) -> Dict[str, Any]:
    """Verify an enclave certificate chain against your expectations and return what it says.

    The result has ``tee``, ``measurement``, ``instance``, ``ear_status``, ``hpke_pk`` (seal to
    it), ``receipt_pk``, ``claims`` and ``runtime_data``. Raises :class:`EnclaveError`.
    """
    return json.loads(
        _cloister.verify_enclave(
            _text(chain_pem), _text(ca_pem), list(measurements), accept_sim, accept_test_root
        )
    )


def verify_receipt(
    token: str,
    enclave_chain_pem: str,
    ca_pem: str,
    measurements: Sequence[str],
    job_spec: JsonLike,
    output_ciphertext: bytes,
    *,
    accept_sim: bool = False,
    accept_test_root: bool = False,
) -> Dict[str, Any]:
    """Verify a job's receipt and return it as a dict.

    The enclave certificate chain (what the worker presented) must verify against ``ca_pem`` and
    ``measurements``; the receipt must be signed by that enclave's receipt key, for this job spec,
    naming its inputs as uploaded and ``output_ciphertext`` (the sealed output as downloaded),
    and confirm erasure. Raises :class:`EnclaveError` or :class:`ReceiptError`.
    """
    return json.loads(
        _cloister.verify_receipt(
            _text(token),
            _text(enclave_chain_pem),
            _text(ca_pem),
            list(measurements),
            _json_text(job_spec, "job_spec"),
            bytes(output_ciphertext),
            accept_sim,
            accept_test_root,
        )
    )


def verify_batch_receipt(
    batch_status: JsonLike,
    ca_pem: str,
    measurements: Sequence[str],
    *,
    accept_sim: bool = False,
    accept_test_root: bool = False,
) -> Dict[str, Any]:
    """Verify a done batch job's receipt from the worker's status (``GET /v1/batch/{id}``).

    The signer's certificate chain is checked at the time the receipt was signed (the signer may
    be long gone), then the receipt's job and measurement, and that the status's chunks are the
    ones the receipt commits to (count and digest). Returns the receipt as a dict, with the
    verified chunks under ``"chunks"``.
    Raises :class:`EnclaveError` or :class:`ReceiptError`.
    """
    return json.loads(
        _cloister.verify_batch_receipt(
            _json_text(batch_status, "batch_status"),
            _text(ca_pem),
            list(measurements),
            accept_sim,
            accept_test_root,
        )
    )


# ---------------------------------------------------------------------------------------------
# Evidence


def _unix_time(at: Union[None, int, float, str, datetime]) -> Optional[int]:
    if at is None:
        return None
    if isinstance(at, datetime):
        return int(at.timestamp())
    if isinstance(at, str):
        return int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
    return int(at)


def verify_evidence(
    evidence: Union[bytes, str, Dict[str, Any]],
    tee: Optional[str] = None,
    *,
    collateral: Sequence[bytes] = (),
    certs: Sequence[bytes] = (),
    trust_anchors: Sequence[Union[bytes, str]] = (),
    at: Union[None, int, float, str, datetime] = None,
) -> Dict[str, Any]:
    """Verify TEE evidence and return its claims, as ``cloister evidence verify`` does.

    With ``tee`` (``sgx``, ``tdx``, ``snp``, ``csv``, ``cca``, ``virtcca``, ``nitro``, ``nvidia``,
    ``psa``, ``android``), ``evidence`` is that TEE's vendor evidence (raw, hex or base64) and
    the normalised claims are returned; they are bound to nothing (inspection only). Without
    ``tee``, ``evidence`` is unified evidence JSON (a dict, text or bytes), verified as the
    attestation service does, report_data binding included; the claims of every component are
    returned: ``{"cpu0": {...}, "gpu0": {...}}``.

    ``collateral``: DCAP bundles, PCS responses, CRLs, RIMs; ``certs``: VCEK/ASK/ARK, Hygon,
    NVIDIA chains; ``trust_anchors``: root certificates (PEM or DER), CCA platform keys, or for
    sim evidence the sim platform public key text. ``at``: the verification time (Unix seconds,
    an RFC 3339 text or a datetime), now by default; pin it for old evidence.

    Raises :class:`EvidenceError` when a check fails (the message names it).
    """
    if isinstance(evidence, dict):
        evidence = json.dumps(evidence)
    return json.loads(
        _cloister.verify_evidence(
            _bytes(evidence),
            tee,
            [bytes(c) for c in collateral],
            [bytes(c) for c in certs],
            [_bytes(a) for a in trust_anchors],
            _unix_time(at),
        )
    )


def sim_platform_keygen() -> Tuple[str, str]:
    """Make a simulated TEE platform key (development only): ``(secret_pem, public_text)``.

    The public text is the trust anchor of the evidence :func:`sim_evidence` makes with it.
    """
    return _cloister.sim_platform_keygen()


def sim_evidence(
    platform_secret_pem: str, runtime_data: JsonLike, measurement: str
) -> Dict[str, Any]:
    """Simulated TEE evidence (development and tests only) as a unified evidence dict.

    ``runtime_data`` has ``nonce``, ``hpke_pk``, ``tls_spki_sha256`` (hex) and ``receipt_pk``;
    ``measurement`` is 48 bytes in hex (a SHA-384). The simulated TEE proves nothing: verifiers
    accept it only with its platform key as an explicit anchor.
    """
    return json.loads(
        _cloister.sim_evidence(
            _text(platform_secret_pem), _json_text(runtime_data, "runtime_data"), measurement
        )
    )


# ---------------------------------------------------------------------------------------------
# The attested client


class Response:
    """A decrypted answer from the enclave: ``status``, ``content_type`` and ``body`` (bytes)."""

    def __init__(self, status: int, content_type: Optional[str], body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body

    @property
    def ok(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def raise_for_status(self) -> "Response":
        """Raise :class:`ClientError` with the worker's message unless the status is 2xx."""
        if not self.ok:
            raise ClientError(
                f"the worker answered {self.status}: {self.body[:300].decode('utf-8', 'replace')}"
            )
        return self

    def __repr__(self) -> str:
        return f"Response(status={self.status}, content_type={self.content_type!r}, {len(self.body)} bytes)"


class Client:
    """An attested Oblivious HTTP client of one Cloister worker (or of the proxy's worker).

    Connecting verifies the worker's enclave certificate against ``ca_pem`` (the attestation
    instance's CA) and ``measurements`` (hex), reads its OHTTP key from the attested runtime data
    and pins that enclave. An enclave that does not meet the expectations is refused during the
    TLS handshake, before anything is sent: :class:`ClientError` naming the failed check (or
    :class:`EnclaveError` when the certificate verified but its claims did not). If a later
    connection presents another enclave, nothing is sent and :class:`EnclaveError` is raised.
    Requests are end-to-end encrypted to the enclave and signed with the requester's signing
    key::

        client = cloister.Client(url, ca_pem, [measurement], accept_sim=True)
        client.enclave["measurement"]
        client.get("/v1/models", signing_key=my_key).json()
    """

    def __init__(
        self,
        url: str,
        ca_pem: str,
        measurements: Sequence[str],
        *,
        accept_sim: bool = False,
        accept_test_root: bool = False,
        signing_key: Optional[str] = None,
    ) -> None:
        self._inner = _cloister.Client(
            url, _text(ca_pem), list(measurements), accept_sim, accept_test_root
        )
        self.enclave: Dict[str, Any] = json.loads(self._inner.enclave_json())
        """The enclave verified and pinned at connection: ``tee``, ``measurement``, ``instance``…"""
        self.signing_key = signing_key
        """The requester's signing key (secret text) used when a call does not name one."""

    def request(
        self,
        method: str,
        path: str,
        body: Union[bytes, str] = b"",
        *,
        signing_key: Optional[str] = None,
        content_type: Optional[str] = None,
    ) -> Response:
        """Send one request to the enclave and return its decrypted :class:`Response`."""
        key = signing_key if signing_key is not None else self.signing_key
        status, ctype, data = self._inner.request(
            method, path, _bytes(body), key, content_type
        )
        return Response(status, ctype, data)

    def get(self, path: str, *, signing_key: Optional[str] = None) -> Response:
        """``GET path``, signed."""
        return self.request("GET", path, b"", signing_key=signing_key)

    def post(self, path: str, json_body: Any, *, signing_key: Optional[str] = None) -> Response:
        """``POST path`` with a JSON body, signed."""
        return self.request(
            "POST",
            path,
            json.dumps(json_body).encode("utf-8"),
            signing_key=signing_key,
            content_type="application/json",
        )

    def chat(
        self,
        model: str,
        messages: List[Dict[str, str]],
        *,
        signing_key: Optional[str] = None,
        **params: Any,
    ) -> Dict[str, Any]:
        """An OpenAI-style chat completion (``POST /v1/chat/completions``); returns the answer
        dict, or raises :class:`ClientError` with the worker's message."""
        body = {"model": model, "messages": messages, **params}
        return self.post("/v1/chat/completions", body, signing_key=signing_key).raise_for_status().json()

    def __repr__(self) -> str:
        return (
            f"Client({self.enclave.get('tee')} enclave, measurement "
            f"{self.enclave.get('measurement')}, instance {self.enclave.get('instance')})"
        )
