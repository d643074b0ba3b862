//! Byte-string newtypes with a fixed text encoding on the wire: lowercase hex and unpadded base64url.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that travel as a lowercase hex string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hex(pub Vec<u8>);

impl Hex {
    /// Parses a hex string; upper case is accepted on input, output is always lower case.
    pub fn parse(text: &str) -> Result<Self, hex::FromHexError> {
        hex::decode(text).map(Hex)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({self})")
    }
}

impl From<&[u8]> for Hex {
    fn from(bytes: &[u8]) -> Self {
        Hex(bytes.to_vec())
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Hex::parse(&text).map_err(|e| serde::de::Error::custom(format!("not a hex string: {e}")))
    }
}

/// Bytes that travel as an unpadded base64url string (RFC 4648 §5).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Url(pub Vec<u8>);

impl Base64Url {
    /// Decodes unpadded base64url; padding and the standard alphabet are rejected.
    pub fn parse(text: &str) -> Result<Self, base64::DecodeError> {
        URL_SAFE_NO_PAD.decode(text).map(Base64Url)
    }

    /// Encodes bytes as unpadded base64url.
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Base64Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Url({} bytes)", self.0.len())
    }
}

impl Serialize for Base64Url {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&Base64Url::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Url {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Base64Url::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("not unpadded base64url: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_and_round_trips() {
        let h = Hex(vec![0xAB, 0x01]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"ab01\"");
        let back: Hex = serde_json::from_str("\"AB01\"").unwrap();
        assert_eq!(back, h);
        assert!(serde_json::from_str::<Hex>("\"abc\"").is_err());
    }

    #[test]
    fn base64url_rejects_padding_and_standard_alphabet() {
        assert_eq!(Base64Url::encode(&[0xfb, 0xff]), "-_8");
        assert!(Base64Url::parse("+/8").is_err());
        assert!(Base64Url::parse("-_8=").is_err());
    }
}
