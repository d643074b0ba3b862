//! Typed errors for keys, sealing and opening; each message names what failed.

use crate::keys::KeyId;
use crate::suite::Suite;

/// A recipient key could not be parsed from text.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The text does not start with the expected prefix.
    #[error("not a Cloister {kind} key: expected text starting with \"{expected}\"")]
    WrongPrefix {
        /// "public" or "secret".
        kind: &'static str,
        /// The prefix that was expected.
        expected: &'static str,
    },
    /// A secret key was given where a public key is expected.
    #[error(
        "this is a secret key, but a public key is expected here (share only the public key: \
         \"cloister-hpke-x25519:...\" or \"cloister-sm2:...\")"
    )]
    SecretGivenForPublic,
    /// The part after the prefix is not base64url without padding.
    #[error("the {kind} key is not valid base64url (without padding) after its prefix")]
    BadEncoding {
        /// "public" or "secret".
        kind: &'static str,
    },
    /// The decoded key does not have 32 bytes.
    #[error("the {kind} key decodes to {len} bytes, expected 32")]
    WrongLength {
        /// "public" or "secret".
        kind: &'static str,
        /// The decoded length.
        len: usize,
    },
    /// A key-broker reference (`cloister-broker:kb_…:cloister-hpke-x25519:…`) is malformed.
    #[error(
        "not a key-broker reference: {0} (expected \"cloister-broker:kb_<id>:cloister-hpke-x25519:<key>\", \
         as shown by the key broker when the key was created)"
    )]
    BrokerReference(String),
    /// An SM2 key (`cloister-sm2:…` / `cloister-sm2-secret:…`) has the wrong length, is not a
    /// point on the curve or is not a valid scalar.
    #[error("not a usable SM2 key: {0}")]
    Sm2Key(String),
}

/// Sealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// No recipients were given.
    #[error("recipient list is empty: give at least one recipient public key")]
    NoRecipients,
    /// More recipients than the format allows.
    #[error("too many recipients: {count} given, at most {max} allowed")]
    TooManyRecipients {
        /// Number given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same recipient key was given twice.
    #[error("recipient {0} is listed more than once")]
    DuplicateRecipient(KeyId),
    /// Metadata exceeds a format limit or is not allowed.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// The chunk size is outside the allowed range.
    #[error("chunk size {size} is out of range: it must be between {min} and {max} bytes")]
    InvalidChunkSize {
        /// Requested size.
        size: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// Reading the plaintext failed.
    #[error("failed to read the plaintext input: {0}")]
    Read(#[source] std::io::Error),
    /// Writing the envelope failed.
    #[error("failed to write the sealed envelope: {0}")]
    Write(#[source] std::io::Error),
    /// The input has more chunks than the 32-bit STREAM counter allows.
    #[error("input is too large: more than 2^32 chunks; use a larger chunk size")]
    TooManyChunks,
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Randomness,
    /// HPKE key encapsulation failed (for example an all-zero, low-order recipient key).
    #[error("failed to encrypt the data key to recipient {0} (invalid public key?)")]
    Encapsulation(KeyId),
    /// The recipients' keys belong to different cipher suites (X25519 and SM2).
    #[error(
        "recipients use different suites: recipient 0 uses the {first} but recipient {index} \
         uses the {other} — an envelope has one cipher suite; seal separately for each suite"
    )]
    MixedSuites {
        /// The suite of the first recipient.
        first: Suite,
        /// Zero-based index of the first recipient of another suite.
        index: usize,
        /// That recipient's suite.
        other: Suite,
    },
    /// Internal AEAD failure (should not happen).
    #[error("internal encryption failure")]
    Crypto,
}

/// Reading or opening an envelope failed.
///
/// When [`crate::open`] returns an error, output already written for earlier chunks is
/// authentic *only as a prefix*: the envelope may have been truncated or altered later. Discard
/// it (write to a temporary file and rename only on success).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading the envelope failed.
    #[error("failed to read the sealed envelope: {0}")]
    Read(#[source] std::io::Error),
    /// Writing plaintext failed.
    #[error("failed to write the decrypted output: {0}")]
    Write(#[source] std::io::Error),
    /// The input does not start with the envelope magic.
    #[error("not a Cloister sealed envelope (bad magic)")]
    BadMagic,
    /// The envelope version is not supported by this build.
    #[error("unsupported envelope version {0} (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// The input ends inside the header.
    #[error("header is truncated")]
    HeaderTruncated,
    /// The declared header length is outside the allowed range.
    #[error("header length {len} is out of range (allowed: {min}..={max} bytes)")]
    HeaderLength {
        /// Declared length.
        len: u32,
        /// Smallest possible header.
        min: u32,
        /// Largest allowed header.
        max: u32,
    },
    /// The cipher suite is not supported.
    #[error(
        "unsupported cipher suite: KEM 0x{kem:04x}, KDF 0x{kdf:04x}, AEAD 0x{aead:04x}, \
         payload 0x{payload:04x} (supported: 0x0020/0x0001/0x0002 payload 0x0001, the X25519 \
         suite; 0x5302/0x5303/0x5304 payload 0x0002, the ShangMi suite)"
    )]
    UnsupportedSuite {
        /// HPKE KEM id.
        kem: u16,
        /// HPKE KDF id.
        kdf: u16,
        /// HPKE AEAD id.
        aead: u16,
        /// Payload (body) scheme id.
        payload: u16,
    },
    /// A header field is malformed or violates a limit.
    #[error("malformed envelope header: {0}")]
    MalformedHeader(String),
    /// The header lists no recipients.
    #[error("recipient list is empty")]
    NoRecipients,
    /// The key belongs to another cipher suite than the envelope.
    #[error(
        "wrong key type: the envelope uses the {envelope} but this key is for the {key}; use \
         the matching recipient key"
    )]
    WrongKeyType {
        /// The suite of the key given.
        key: Suite,
        /// The suite of the envelope.
        envelope: Suite,
    },
    /// The key is not among the recipients.
    #[error("this key is not one of the envelope's recipients")]
    NotARecipient,
    /// The recipient entry for this key did not decrypt.
    #[error(
        "the recipient entry for this key failed to decrypt (entry corrupted or header changed)"
    )]
    RecipientDecryptFailed,
    /// A body chunk failed AEAD authentication.
    #[error(
        "chunk {index} failed authentication (ciphertext modified, reordered, or header changed)"
    )]
    ChunkAuthentication {
        /// Zero-based index of the chunk.
        index: u64,
    },
    /// The body ends before its final chunk.
    #[error("envelope is truncated: the final chunk is missing")]
    Truncated,
    /// Data follows the final chunk.
    #[error("unexpected data after the final chunk")]
    TrailingData,
    /// The body is not canonical (an empty final chunk after non-empty chunks).
    #[error("malformed body: empty final chunk {index} after data chunks")]
    EmptyFinalChunk {
        /// Zero-based index of the chunk.
        index: u64,
    },
    /// The body has more chunks than the 32-bit STREAM counter allows.
    #[error("envelope body has more than 2^32 chunks")]
    TooManyChunks,
    /// A wrapped (released) secret key has the wrong length.
    #[error(
        "the wrapped key is {len} bytes, expected {expected} (truncated or not a released key)"
    )]
    WrappedKeyLength {
        /// The length given.
        len: usize,
        /// The length of a wrapped key.
        expected: usize,
    },
    /// A wrapped (released) secret key did not decrypt.
    #[error(
        "the released key does not decrypt with this key: it was wrapped to another key, for \
         another release context (key id, instance, job), or it was modified"
    )]
    KeyUnwrapFailed,
}
