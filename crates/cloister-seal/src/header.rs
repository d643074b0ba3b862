//! The envelope header: byte layout, limits, canonical encoding and a bounded parser.
//!
//! Layout (all integers big-endian; see `docs/formats/sealed-envelope.md` for the tables):
//!
//! ```text
//! magic[8] version u8 header_len u32
//! kem u16 kdf u16 aead u16 payload u16 chunk_size u32 nonce_prefix[7]
//! content_type str16  object_id str16  attr_count u8  (key str8, value str16)*
//! recipient_count u16 (kind u8, body_len u16, body[body_len])*
//! ```
//! `str8`/`str16` are a u8/u16 byte length followed by UTF-8 bytes. Everything before
//! `recipient_count` is the *header prefix* bound into every recipient's wrap of the DEK (the
//! HPKE AAD, or the SM4-GCM AAD in the ShangMi suite). The four suite ids select the suite
//! ([`Suite`]); each suite has its own recipient kinds.

use std::collections::BTreeMap;

use crate::error::OpenError;
use crate::keys::{KEY_ID_LEN, KeyId};
use crate::suite::Suite;

/// The eight magic bytes: `\x89CLSEAL\n`.
pub const MAGIC: [u8; 8] = *b"\x89CLSEAL\n";
/// The envelope format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// HPKE KEM id: DHKEM(X25519, HKDF-SHA256).
pub const KEM_ID: u16 = 0x0020;
/// HPKE KDF id: HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// HPKE AEAD id: AES-256-GCM.
pub const AEAD_ID: u16 = 0x0002;
/// Payload scheme id: STREAM over AES-256-GCM with a 7-byte prefix, 32-bit big-endian counter
/// and last-chunk flag byte, key = HKDF-SHA256(DEK), AAD = SHA-256(header).
pub const PAYLOAD_ID: u16 = 0x0001;

/// ShangMi suite "KEM" id (Cloister's own, not an HPKE registry value): the DEK is wrapped
/// with SM2 public-key encryption (GB/T 32918.4) of a wrap secret plus SM4-GCM.
pub const SM_KEM_ID: u16 = 0x5302;
/// ShangMi suite KDF id (Cloister's own): HKDF (RFC 5869) over SM3.
pub const SM_KDF_ID: u16 = 0x5303;
/// ShangMi suite AEAD id (Cloister's own): SM4-GCM, 128-bit key, 96-bit nonce, 128-bit tag.
pub const SM_AEAD_ID: u16 = 0x5304;
/// ShangMi suite payload id: STREAM over SM4-GCM with the same nonce layout as
/// [`PAYLOAD_ID`], key = HKDF-SM3(DEK), AAD = SM3(header).
pub const SM_PAYLOAD_ID: u16 = 0x0002;

/// Recipient kind 1: HPKE Base mode to an X25519 public key.
pub const RECIPIENT_KIND_HPKE_X25519: u8 = 1;
/// Recipient kind 2: HPKE Base mode to a key-broker key. Body layout and cryptography are those
/// of kind 1; the kind tells a reader that the secret is held by a key broker, which releases it
/// to attested enclaves.
pub const RECIPIENT_KIND_BROKER: u8 = 2;
/// Recipient kind 3 (ShangMi suite only): the DEK wrapped to an SM2 public key.
pub const RECIPIENT_KIND_SM2: u8 = 3;
/// Length of an HPKE encapsulated key for DHKEM(X25519).
pub const ENC_LEN: usize = 32;
/// Length of the wrapped data-encryption key (32-byte DEK + 16-byte tag).
pub const WRAPPED_DEK_LEN: usize = 48;
/// Body length of a kind-1 (and kind-2) recipient entry.
pub const HPKE_X25519_ENTRY_LEN: usize = KEY_ID_LEN + ENC_LEN + WRAPPED_DEK_LEN;
/// Length of the SM2 ciphertext of the 32-byte wrap secret: C1 (uncompressed point, 65) ‖
/// C3 (SM3 hash, 32) ‖ C2 (32).
pub const SM2_CIPHERTEXT_LEN: usize = 65 + 32 + 32;
/// Body length of a kind-3 (SM2) recipient entry: key id ‖ SM2 ciphertext ‖ wrapped DEK.
pub const SM2_ENTRY_LEN: usize = KEY_ID_LEN + SM2_CIPHERTEXT_LEN + WRAPPED_DEK_LEN;

