"""seal/open: round trips in both suites, and every way an envelope or a key is refused."""

from __future__ import annotations

import pytest

import cloister


def test_round_trip_x25519() -> None:
    secret, public = cloister.keygen()
    assert public.startswith("cloister-hpke-x25519:")
    sealed = cloister.seal(b"confidential rows", [public])
    assert b"confidential rows" not in sealed
    assert cloister.open(sealed, secret) == b"confidential rows"


def test_round_trip_shangmi_and_empty_and_large() -> None:
    secret, public = cloister.keygen("sm")
    assert public.startswith("cloister-sm2:")
    assert cloister.open(cloister.seal(b"", [public]), secret) == b""
    big = bytes(range(256)) * 20_000  # several chunks
    assert cloister.open(cloister.seal(big, [public]), secret) == big


def test_every_recipient_opens_and_key_texts_may_carry_whitespace() -> None:
    alice, alice_pub = cloister.keygen()
    bob, bob_pub = cloister.keygen()
    sealed = cloister.seal(b"shared", [alice_pub + "\n", bob_pub])
    assert cloister.open(sealed, alice) == b"shared"
    assert cloister.open(sealed, bob + "\n") == b"shared"


def test_key_broker_recipient_is_accepted() -> None:
    secret, public = cloister.keygen()
    sealed = cloister.seal(b"weights", [f"cloister-broker:kb_1a2b:{public}"])
    # The broker's key is the recipient: the holder of its secret opens it.
    assert cloister.open(sealed, secret) == b"weights"


def test_truncation_is_refused() -> None:
    secret, public = cloister.keygen()
    sealed = cloister.seal(b"x" * 100_000, [public])
    for cut in (1, 17, len(sealed) // 2, len(sealed) - 1):
        with pytest.raises(cloister.OpenError):
            cloister.open(sealed[:cut], secret)


def test_tampering_is_refused_anywhere() -> None:
    secret, public = cloister.keygen()
    sealed = cloister.seal(b"y" * 5000, [public])
    for at in (10, len(sealed) // 2, len(sealed) - 1):
        altered = bytearray(sealed)
        altered[at] ^= 0x01
        with pytest.raises(cloister.OpenError):
            cloister.open(bytes(altered), secret)
    with pytest.raises(cloister.OpenError):
        cloister.open(sealed + b"\0", secret)  # the last chunk is no longer the final one


def test_wrong_key_and_wrong_suite_are_refused() -> None:
    _, public = cloister.keygen()
    other, _ = cloister.keygen()
    sealed = cloister.seal(b"z", [public])
    with pytest.raises(cloister.OpenError, match="not one of the envelope's recipients"):
        cloister.open(sealed, other)
    sm_secret, _ = cloister.keygen("sm")
    with pytest.raises(cloister.OpenError, match="wrong key type"):
        cloister.open(sealed, sm_secret)


def test_not_an_envelope() -> None:
    secret, _ = cloister.keygen()
    with pytest.raises(cloister.OpenError, match="bad magic"):
        cloister.open(b"definitely not an envelope", secret)


def test_bad_keys_and_recipients() -> None:
    secret, public = cloister.keygen()
    with pytest.raises(cloister.KeyFormatError):
        cloister.open(cloister.seal(b"a", [public]), "cloister-hpke-x25519-secret:nope")
    with pytest.raises(cloister.KeyFormatError, match="secret key"):
        cloister.seal(b"a", [secret])
    with pytest.raises(cloister.KeyFormatError):
        cloister.seal(b"a", ["not a key"])
    with pytest.raises(cloister.KeyFormatError, match="key-broker"):
        cloister.seal(b"a", [f"cloister-broker:nokb:{public}"])
    with pytest.raises(cloister.KeyFormatError):
        cloister.keygen("rsa")
    # Every error is a CloisterError.
    with pytest.raises(cloister.CloisterError):
        cloister.seal(b"a", ["not a key"])


def test_recipient_lists_are_checked() -> None:
    _, public = cloister.keygen()
    _, sm_public = cloister.keygen("sm")
    with pytest.raises(cloister.SealError, match="empty"):
        cloister.seal(b"a", [])
    with pytest.raises(cloister.SealError, match="different suites"):
        cloister.seal(b"a", [public, sm_public])
    with pytest.raises(cloister.SealError, match="more than once"):
        cloister.seal(b"a", [public, public])


def test_certificate_recipient_needs_expectations() -> None:
    chain = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(cloister.EnclaveError, match="instance CA"):
        cloister.seal(b"a", [chain])
    with pytest.raises(cloister.EnclaveError):
        cloister.seal(b"a", [chain], ca_pem="not a CA", measurements=["00"])
