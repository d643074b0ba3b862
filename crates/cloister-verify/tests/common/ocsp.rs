//! OCSP responses (RFC 6960) built by hand in DER for tests, signed with test keys: each field is
//! the test's choice, so every check of the verifier can be made to fail alone.

use der::Encode as _;
use sha2::Digest as _;

use super::pki::TestCa;
use cloister_verify::x509::Cert;

/// What the single response says.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Status {
    Good,
    /// Revoked at this time (unix seconds), reason keyCompromise.
    Revoked(i64),
    Unknown,
}

/// How the response is made.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) status: Status,
    pub(crate) this_update: i64,
    pub(crate) next_update: Option<i64>,
    /// The responseStatus (0 = successful).
    pub(crate) response_status: u8,
    /// Name the responder by key hash instead of by name.
    pub(crate) by_key: bool,
    /// Flip a bit of the signature.
    pub(crate) bad_signature: bool,
}

impl Entry {
    /// A good response valid from an hour before `now` to a day after.
    pub(crate) fn good(now: i64) -> Self {
        Self {
            status: Status::Good,
            this_update: now - 3600,
            next_update: Some(now + 86_400),
            response_status: 0,
            by_key: false,
            bad_signature: false,
        }
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn time(unix: i64) -> Vec<u8> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).unwrap();
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    tlv(0x18, text.as_bytes())
}

/// The OID 2.16.840.1.101.3.4.2.1 (SHA-256).
const SHA256_OID: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// ecdsa-with-SHA384.
const ECDSA_SHA384_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// id-pkix-ocsp-basic.
const OCSP_BASIC_OID: &[u8] = &[0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// An OCSP response about `cert` (issued by `issuer`), signed by `signer`; `responder` (when the
/// signer is not the issuer) goes into the response's certs.
pub(crate) fn response(
    cert: &[u8],
    issuer: &[u8],
    entry: &Entry,
    signer: &TestCa,
    responder: Option<&TestCa>,
) -> Vec<u8> {
    let cert = Cert::from_der(cert).unwrap();
    let issuer = Cert::from_der(issuer).unwrap();
    let issuer_name = issuer.parsed().tbs_certificate().subject().to_der().unwrap();
    let issuer_key =
        issuer.parsed().tbs_certificate().subject_public_key_info().subject_public_key.raw_bytes();
    let serial = cert.parsed().tbs_certificate().serial_number().as_bytes();
    let cert_id = seq(&[
        &seq(&[SHA256_OID, &[0x05, 0x00]]),
        &tlv(0x04, &sha2::Sha256::digest(&issuer_name)),
        &tlv(0x04, &sha2::Sha256::digest(issuer_key)),
        &tlv(0x02, serial),
    ]);
    let status = match entry.status {
        Status::Good => vec![0x80, 0x00],
        Status::Revoked(at) => tlv(0xa1, &[time(at), tlv(0xa0, &[0x0a, 0x01, 0x01])].concat()),
        Status::Unknown => vec![0x82, 0x00],
    };
    let next = entry.next_update.map(|t| tlv(0xa0, &time(t))).unwrap_or_default();
    let single = seq(&[&cert_id, &status, &time(entry.this_update), &next]);
    let signer_cert = Cert::from_der(&signer.der).unwrap();
    let responder_id = if entry.by_key {
        let bits = signer_cert
            .parsed()
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes();
        use sha1::Digest as _;
        tlv(0xa2, &tlv(0x04, &sha1::Sha1::digest(bits)))
    } else {
        tlv(0xa1, &signer_cert.parsed().tbs_certificate().subject().to_der().unwrap())
    };
    let tbs = seq(&[&responder_id, &time(entry.this_update), &seq(&[&single])]);
    let mut signature = signer.sign_der(&tbs);
    if entry.bad_signature {
        let last = signature.len() - 1;
        signature[last] ^= 1;
    }
    let bits = tlv(0x03, &[&[0u8][..], &signature].concat());
    let certs = match responder {
        Some(r) => tlv(0xa0, &seq(&[&r.der])),
        None => Vec::new(),
    };
    let basic = seq(&[&tbs, &seq(&[ECDSA_SHA384_OID]), &bits, &certs]);
    let bytes = tlv(0xa0, &seq(&[OCSP_BASIC_OID, &tlv(0x04, &basic)]));
    if entry.response_status != 0 {
        return seq(&[&[0x0a, 0x01, entry.response_status]]);
    }
    seq(&[&[0x0a, 0x01, 0x00], &bytes])
}