/// Length of the fixed preamble (magic, version, header length).
pub const PREAMBLE_LEN: usize = 13;
/// Length of the nonce prefix.
pub const NONCE_PREFIX_LEN: usize = 7;
/// Smallest possible header: preamble, suite, chunk size, nonce prefix, two empty strings, zero
/// attributes, recipient count.
pub const MIN_HEADER_LEN: usize = PREAMBLE_LEN + 8 + 4 + NONCE_PREFIX_LEN + 2 + 2 + 1 + 2;
/// Largest header accepted (1 MiB); checked before allocating.
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Largest content type or object id, in bytes.
pub const MAX_FIELD_LEN: usize = 1024;
/// Most attributes.
pub const MAX_ATTRIBUTES: usize = 64;
/// Largest attribute key, in bytes (must be non-empty).
pub const MAX_ATTRIBUTE_KEY_LEN: usize = 255;
/// Largest attribute value, in bytes.
pub const MAX_ATTRIBUTE_VALUE_LEN: usize = 4096;
/// Most recipient entries.
pub const MAX_RECIPIENTS: usize = 1024;
/// Largest body of a recipient entry of an unknown kind.
pub const MAX_RECIPIENT_ENTRY_LEN: usize = 512;
/// Smallest chunk size.
pub const MIN_CHUNK_SIZE: u32 = 64;
/// Largest chunk size (16 MiB).
pub const MAX_CHUNK_SIZE: u32 = 16 << 20;
/// Default chunk size (64 KiB; see the benchmark in `examples/seal_bench.rs`).
pub const DEFAULT_CHUNK_SIZE: u32 = 64 << 10;

/// Authenticated but not secret metadata carried in the header.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Metadata {
    /// Media type of the plaintext, e.g. `text/csv` (≤ 1024 bytes).
    pub content_type: String,
    /// Object identifier chosen by the sealer (≤ 1024 bytes).
    pub object_id: String,
    /// Free-form attributes (≤ 64; keys 1..=255 bytes, values ≤ 4096 bytes).
    pub attributes: BTreeMap<String, String>,
}

impl Metadata {
    /// Checks the format limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.content_type.len() > MAX_FIELD_LEN {
            return Err(format!(
                "content type is {} bytes, at most {MAX_FIELD_LEN} allowed",
                self.content_type.len()
            ));
        }
        if self.object_id.len() > MAX_FIELD_LEN {
            return Err(format!(
                "object id is {} bytes, at most {MAX_FIELD_LEN} allowed",
                self.object_id.len()
            ));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "{} attributes given, at most {MAX_ATTRIBUTES} allowed",
                self.attributes.len()
            ));
        }
        for (k, v) in &self.attributes {
            if k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY_LEN {
                return Err(format!(
                    "attribute key {k:?} must be 1..={MAX_ATTRIBUTE_KEY_LEN} bytes"
                ));
            }
            if v.len() > MAX_ATTRIBUTE_VALUE_LEN {
                return Err(format!(
                    "attribute {k:?} value is {} bytes, at most {MAX_ATTRIBUTE_VALUE_LEN} allowed",
                    v.len()
                ));
            }
        }
        Ok(())
    }
}

/// One entry of the recipient list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipientEntry {
    kind: u8,
    body: Vec<u8>,
}

