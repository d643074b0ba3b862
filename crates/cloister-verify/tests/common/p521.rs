//! P-521 test keys and their public forms (JWK, SubjectPublicKeyInfo in DER and PEM), for the
//! ES512 tokens of the PSA and CCA tests.

use base64::Engine as _;

/// A P-521 signing key from a one-byte seed (a valid scalar: the top byte is 0x01).
pub(crate) fn key(seed: u8) -> p521::ecdsa::SigningKey {
    let mut scalar = [seed; 66];
    scalar[0] = 0x01;
    p521::ecdsa::SigningKey::from_slice(&scalar).unwrap()
}

/// The uncompressed SEC1 point (133 bytes) of `key`.
pub(crate) fn point(key: &p521::ecdsa::SigningKey) -> Vec<u8> {
    p521::ecdsa::VerifyingKey::from(key).to_sec1_point(false).as_bytes().to_vec()
}

/// An ES512 signature (`r ‖ s`, 132 bytes) over `data`.
pub(crate) fn sign(key: &p521::ecdsa::SigningKey, data: &[u8]) -> Vec<u8> {
    use p521::ecdsa::signature::Signer as _;
    let signature: p521::ecdsa::Signature = key.sign(data);
    signature.to_bytes().to_vec()
}

/// The public JWK of a SEC1 point, with `extra` members.
pub(crate) fn jwk(point: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let mut jwk = serde_json::json!({
        "kty": "EC",
        "crv": "P-521",
        "x": b64(&point[1..67]),
        "y": b64(&point[67..]),
    });
    for (name, value) in extra {
        jwk[*name] = serde_json::Value::String((*value).to_owned());
    }
    jwk.to_string().into_bytes()
}

/// The DER SubjectPublicKeyInfo of a SEC1 point: id-ecPublicKey on secp521r1 (RFC 5480).
pub(crate) fn spki_der(point: &[u8]) -> Vec<u8> {
    assert_eq!(point.len(), 133);
    let algorithm = [
        0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81,
        0x04, 0x00, 0x23,
    ];
    let mut out = vec![0x30, 0x81, (algorithm.len() + 3 + 134) as u8];
    out.extend_from_slice(&algorithm);
    out.extend_from_slice(&[0x03, 0x81, 134, 0x00]);
    out.extend_from_slice(point);
    out
}

/// The same SubjectPublicKeyInfo as a PEM `PUBLIC KEY`.
pub(crate) fn spki_pem(point: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(spki_der(point));
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
        .into_bytes()
}
