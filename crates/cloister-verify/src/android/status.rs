//! Google's attestation certificate status list (revocation), given as a collateral document.
//!
//! Google publishes it at `https://android.googleapis.com/attestation/status` as JSON:
//! `{"entries": {"<serial>": {"status": "REVOKED" | "SUSPENDED", "reason": "KEY_COMPROMISE" |
//! …, "comment"?: …, "expires"?: …}}}`. A serial is the certificate's serial number in
//! lowercase hexadecimal without leading zeros (Java's `BigInteger.toString(16)`); keys are
//! compared after lowercasing and removing leading zeros. Any entry found for a certificate of
//! the chain refuses the evidence, whatever its status: Google lists only certificates that
//! must not be trusted (an unknown status is not a reason to trust one).

use std::collections::BTreeMap;

use serde::Deserialize;

/// One listed certificate.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StatusEntry {
    /// `REVOKED` or `SUSPENDED`.
    pub status: String,
    /// Why, when given (`KEY_COMPROMISE`, `CA_COMPROMISE`, `SUPERSEDED`, `SOFTWARE_FLAW`, …).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Deserialize)]
struct RawList {
    entries: BTreeMap<String, StatusEntry>,
}

/// A parsed status list: normalised serial → entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusList {
    entries: BTreeMap<String, StatusEntry>,
}

impl StatusList {
    /// Parses a status list document; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let raw: RawList = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a status list {{\"entries\": {{serial: …}}}}: {e}"))?;
        let mut entries = BTreeMap::new();
        for (serial, entry) in raw.entries {
            let trimmed = serial.trim();
            let key = match normalise(trimmed) {
                zeros if zeros.is_empty() && !trimmed.is_empty() => "0".to_owned(),
                key => key,
            };
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("entry {serial:?} is not a hexadecimal serial number"));
            }
            entries.insert(key, entry);
        }
        Ok(Self { entries })
    }

    /// Adds every entry of `other`.
    pub fn merge(&mut self, other: StatusList) {
        self.entries.extend(other.entries);
    }

    /// The entry of the certificate whose serial number is `serial` (DER content bytes).
    pub fn lookup(&self, serial: &[u8]) -> Option<(&str, &StatusEntry)> {
        let key = serial_hex(serial);
        self.entries.get_key_value(&key).map(|(k, v)| (k.as_str(), v))
    }

    /// How many serials are listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whether a collateral document looks like a status list (a JSON object with `entries`).
pub fn looks_like_status_list(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .is_ok_and(|value| value.get("entries").is_some())
}

/// A serial number's content bytes as lowercase hex without leading zeros (`0` for zero).
pub fn serial_hex(serial: &[u8]) -> String {
    let text = normalise(&hex::encode(serial));
    if text.is_empty() { "0".to_owned() } else { text }
}

fn normalise(serial: &str) -> String {
    serial.trim().to_ascii_lowercase().trim_start_matches('0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_without_leading_zeros() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8a01");
        assert_eq!(serial_hex(&[0x01]), "1");
        assert_eq!(serial_hex(&[0x00]), "0");
        let list =
            StatusList::parse(br#"{"entries":{"08A01":{"status":"REVOKED"}}}"#).unwrap_or_default();
        assert_eq!(list.lookup(&[0x00, 0x8a, 0x01]).map(|(k, _)| k), Some("8a01"));
        assert!(list.lookup(&[0x8a]).is_none());
        assert!(StatusList::parse(br#"{"entries":{"xyz":{"status":"REVOKED"}}}"#).is_err());
        assert!(StatusList::parse(br#"{"entries":{"1":{}}}"#).is_err());
    }
}