impl RecipientEntry {
    /// An HPKE X25519 entry of `kind` ([`RECIPIENT_KIND_HPKE_X25519`] or
    /// [`RECIPIENT_KIND_BROKER`]).
    pub(crate) fn hpke_x25519(kind: u8, key_id: KeyId, enc: &[u8], wrapped: &[u8]) -> Self {
        debug_assert!(is_hpke_kind(kind));
        let mut body = Vec::with_capacity(HPKE_X25519_ENTRY_LEN);
        body.extend_from_slice(&key_id.0);
        body.extend_from_slice(enc);
        body.extend_from_slice(wrapped);
        debug_assert_eq!(body.len(), HPKE_X25519_ENTRY_LEN);
        Self { kind, body }
    }

    /// An SM2 entry (kind 3).
    pub(crate) fn sm2(key_id: KeyId, ciphertext: &[u8], wrapped: &[u8]) -> Self {
        let mut body = Vec::with_capacity(SM2_ENTRY_LEN);
        body.extend_from_slice(&key_id.0);
        body.extend_from_slice(ciphertext);
        body.extend_from_slice(wrapped);
        debug_assert_eq!(body.len(), SM2_ENTRY_LEN);
        Self { kind: RECIPIENT_KIND_SM2, body }
    }

    /// The recipient kind byte (1 = HPKE X25519, 2 = HPKE X25519 to a key-broker key, 3 = SM2;
    /// other kinds are kept but not understood).
    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// Whether this entry is addressed to a key-broker key (kind 2): its secret is obtained by
    /// asking the key broker to release it.
    pub fn is_broker(&self) -> bool {
        self.kind == RECIPIENT_KIND_BROKER
    }

    /// The key id, for kinds 1, 2 and 3.
    pub fn key_id(&self) -> Option<KeyId> {
        is_known_kind(self.kind).then(|| {
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&self.body[..KEY_ID_LEN]);
            KeyId(id)
        })
    }

    /// `(encapsulated key, wrapped DEK)` for kinds 1 and 2.
    pub(crate) fn hpke_parts(&self) -> Option<(&[u8], &[u8])> {
        is_hpke_kind(self.kind).then(|| {
            let rest = &self.body[KEY_ID_LEN..];
            rest.split_at(ENC_LEN)
        })
    }

    /// `(SM2 ciphertext, wrapped DEK)` for kind 3.
    pub(crate) fn sm2_parts(&self) -> Option<(&[u8], &[u8])> {
        (self.kind == RECIPIENT_KIND_SM2).then(|| {
            let rest = &self.body[KEY_ID_LEN..];
            rest.split_at(SM2_CIPHERTEXT_LEN)
        })
    }
}

/// Kinds whose body is `key_id ‖ enc ‖ wrapped_dek` (HPKE to an X25519 key).
fn is_hpke_kind(kind: u8) -> bool {
    kind == RECIPIENT_KIND_HPKE_X25519 || kind == RECIPIENT_KIND_BROKER
}

/// Kinds this build understands (whose body starts with a key id).
fn is_known_kind(kind: u8) -> bool {
    is_hpke_kind(kind) || kind == RECIPIENT_KIND_SM2
}

/// The suite a known kind belongs to.
fn kind_suite(kind: u8) -> Option<Suite> {
    if is_hpke_kind(kind) {
        Some(Suite::X25519)
    } else if kind == RECIPIENT_KIND_SM2 {
        Some(Suite::ShangMi)
    } else {
        None
    }
}

/// A parsed (or freshly built) envelope header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    version: u8,
    suite: Suite,
    chunk_size: u32,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    metadata: Metadata,
    recipients: Vec<RecipientEntry>,
    /// Length of the header prefix (everything before the recipient count).
    prefix_len: usize,
    /// The complete serialized header.
    bytes: Vec<u8>,
    digest: [u8; 32],
}

impl Header {
    /// The authenticated metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The cipher suite named by the header's ids.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Key ids of the recipients of the kinds this build understands (1 and 2 in the X25519
    /// suite, 3 in the ShangMi suite), in header order.
    pub fn recipient_key_ids(&self) -> Vec<KeyId> {
        self.recipients.iter().filter_map(RecipientEntry::key_id).collect()
    }

