//! Arm PSA attestation tokens through a bridge to `psa_initial_attest_get_token` (TF-M's
//! Initial Attestation service, or OP-TEE's PSA attestation TA).
//!
//! Linux has no standard interface to the PSA attestation service: the secure world answers a
//! PSA client call (TF-M over a mailbox or the FF-M client API, OP-TEE over the TEE client API).
//! This backend speaks to a **bridge** that makes that call, a kernel driver's attribute files or
//! a small daemon that owns the TEE session, exposed as one directory holding two files:
//!
//! - `challenge`: written by the attester, one `write(2)` of the 64-byte challenge (the SHA-512
//!   of the runtime data, which PSA calls the auth challenge; sizes 32 and 48 exist in PSA, but a
//!   Cloister verifier binds only 64 bytes). The file exists before the write; it is opened
//!   without create or truncate, as a configfs or sysfs attribute would be.
//! - `token`: read by the attester after the write, whole, in one open: the token
//!   `psa_initial_attest_get_token` returned for the latest challenge (a COSE_Sign1 or
//!   COSE_Mac0, tagged or not). A bridge that computes the token on demand blocks the read until
//!   it is ready (a FIFO or a blocking attribute).
//!
//! The attester then checks that the token's nonce (claim 10, or −75008 in
//! `PSA_IOT_PROFILE_1`) is the challenge it wrote: another process writing the same bridge at
//! the same time would otherwise hand it a token for its own challenge. On a mismatch the
//! exchange is repeated (three times by default), then refused with
//! [`AttestError::ReportDataMismatch`]. Within one process, attestations through the same
//! [`PsaBridge`] are serialised. The signature is not checked here: that is the verifier's job,
//! against the IAK it trusts.
//!
//! Open it with [`PsaBridge::open`] on the bridge's directory; it is an [`Attester`] for
//! [`TeeKind::Psa`] (a device key, never isolated compute: its evidence admits a device but
//! releases no key).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ciborium::value::Value;
use cloister_types::{RuntimeData, TeeKind, UnifiedEvidence};

use crate::{AttestError, Attester, io_error, malformed};

/// How many times the exchange is repeated when the token is for another challenge.
const DEFAULT_ATTEMPTS: u32 = 3;
/// Genuine tokens are well under a kilobyte.
const MAX_TOKEN_LEN: u64 = 16 * 1024;

/// Attester over a PSA attestation bridge directory (see the module documentation).
#[derive(Debug)]
pub struct PsaBridge {
    dir: PathBuf,
    attempts: u32,
    /// Serialises the write-then-read exchanges of this process.
    exchange: Mutex<()>,
}

impl PsaBridge {
    /// The bridge at `dir`, which must hold the `challenge` and `token` files.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let dir = dir.into();
        for name in ["challenge", "token"] {
            let path = dir.join(name);
            fs::metadata(&path)
                .map_err(|e| io_error("opening the PSA attestation bridge", &path, e))?;
        }
        Ok(Self { dir, attempts: DEFAULT_ATTEMPTS, exchange: Mutex::new(()) })
    }

    /// Repeats a mismatched exchange up to `attempts` times in all (at least once).
    #[must_use]
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// The bridge's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes `challenge` and reads back the token that carries it as its nonce.
    pub fn get_token(&self, challenge: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        // A poisoned lock only means another exchange panicked; the files hold no state of ours.
        let _exchange = self.exchange.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let challenge_path = self.dir.join("challenge");
        let token_path = self.dir.join("token");
        let mut last_nonce = Vec::new();
        for _ in 0..self.attempts {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .open(&challenge_path)
                .map_err(|e| io_error("opening", &challenge_path, e))?;
            file.write_all(challenge).map_err(|e| io_error("writing", &challenge_path, e))?;
            drop(file);
            let token = read_token(&token_path)?;
            let nonce = token_nonce(&token).map_err(|what| malformed(&token_path, what))?;
            if nonce == challenge {
                return Ok(token);
            }
            last_nonce = nonce;
        }
        Err(AttestError::ReportDataMismatch {
            path: token_path,
            expected: hex::encode(challenge),
            found: hex::encode(last_nonce),
        })
    }
}