    /// Key ids of the key-broker recipients (kind 2), in header order: the keys a reader without
    /// a listed key of its own can ask the key broker to release.
    pub fn broker_key_ids(&self) -> Vec<KeyId> {
        self.recipients
            .iter()
            .filter(|e| e.is_broker())
            .filter_map(RecipientEntry::key_id)
            .collect()
    }

    /// All recipient entries, including kinds this build does not understand.
    pub fn recipients(&self) -> &[RecipientEntry] {
        &self.recipients
    }

    /// Plaintext bytes per chunk.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Format version.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Serialized length of the header in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a header is never empty (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The serialized header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The suite's hash of the serialized header (SHA-256 in the X25519 suite, SM3 in the
    /// ShangMi suite): the AAD of every body chunk.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    pub(crate) fn nonce_prefix(&self) -> &[u8; NONCE_PREFIX_LEN] {
        &self.nonce_prefix
    }

    /// The header prefix bound as AAD into each recipient's wrap of the DEK.
    pub(crate) fn prefix_bytes(&self) -> &[u8] {
        &self.bytes[..self.prefix_len]
    }
}

/// Builds a header in two steps: the prefix first (it is HPKE AAD for the recipients), then the
/// recipients.
pub(crate) struct HeaderBuilder {
    suite: Suite,
    bytes: Vec<u8>,
    prefix_len: usize,
    chunk_size: u32,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    metadata: Metadata,
    recipient_count: usize,
}

impl HeaderBuilder {
    /// Encodes the prefix. `recipient_count` recipients of `suite` will follow.
    pub(crate) fn new(
        suite: Suite,
        metadata: &Metadata,
        chunk_size: u32,
        nonce_prefix: [u8; NONCE_PREFIX_LEN],
        recipient_count: usize,
    ) -> Result<Self, String> {
        metadata.validate()?;
        let entry_len = suite.entry_len();
        let mut b = Vec::with_capacity(256 + recipient_count * (3 + entry_len));
        b.extend_from_slice(&MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&[0; 4]); // header_len, patched below
        let (kem, kdf, aead, payload) = suite.ids();
        b.extend_from_slice(&kem.to_be_bytes());
        b.extend_from_slice(&kdf.to_be_bytes());
        b.extend_from_slice(&aead.to_be_bytes());
        b.extend_from_slice(&payload.to_be_bytes());
        b.extend_from_slice(&chunk_size.to_be_bytes());
        b.extend_from_slice(&nonce_prefix);
        put_str16(&mut b, &metadata.content_type);
        put_str16(&mut b, &metadata.object_id);
        // Lengths were validated above, so these casts cannot truncate.
        b.push(metadata.attributes.len() as u8);
        for (k, v) in &metadata.attributes {
            b.push(k.len() as u8);
            b.extend_from_slice(k.as_bytes());
            put_str16(&mut b, v);
        }
        let prefix_len = b.len();
        let total = prefix_len + 2 + recipient_count * (3 + entry_len);
        if total > MAX_HEADER_LEN {
            return Err(format!("header would be {total} bytes, at most {MAX_HEADER_LEN} allowed"));
        }
        b[9..13].copy_from_slice(&(total as u32).to_be_bytes());
        Ok(Self {
            suite,
            bytes: b,
            prefix_len,
            chunk_size,
            nonce_prefix,
            metadata: metadata.clone(),
            recipient_count,
        })
    }

    pub(crate) fn prefix(&self) -> &[u8] {
        &self.bytes[..self.prefix_len]
    }

    pub(crate) fn finish(mut self, recipients: Vec<RecipientEntry>) -> Header {
        assert_eq!(recipients.len(), self.recipient_count);
        self.bytes.extend_from_slice(&(recipients.len() as u16).to_be_bytes());
        for r in &recipients {
            self.bytes.push(r.kind);
            self.bytes.extend_from_slice(&(r.body.len() as u16).to_be_bytes());
            self.bytes.extend_from_slice(&r.body);
        }
        debug_assert_eq!(
            u32::from_be_bytes([self.bytes[9], self.bytes[10], self.bytes[11], self.bytes[12]])
                as usize,
            self.bytes.len()
        );
        let digest = self.suite.header_digest(&self.bytes);
        Header {
            version: VERSION,
            suite: self.suite,
            chunk_size: self.chunk_size,
            nonce_prefix: self.nonce_prefix,
            metadata: self.metadata,
            recipients,
            prefix_len: self.prefix_len,
            bytes: self.bytes,
            digest,
        }
    }
}

fn put_str16(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u16).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Checks the 13-byte preamble and returns the declared total header length.
///
/// `bytes` may be shorter than the preamble; then the result is `BadMagic` if what is there
/// already differs from the magic, else `HeaderTruncated`.
pub(crate) fn check_preamble(bytes: &[u8]) -> Result<usize, OpenError> {
    let m = bytes.len().min(MAGIC.len());
    if bytes[..m] != MAGIC[..m] {
        return Err(OpenError::BadMagic);
    }
    if bytes.len() <= MAGIC.len() {
        return Err(OpenError::HeaderTruncated);
    }
    if bytes[8] != VERSION {
        return Err(OpenError::UnsupportedVersion(bytes[8]));
    }
    if bytes.len() < PREAMBLE_LEN {
        return Err(OpenError::HeaderTruncated);
    }
    let len = u32::from_be_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    if (len as usize) < MIN_HEADER_LEN || len as usize > MAX_HEADER_LEN {
        return Err(OpenError::HeaderLength {
            len,
            min: MIN_HEADER_LEN as u32,
            max: MAX_HEADER_LEN as u32,
        });
    }
    Ok(len as usize)
}

/// A cursor over the header bytes that never reads past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], OpenError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            OpenError::MalformedHeader(format!("{what} runs past the declared header length"))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, OpenError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, OpenError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, OpenError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn string(&mut self, len: usize, max: usize, what: &str) -> Result<String, OpenError> {
        if len > max {
            return Err(OpenError::MalformedHeader(format!(
                "{what} is {len} bytes, at most {max} allowed"
            )));
        }
        let s = self.take(len, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| OpenError::MalformedHeader(format!("{what} is not valid UTF-8")))
    }
}

/// Parses a complete serialized header. `bytes` must be exactly the header (its length equal to
/// the declared header length); use [`parse_header_prefix`] for a header followed by a body.
pub fn parse_header(bytes: &[u8]) -> Result<Header, OpenError> {
    let len = check_preamble(bytes)?;
    if bytes.len() < len {
        return Err(OpenError::HeaderTruncated);
    }
    if bytes.len() > len {
        return Err(OpenError::MalformedHeader(format!(
            "{} bytes given but the header declares {len}",
            bytes.len()
        )));
    }
    parse_checked(bytes)
}

/// Parses the header at the start of `bytes` and returns it with its length.
pub fn parse_header_prefix(bytes: &[u8]) -> Result<(Header, usize), OpenError> {
    let head = &bytes[..bytes.len().min(PREAMBLE_LEN)];
    let len = check_preamble(head)?;
    if bytes.len() < len {
        return Err(OpenError::HeaderTruncated);
    }
    Ok((parse_checked(&bytes[..len])?, len))
}