impl Attester for PsaBridge {
    fn tee(&self) -> TeeKind {
        TeeKind::Psa
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let challenge = crate::report_data_of(runtime_data)?;
        let token = self.get_token(&challenge)?;
        Ok(crate::unified(TeeKind::Psa, token, runtime_data, &[]))
    }
}

fn read_token(path: &Path) -> Result<Vec<u8>, AttestError> {
    use std::io::Read as _;
    let file = fs::File::open(path).map_err(|e| io_error("opening", path, e))?;
    let mut token = Vec::new();
    file.take(MAX_TOKEN_LEN + 1)
        .read_to_end(&mut token)
        .map_err(|e| io_error("reading", path, e))?;
    if token.is_empty() {
        return Err(malformed(path, "the bridge returned no token"));
    }
    if token.len() as u64 > MAX_TOKEN_LEN {
        return Err(malformed(path, format!("the token is over {MAX_TOKEN_LEN} bytes")));
    }
    Ok(token)
}

/// The nonce a PSA token carries (EAT claim 10, or −75008 in PSA_IOT_PROFILE_1), read without
/// checking the signature.
fn token_nonce(token: &[u8]) -> Result<Vec<u8>, String> {
    let value: Value = ciborium::from_reader(token).map_err(|e| format!("not CBOR: {e}"))?;
    let message = match value {
        Value::Tag(17 | 18, inner) => *inner,
        Value::Tag(tag, _) => return Err(format!("CBOR tag {tag} is not COSE_Sign1 or COSE_Mac0")),
        other => other,
    };
    let payload = match message {
        Value::Array(items) if items.len() == 4 => match items.into_iter().nth(2) {
            Some(Value::Bytes(payload)) => payload,
            _ => return Err("the COSE message has no embedded payload".into()),
        },
        _ => return Err("not a COSE_Sign1 or COSE_Mac0 message".into()),
    };
    let claims: Value =
        ciborium::from_reader(payload.as_slice()).map_err(|e| format!("claims not CBOR: {e}"))?;
    let Value::Map(entries) = claims else {
        return Err("the claims are not a map".into());
    };
    entries
        .into_iter()
        .find_map(|(key, value)| match (key, value) {
            (Value::Integer(key), Value::Bytes(nonce))
                if matches!(i128::from(key), 10 | -75008) =>
            {
                Some(nonce)
            }
            _ => None,
        })
        .ok_or_else(|| "the token carries no nonce".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(tag: Option<u64>, key: i64, nonce: &[u8]) -> Vec<u8> {
        let mut claims = Vec::new();
        ciborium::into_writer(
            &Value::Map(vec![(Value::Integer(key.into()), Value::Bytes(nonce.to_vec()))]),
            &mut claims,
        )
        .unwrap();
        let message = Value::Array(vec![
            Value::Bytes(vec![0xa1, 0x01, 0x26]),
            Value::Map(Vec::new()),
            Value::Bytes(claims),
            Value::Bytes(vec![0; 64]),
        ]);
        let message = match tag {
            Some(tag) => Value::Tag(tag, Box::new(message)),
            None => message,
        };
        let mut bytes = Vec::new();
        ciborium::into_writer(&message, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn the_nonce_is_found_in_every_profile_and_envelope() {
        for tag in [Some(18), Some(17), None] {
            for key in [10, -75008] {
                assert_eq!(token_nonce(&token(tag, key, &[7; 64])).unwrap(), vec![7; 64]);
            }
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        assert!(token_nonce(&token(Some(99), 10, &[7; 64])).is_err());
        assert!(token_nonce(&token(Some(18), 11, &[7; 64])).is_err());
        assert!(token_nonce(b"").is_err());
        assert!(token_nonce(&[0x84, 0x40, 0xa0, 0xf6, 0x40]).is_err());
    }
}