/// Parses `bytes` whose preamble has been checked and whose length equals the declared length.
fn parse_checked(bytes: &[u8]) -> Result<Header, OpenError> {
    let mut c = Cursor { bytes, pos: PREAMBLE_LEN };
    let kem = c.u16("KEM id")?;
    let kdf = c.u16("KDF id")?;
    let aead = c.u16("AEAD id")?;
    let payload = c.u16("payload id")?;
    let suite = Suite::from_ids(kem, kdf, aead, payload).ok_or(OpenError::UnsupportedSuite {
        kem,
        kdf,
        aead,
        payload,
    })?;
    let chunk_size = c.u32("chunk size")?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(OpenError::MalformedHeader(format!(
            "chunk size {chunk_size} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}"
        )));
    }
    let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
    nonce_prefix.copy_from_slice(c.take(NONCE_PREFIX_LEN, "nonce prefix")?);
    let n = c.u16("content type length")? as usize;
    let content_type = c.string(n, MAX_FIELD_LEN, "content type")?;
    let n = c.u16("object id length")? as usize;
    let object_id = c.string(n, MAX_FIELD_LEN, "object id")?;
    let count = c.u8("attribute count")? as usize;
    if count > MAX_ATTRIBUTES {
        return Err(OpenError::MalformedHeader(format!(
            "{count} attributes, at most {MAX_ATTRIBUTES} allowed"
        )));
    }
    let mut attributes = BTreeMap::new();
    let mut previous: Option<String> = None;
    for _ in 0..count {
        let n = c.u8("attribute key length")? as usize;
        if n == 0 {
            return Err(OpenError::MalformedHeader("empty attribute key".to_string()));
        }
        let key = c.string(n, MAX_ATTRIBUTE_KEY_LEN, "attribute key")?;
        let n = c.u16("attribute value length")? as usize;
        let value = c.string(n, MAX_ATTRIBUTE_VALUE_LEN, "attribute value")?;
        if previous.as_ref().is_some_and(|p| *p >= key) {
            return Err(OpenError::MalformedHeader(format!(
                "attribute {key:?} is duplicated or out of order (keys must be strictly ascending)"
            )));
        }
        previous = Some(key.clone());
        attributes.insert(key, value);
    }
    let prefix_len = c.pos;
    let count = c.u16("recipient count")? as usize;
    if count == 0 {
        return Err(OpenError::NoRecipients);
    }
    if count > MAX_RECIPIENTS {
        return Err(OpenError::MalformedHeader(format!(
            "{count} recipients, at most {MAX_RECIPIENTS} allowed"
        )));
    }
    // Each entry needs at least 3 bytes, so a count that cannot fit is rejected before the
    // vector is allocated.
    if count * 3 > bytes.len() - c.pos {
        return Err(OpenError::MalformedHeader(format!(
            "{count} recipients do not fit in the declared header length"
        )));
    }
    let mut recipients = Vec::with_capacity(count);
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..count {
        let kind = c.u8("recipient kind")?;
        let n = c.u16("recipient entry length")? as usize;
        if let Some(kind_suite) = kind_suite(kind) {
            let what = match kind {
                RECIPIENT_KIND_BROKER => "key broker",
                RECIPIENT_KIND_SM2 => "SM2",
                _ => "HPKE X25519",
            };
            if kind_suite != suite {
                return Err(OpenError::MalformedHeader(format!(
                    "recipient {i} is a kind-{kind} ({what}) entry, which the {suite} does not use"
                )));
            }
            let expected = suite.entry_len();
            if n != expected {
                return Err(OpenError::MalformedHeader(format!(
                    "recipient {i} ({what}) entry is {n} bytes, expected {expected}"
                )));
            }
        } else if n > MAX_RECIPIENT_ENTRY_LEN {
            return Err(OpenError::MalformedHeader(format!(
                "recipient {i} entry is {n} bytes, at most {MAX_RECIPIENT_ENTRY_LEN} allowed"
            )));
        }
        let body = c.take(n, "recipient entry")?.to_vec();
        let entry = RecipientEntry { kind, body };
        if let Some(id) = entry.key_id()
            && !seen.insert(id)
        {
            return Err(OpenError::MalformedHeader(format!(
                "recipient {id} is listed more than once"
            )));
        }
        recipients.push(entry);
    }
    if c.pos != bytes.len() {
        return Err(OpenError::MalformedHeader(format!(
            "{} unused bytes at the end of the header",
            bytes.len() - c.pos
        )));
    }
    Ok(Header {
        version: VERSION,
        suite,
        chunk_size,
        nonce_prefix,
        metadata: Metadata { content_type, object_id, attributes },
        recipients,
        prefix_len,
        bytes: bytes.to_vec(),
        digest: suite.header_digest(bytes),
    })
}
