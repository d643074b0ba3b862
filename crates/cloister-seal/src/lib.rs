//! The Cloister sealed envelope: HPKE (RFC 9180) recipients and a chunked STREAM AES-256-GCM body.
//!
//! An envelope is a header (magic, version, cipher suite, chunk size, nonce prefix,
//! authenticated metadata, recipients) followed by the body: the plaintext split into chunks,
//! each sealed with AES-256-GCM under a key derived from a random per-envelope data-encryption
//! key (DEK), with nonce `prefix ‖ BE32(counter) ‖ last-flag` and AAD = SHA-256(header). Each
//! recipient gets the DEK wrapped with HPKE Base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! AES-256-GCM (suite 0x0020/0x0001/0x0002). The byte layout is specified in
//! `docs/formats/sealed-envelope.md`.
//!
//! A second cipher suite, the ShangMi (GM/T) suite ([`Suite::ShangMi`]), has the same header
//! layout and STREAM body: the DEK is wrapped to SM2 recipient keys ([`Sm2PublicKey`], SM2
//! public-key encryption of a wrap secret plus SM4-GCM), the body is SM4-GCM keyed by
//! HKDF-SM3(DEK) with AAD = SM3(header). The sealer takes the suite from the recipients' key
//! types ([`SealError::MixedSuites`] if they differ); [`open_with`] and [`open_to_vec_with`]
//! open either suite with a key of the matching type.
//!
//! Sealing and opening stream in constant memory: the caller's thread reads and writes in order,
//! and worker threads (one per core) seal or open batches of chunks, at most two batches per
//! worker in flight. [`open`] writes a chunk's plaintext only after that chunk and every chunk
//! before it authenticated, but truncation of the whole body is only detectable at its end: **a
//! streaming consumer must discard everything written when [`open`] returns an error** (write to
//! a temporary file and rename it only on success).
//!
//! The crate does no I/O beyond the `Read`/`Write` it is given; its worker threads live only as
//! long as the call that started them.
//!
//! ```
//! use cloister_seal::{Metadata, RecipientSecretKey, open_to_vec, seal_to_vec};
//! let key = RecipientSecretKey::generate();
//! let meta = Metadata { content_type: "text/plain".into(), ..Metadata::default() };
//! let envelope = seal_to_vec(&[key.public_key()], &meta, b"hello").unwrap();
//! let (header, plaintext) = open_to_vec(&key, &envelope).unwrap();
//! assert_eq!(header.metadata(), &meta);
//! assert_eq!(plaintext.as_slice(), b"hello");
//! ```

mod body;
mod broker;
mod error;
mod header;
mod keys;
mod pool;
mod sm;
mod sm2_keys;
mod stream;
mod suite;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::io::{self, Read, Write};

use hpke::aead::AeadTag;
use hpke::inout::InOutBuf;
use hpke::rand_core::{TryCryptoRng, TryRng};
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use zeroize::Zeroizing;

pub use broker::{
    BROKER_REFERENCE_PREFIX, BrokerRecipient, KEY_RELEASE_INFO, WRAPPED_SECRET_KEY_LEN,
    unwrap_secret_key, wrap_secret_key,
};
pub use error::{KeyError, OpenError, SealError};
pub use header::{
    AEAD_ID, DEFAULT_CHUNK_SIZE, ENC_LEN, HPKE_X25519_ENTRY_LEN, Header, KDF_ID, KEM_ID, MAGIC,
    MAX_ATTRIBUTE_KEY_LEN, MAX_ATTRIBUTE_VALUE_LEN, MAX_ATTRIBUTES, MAX_CHUNK_SIZE, MAX_FIELD_LEN,
    MAX_HEADER_LEN, MAX_RECIPIENT_ENTRY_LEN, MAX_RECIPIENTS, MIN_CHUNK_SIZE, MIN_HEADER_LEN,
    Metadata, NONCE_PREFIX_LEN, PAYLOAD_ID, PREAMBLE_LEN, RECIPIENT_KIND_BROKER,
    RECIPIENT_KIND_HPKE_X25519, RECIPIENT_KIND_SM2, RecipientEntry, SM_AEAD_ID, SM_KDF_ID,
    SM_KEM_ID, SM_PAYLOAD_ID, SM2_CIPHERTEXT_LEN, SM2_ENTRY_LEN, VERSION, WRAPPED_DEK_LEN,
};
pub use keys::{
    KEY_ID_LEN, KeyId, PUBLIC_KEY_PREFIX, RecipientPublicKey, RecipientSecretKey, SECRET_KEY_PREFIX,
};
pub use sm2_keys::{
    EnvelopeSecretKey, OpeningKey, SM2_PUBLIC_KEY_LEN, SM2_PUBLIC_KEY_PREFIX,
    SM2_SECRET_KEY_PREFIX, SM2_UNCOMPRESSED_LEN, Sm2PublicKey, Sm2SecretKey,
};
pub use stream::TAG_LEN;
pub use suite::Suite;

use header::HeaderBuilder;
use stream::ChunkCipher;

pub(crate) type HpkeKem = hpke::kem::X25519HkdfSha256;
pub(crate) type HpkeKdf = hpke::kdf::HkdfSha256;
pub(crate) type HpkeAead = hpke::aead::AesGcm256;

/// HPKE `info` for wrapping the DEK (domain separation, includes the format version).
pub const HPKE_INFO: &[u8] = b"cloister-seal v1 dek wrap";

/// Fills `buf` from the operating system's random number generator.
pub(crate) fn random_bytes(buf: &mut [u8]) -> Result<(), SealError> {
    use aws_lc_rs::rand::SecureRandom as _;
    aws_lc_rs::rand::SystemRandom::new().fill(buf).map_err(|_| SealError::Randomness)
}

/// One recipient of an envelope: who gets a recipient entry, and of which kind.
///
/// Kinds 1 and 2 wrap the data key with HPKE to an X25519 public key in exactly the same way
/// (X25519 suite); the kind only tells readers where the secret key lives. Kind 3 wraps it to
/// an SM2 public key (ShangMi suite). All recipients of one envelope must be of one suite.
/// [`seal`], [`seal_to_vec`] and the other functions that take plain X25519 public keys address
/// every key as [`Recipient::Key`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// Kind 1: the holder of the secret key opens the envelope directly.
    Key(RecipientPublicKey),
    /// Kind 2: the public half of a key-broker key; the broker releases its secret to enclaves
    /// that pass the owner's release policy.
    Broker(RecipientPublicKey),
    /// Kind 3 (ShangMi suite): the holder of the SM2 secret key opens the envelope directly.
    Sm2(Sm2PublicKey),
}

impl Recipient {
    /// The X25519 public key the data key is wrapped to (kinds 1 and 2); `None` for an SM2
    /// recipient (see [`Recipient::sm2_public_key`]).
    pub fn public_key(&self) -> Option<&RecipientPublicKey> {
        match self {
            Recipient::Key(key) | Recipient::Broker(key) => Some(key),
            Recipient::Sm2(_) => None,
        }
    }

    /// The SM2 public key the data key is wrapped to (kind 3).
    pub fn sm2_public_key(&self) -> Option<&Sm2PublicKey> {
        match self {
            Recipient::Sm2(key) => Some(key),
            Recipient::Key(_) | Recipient::Broker(_) => None,
        }
    }

    /// The key id the entry is listed under.
    pub fn key_id(&self) -> KeyId {
        match self {
            Recipient::Key(key) | Recipient::Broker(key) => key.key_id(),
            Recipient::Sm2(key) => key.key_id(),
        }
    }

    /// The recipient kind byte written to the header.
    pub fn kind(&self) -> u8 {
        match self {
            Recipient::Key(_) => RECIPIENT_KIND_HPKE_X25519,
            Recipient::Broker(_) => RECIPIENT_KIND_BROKER,
            Recipient::Sm2(_) => RECIPIENT_KIND_SM2,
        }
    }

    /// The cipher suite an envelope to this recipient uses.
    pub fn suite(&self) -> Suite {
        match self {
            Recipient::Key(_) | Recipient::Broker(_) => Suite::X25519,
            Recipient::Sm2(_) => Suite::ShangMi,
        }
    }

    /// Parses an X25519 public key (`cloister-hpke-x25519:…`, kind 1), a key-broker reference
    /// (`cloister-broker:kb_…:cloister-hpke-x25519:…`, kind 2) or an SM2 public key
    /// (`cloister-sm2:…`, kind 3); surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.trim();
        if trimmed.starts_with(BROKER_REFERENCE_PREFIX) {
            BrokerRecipient::from_text(text).map(Recipient::from)
        } else if trimmed.starts_with(SM2_PUBLIC_KEY_PREFIX) {
            Sm2PublicKey::from_text(text).map(Recipient::Sm2)
        } else {
            RecipientPublicKey::from_text(text).map(Recipient::Key)
        }
    }
}

/// The one suite of `recipients` (from their key types), or [`SealError::MixedSuites`].
pub fn suite_of(recipients: &[Recipient]) -> Result<Suite, SealError> {
    let first = recipients.first().ok_or(SealError::NoRecipients)?.suite();
    match recipients.iter().position(|r| r.suite() != first) {
        Some(index) => Err(SealError::MixedSuites {
            first,
            index,
            other: recipients.get(index).map_or(first, Recipient::suite),
        }),
        None => Ok(first),
    }
}

impl From<RecipientPublicKey> for Recipient {
    fn from(key: RecipientPublicKey) -> Self {
        Recipient::Key(key)
    }
}

impl From<BrokerRecipient> for Recipient {
    fn from(broker: BrokerRecipient) -> Self {
        Recipient::Broker(broker.public_key().clone())
    }
}

impl From<&BrokerRecipient> for Recipient {
    fn from(broker: &BrokerRecipient) -> Self {
        Recipient::Broker(broker.public_key().clone())
    }
}

/// Every key as a kind-1 recipient.
fn as_key_recipients(keys: &[RecipientPublicKey]) -> Vec<Recipient> {
    keys.iter().cloned().map(Recipient::Key).collect()
}

/// Options for sealing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealOptions {
    chunk_size: u32,
}

impl Default for SealOptions {
    fn default() -> Self {
        Self { chunk_size: DEFAULT_CHUNK_SIZE }
    }
}

impl SealOptions {
    /// Sets the plaintext bytes per chunk ([`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`]; checked when
    /// sealing). Both sides buffer one chunk.
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: u32) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }
}

/// What [`seal`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealSummary {
    /// Plaintext bytes read.
    pub plaintext_bytes: u64,
    /// Envelope bytes written (header and body).
    pub ciphertext_bytes: u64,
}

/// What [`open`] read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSummary {
    /// The envelope's header.
    pub header: Header,
    /// Plaintext bytes written.
    pub plaintext_bytes: u64,
}

/// The random (or, for test vectors, fixed) inputs of one sealing.
struct SealSecrets {
    dek: Zeroizing<[u8; 32]>,
    ephemeral_seeds: Zeroizing<Vec<[u8; 32]>>,
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl SealSecrets {
    fn random(recipients: usize) -> Result<Self, SealError> {
        let mut s = Self {
            dek: Zeroizing::new([0; 32]),
            ephemeral_seeds: Zeroizing::new(vec![[0; 32]; recipients]),
            nonce_prefix: [0; NONCE_PREFIX_LEN],
        };
        random_bytes(s.dek.as_mut_slice())?;
        for seed in s.ephemeral_seeds.iter_mut() {
            random_bytes(seed)?;
        }
        random_bytes(&mut s.nonce_prefix)?;
        Ok(s)
    }
}

/// Feeds a fixed 32-byte seed to HPKE's ephemeral key generation, which is
/// `DeriveKeyPair(32 random bytes)` for X25519. The seed itself comes from the OS RNG (or, for
/// test vectors, is fixed).
pub(crate) struct SeedRng<'a> {
    pub(crate) seed: &'a [u8; 32],
    pub(crate) offset: usize,
}

impl TryRng for SeedRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        // HPKE asks for exactly one 32-byte ikm per encapsulation.
        assert!(
            self.offset + dst.len() <= 32,
            "HPKE asked for more ephemeral randomness than one X25519 seed"
        );
        dst.copy_from_slice(&self.seed[self.offset..self.offset + dst.len()]);
        self.offset += dst.len();
        Ok(())
    }
}

impl TryCryptoRng for SeedRng<'_> {}

fn build_header(
    recipients: &[Recipient],
    metadata: &Metadata,
    chunk_size: u32,
    secrets: &SealSecrets,
) -> Result<Header, SealError> {
    let suite = suite_of(recipients)?;
    if recipients.len() > MAX_RECIPIENTS {
        return Err(SealError::TooManyRecipients { count: recipients.len(), max: MAX_RECIPIENTS });
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(SealError::InvalidChunkSize {
            size: chunk_size,
            min: MIN_CHUNK_SIZE,
            max: MAX_CHUNK_SIZE,
        });
    }
    let mut seen = BTreeSet::new();
    for r in recipients {
        if !seen.insert(r.key_id()) {
            return Err(SealError::DuplicateRecipient(r.key_id()));
        }
    }
    assert_eq!(secrets.ephemeral_seeds.len(), recipients.len());
    let builder =
        HeaderBuilder::new(suite, metadata, chunk_size, secrets.nonce_prefix, recipients.len())
            .map_err(SealError::InvalidMetadata)?;
    let mut entries = Vec::with_capacity(recipients.len());
    for (r, seed) in recipients.iter().zip(secrets.ephemeral_seeds.iter()) {
        let public = match r {
            Recipient::Key(public) | Recipient::Broker(public) => public,
            Recipient::Sm2(public) => {
                let (ciphertext, wrapped) =
                    sm::sm2_wrap_dek(public.sm2_key(), seed, &secrets.dek, builder.prefix())
                        .ok_or(SealError::Encapsulation(r.key_id()))?;
                entries.push(RecipientEntry::sm2(r.key_id(), &ciphertext, &wrapped));
                continue;
            }
        };
        let mut wrapped = Zeroizing::new([0u8; WRAPPED_DEK_LEN]);
        wrapped[..32].copy_from_slice(secrets.dek.as_slice());
        let mut rng = SeedRng { seed, offset: 0 };
        let (enc, tag) =
            hpke::single_shot_seal_inout_detached_with_rng::<HpkeAead, HpkeKdf, HpkeKem>(
                &OpModeS::Base,
                &public.hpke_public_key(),
                HPKE_INFO,
                InOutBuf::from(&mut wrapped[..32]),
                builder.prefix(),
                &mut rng,
            )
            .map_err(|_| SealError::Encapsulation(r.key_id()))?;
        wrapped[32..].copy_from_slice(&tag.to_bytes());
        entries.push(RecipientEntry::hpke_x25519(
            r.kind(),
            r.key_id(),
            &enc.to_bytes(),
            wrapped.as_slice(),
        ));
    }
    Ok(builder.finish(entries))
}

/// Recovers the DEK with `key`, from its entry of kind 1 or 2 (X25519 suite) or 3 (ShangMi
/// suite).
fn unwrap_dek(key: OpeningKey<'_>, header: &Header) -> Result<Zeroizing<[u8; 32]>, OpenError> {
    if key.suite() != header.suite() {
        return Err(OpenError::WrongKeyType { key: key.suite(), envelope: header.suite() });
    }
    let id = key.key_id();
    let Some(entry) = header.recipients().iter().find(|e| e.key_id() == Some(id)) else {
        return Err(OpenError::NotARecipient);
    };
    let key = match key {
        OpeningKey::X25519(key) => key,
        OpeningKey::Sm2(key) => {
            let (ciphertext, wrapped) =
                entry.sm2_parts().ok_or(OpenError::RecipientDecryptFailed)?;
            return sm::sm2_unwrap_dek(key.sm2_key(), ciphertext, wrapped, header.prefix_bytes())
                .ok_or(OpenError::RecipientDecryptFailed);
        }
    };
    let (enc, wrapped) = entry.hpke_parts().ok_or(OpenError::RecipientDecryptFailed)?;
    let enc = <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| OpenError::RecipientDecryptFailed)?;
    let tag = AeadTag::<HpkeAead>::from_bytes(&wrapped[32..])
        .map_err(|_| OpenError::RecipientDecryptFailed)?;
    let mut dek = Zeroizing::new([0u8; 32]);
    dek.copy_from_slice(&wrapped[..32]);
    hpke::single_shot_open_inout_detached::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeR::Base,
        &key.hpke_private_key(),
        &enc,
        HPKE_INFO,
        InOutBuf::from(&mut dek[..]),
        header.prefix_bytes(),
        &tag,
    )
    .map_err(|_| OpenError::RecipientDecryptFailed)?;
    Ok(dek)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Seals `input` to `recipients` with the default options, streaming to `output`.
pub fn seal<R: Read, W: Write>(
    recipients: &[RecipientPublicKey],
    metadata: &Metadata,
    input: R,
    output: W,
) -> Result<SealSummary, SealError> {
    seal_with_options(recipients, metadata, &SealOptions::default(), input, output)
}

/// Seals `input` to `recipients`, streaming to `output` in constant memory.
pub fn seal_with_options<R: Read, W: Write>(
    recipients: &[RecipientPublicKey],
    metadata: &Metadata,
    options: &SealOptions,
    input: R,
    output: W,
) -> Result<SealSummary, SealError> {
    seal_to(&as_key_recipients(recipients), metadata, options, input, output)
}

/// Seals `input` to `recipients` of any kind (keys and key-broker keys), streaming to `output`
/// in constant memory.
pub fn seal_to<R: Read, W: Write>(
    recipients: &[Recipient],
    metadata: &Metadata,
    options: &SealOptions,
    input: R,
    output: W,
) -> Result<SealSummary, SealError> {
    let secrets = SealSecrets::random(recipients.len())?;
    seal_stream(recipients, metadata, options.chunk_size, &secrets, input, output)
}

fn seal_stream<R: Read, W: Write>(
    recipients: &[Recipient],
    metadata: &Metadata,
    chunk_size: u32,
    secrets: &SealSecrets,
    mut input: R,
    mut output: W,
) -> Result<SealSummary, SealError> {
    let header = build_header(recipients, metadata, chunk_size, secrets)?;
    output.write_all(header.as_bytes()).map_err(SealError::Write)?;
    let cipher =
        ChunkCipher::new(header.suite(), &secrets.dek, header.nonce_prefix(), header.digest());
    let (plaintext_bytes, body_bytes) =
        body::seal_stream(&cipher, chunk_size as usize, &mut input, &mut output)?;
    output.flush().map_err(SealError::Write)?;
    Ok(SealSummary { plaintext_bytes, ciphertext_bytes: header.len() as u64 + body_bytes })
}

/// Seals `plaintext` in memory (one copy: plaintext is copied into the output and encrypted
/// there in place).
pub fn seal_to_vec(
    recipients: &[RecipientPublicKey],
    metadata: &Metadata,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal_to_vec_with_options(recipients, metadata, &SealOptions::default(), plaintext)
}

/// [`seal_to_vec`] with options.
pub fn seal_to_vec_with_options(
    recipients: &[RecipientPublicKey],
    metadata: &Metadata,
    options: &SealOptions,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal_to_vec_for_with_options(&as_key_recipients(recipients), metadata, options, plaintext)
}

/// Seals `plaintext` in memory to `recipients` of any kind (keys and key-broker keys).
pub fn seal_to_vec_for(
    recipients: &[Recipient],
    metadata: &Metadata,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    seal_to_vec_for_with_options(recipients, metadata, &SealOptions::default(), plaintext)
}

/// [`seal_to_vec_for`] with options.
pub fn seal_to_vec_for_with_options(
    recipients: &[Recipient],
    metadata: &Metadata,
    options: &SealOptions,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let secrets = SealSecrets::random(recipients.len())?;
    seal_slice(recipients, metadata, options.chunk_size, &secrets, plaintext)
}

fn seal_slice(
    recipients: &[Recipient],
    metadata: &Metadata,
    chunk_size: u32,
    secrets: &SealSecrets,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let header = build_header(recipients, metadata, chunk_size, secrets)?;
    let cs = chunk_size as usize;
    let chunks = plaintext.len().div_ceil(cs).max(1);
    if chunks as u64 > 1 << 32 {
        return Err(SealError::TooManyChunks);
    }
    let cipher =
        ChunkCipher::new(header.suite(), &secrets.dek, header.nonce_prefix(), header.digest());
    if body::parallel_in_memory(plaintext.len()) {
        // Zeroed memory comes from the allocator untouched, so each worker faults in the pages
        // it writes.
        let mut out = vec![0u8; header.len() + plaintext.len() + chunks * TAG_LEN];
        let (head, sealed) = out.split_at_mut(header.len());
        head.copy_from_slice(header.as_bytes());
        body::seal_slice_parallel(&cipher, cs, plaintext, sealed);
        return Ok(out);
    }
    let mut out = Vec::with_capacity(header.len() + plaintext.len() + chunks * TAG_LEN);
    out.extend_from_slice(header.as_bytes());
    for i in 0..chunks {
        let start = (i * cs).min(plaintext.len());
        let end = (start + cs).min(plaintext.len());
        let at = out.len();
        out.extend_from_slice(&plaintext[start..end]);
        let tag = cipher.seal(i as u32, i + 1 == chunks, &mut out[at..]);
        out.extend_from_slice(&tag);
    }
    Ok(out)
}

/// Reads and parses the header from `input` without a key, consuming exactly the header bytes.
pub fn read_header<R: Read>(mut input: R) -> Result<Header, OpenError> {
    let mut pre = [0u8; PREAMBLE_LEN];
    let got = read_full(&mut input, &mut pre).map_err(OpenError::Read)?;
    let len = header::check_preamble(&pre[..got])?;
    // `len` is bounded by MAX_HEADER_LEN (checked above) before this allocation.
    let mut bytes = vec![0u8; len];
    bytes[..PREAMBLE_LEN].copy_from_slice(&pre);
    let got = read_full(&mut input, &mut bytes[PREAMBLE_LEN..]).map_err(OpenError::Read)?;
    if got < len - PREAMBLE_LEN {
        return Err(OpenError::HeaderTruncated);
    }
    header::parse_header(&bytes)
}

/// Opens an envelope from `input` with `key`, streaming plaintext to `output` in constant
/// memory.
///
/// Each chunk is written only after it authenticated, but the envelope may still turn out to be
/// truncated or extended at its end: **if this returns an error, discard all output** (write to
/// a temporary file and rename it on success).
pub fn open<R: Read, W: Write>(
    key: &RecipientSecretKey,
    input: R,
    output: W,
) -> Result<OpenSummary, OpenError> {
    open_with(key, input, output)
}

/// [`open`] with a key of either suite (`&RecipientSecretKey`, `&Sm2SecretKey` or
/// `&EnvelopeSecretKey`). The header's suite ids decide the cryptography; a key of the other
/// suite fails with [`OpenError::WrongKeyType`]. **If this returns an error, discard all
/// output.**
pub fn open_with<'k, R: Read, W: Write>(
    key: impl Into<OpeningKey<'k>>,
    mut input: R,
    mut output: W,
) -> Result<OpenSummary, OpenError> {
    let header = read_header(&mut input)?;
    let dek = unwrap_dek(key.into(), &header)?;
    let cipher = ChunkCipher::new(header.suite(), &dek, header.nonce_prefix(), header.digest());
    drop(dek);
    let plaintext_bytes =
        body::open_stream(&cipher, header.chunk_size() as usize, &mut input, &mut output)?;
    output.flush().map_err(OpenError::Write)?;
    Ok(OpenSummary { header, plaintext_bytes })
}

/// Opens an envelope held in memory (one copy: each chunk's ciphertext is copied into the
/// output and decrypted there in place). The plaintext is zeroized when dropped.
pub fn open_to_vec(
    key: &RecipientSecretKey,
    envelope: &[u8],
) -> Result<(Header, Zeroizing<Vec<u8>>), OpenError> {
    open_to_vec_with(key, envelope)
}

/// [`open_to_vec`] with a key of either suite (`&RecipientSecretKey`, `&Sm2SecretKey` or
/// `&EnvelopeSecretKey`).
pub fn open_to_vec_with<'k>(
    key: impl Into<OpeningKey<'k>>,
    envelope: &[u8],
) -> Result<(Header, Zeroizing<Vec<u8>>), OpenError> {
    let (header, header_len) = header::parse_header_prefix(envelope)?;
    let dek = unwrap_dek(key.into(), &header)?;
    let cipher = ChunkCipher::new(header.suite(), &dek, header.nonce_prefix(), header.digest());
    drop(dek);
    let body = &envelope[header_len..];
    let cs = header.chunk_size() as usize;
    let full = cs + TAG_LEN;
    // The chunks followed by more input are the non-final ones.
    let non_final = body.len().saturating_sub(1) / full;
    if body::parallel_in_memory(body.len()) && (non_final as u64) < 1 << 32 {
        return open_slice_parallel(&cipher, cs, non_final, body).map(|out| (header, out));
    }
    // Exact capacity up front, so the plaintext is never reallocated (and left behind).
    let mut out = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut pos = 0usize;
    let mut index: u64 = 0;
    loop {
        let counter = u32::try_from(index).map_err(|_| OpenError::TooManyChunks)?;
        let rest = &body[pos..];
        if rest.len() > full {
            let (ct, tag) = rest[..full].split_at(cs);
            let at = out.len();
            out.extend_from_slice(ct);
            if !cipher.open(counter, false, &mut out[at..], tag) {
                out.truncate(at);
                // Tell "data appended after a full final chunk" from plain corruption.
                let mut probe = Zeroizing::new(ct.to_vec());
                if cipher.open(counter, true, &mut probe, tag) {
                    return Err(OpenError::TrailingData);
                }
                return Err(OpenError::ChunkAuthentication { index });
            }
            pos += full;
            index += 1;
            continue;
        }
        if rest.len() < TAG_LEN {
            return Err(OpenError::Truncated);
        }
        let n = rest.len() - TAG_LEN;
        let (ct, tag) = rest.split_at(n);
        let at = out.len();
        out.extend_from_slice(ct);
        if cipher.open(counter, true, &mut out[at..], tag) {
            if n == 0 && index > 0 {
                return Err(OpenError::EmptyFinalChunk { index });
            }
            break;
        }
        out.truncate(at);
        if rest.len() == full {
            let mut probe = Zeroizing::new(ct.to_vec());
            if cipher.open(counter, false, &mut probe, tag) {
                return Err(OpenError::Truncated);
            }
        }
        return Err(OpenError::ChunkAuthentication { index });
    }
    Ok((header, out))
}

/// [`open_to_vec_with`] of a large body on every core: the `non_final` chunks in parallel, then
/// the final one, with the sequential reader's errors (the earliest failing chunk decides).
fn open_slice_parallel(
    cipher: &ChunkCipher,
    cs: usize,
    non_final: usize,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let full = cs + TAG_LEN;
    let rest = &body[non_final * full..];
    // Zeroed memory comes from the allocator untouched, so each worker faults in the pages it
    // writes; the plaintext is wiped when dropped, on every path.
    let mut out = Zeroizing::new(vec![0u8; non_final * cs + rest.len().saturating_sub(TAG_LEN)]);
    if let Some(failed) = body::open_slice_parallel(cipher, cs, non_final, body, &mut out) {
        let index = failed as u64;
        let chunk = &body[failed * full..(failed + 1) * full];
        let (ct, tag) = chunk.split_at(cs);
        // Tell "data appended after a full final chunk" from plain corruption.
        let mut probe = Zeroizing::new(ct.to_vec());
        if cipher.open(failed as u32, true, &mut probe, tag) {
            return Err(OpenError::TrailingData);
        }
        return Err(OpenError::ChunkAuthentication { index });
    }
    let index = non_final as u64;
    let counter = u32::try_from(index).map_err(|_| OpenError::TooManyChunks)?;
    if rest.len() < TAG_LEN {
        return Err(OpenError::Truncated);
    }
    let n = rest.len() - TAG_LEN;
    let (ct, tag) = rest.split_at(n);
    let data = &mut out[non_final * cs..];
    data.copy_from_slice(ct);
    if cipher.open(counter, true, data, tag) {
        if n == 0 && index > 0 {
            return Err(OpenError::EmptyFinalChunk { index });
        }
        return Ok(out);
    }
    if rest.len() == full {
        let mut probe = Zeroizing::new(ct.to_vec());
        if cipher.open(counter, false, &mut probe, tag) {
            return Err(OpenError::Truncated);
        }
    }
    Err(OpenError::ChunkAuthentication { index })
}

/// Internals exposed for fuzzing, test vectors and benchmarks. Not a stable API.
#[doc(hidden)]
pub mod internal {
    use super::{
        Metadata, Recipient, RecipientPublicKey, SealError, SealSecrets, as_key_recipients,
    };
    use zeroize::Zeroizing;

    pub use crate::header::{parse_header, parse_header_prefix};
    pub use crate::sm::{
        SM_PAYLOAD_KEY_INFO, SM2_EPHEMERAL_INFO, SM2_WRAP_INFO, SM4_KEY_LEN, Sm4Gcm,
        derive_sm_payload_key, hkdf_sm3, sm4_gcm,
    };
    pub use crate::stream::{PAYLOAD_KEY_INFO, derive_payload_key};

    /// [`crate::wrap_secret_key`] with a fixed ephemeral seed (for reproducible test vectors
    /// only).
    pub fn wrap_secret_key_deterministic(
        to: &RecipientPublicKey,
        secret: &crate::RecipientSecretKey,
        context: &[u8],
        ephemeral_seed: &[u8; 32],
    ) -> Result<Vec<u8>, SealError> {
        crate::broker::wrap_with_seed(to, secret, context, ephemeral_seed)
    }

    /// Fixed inputs that replace the randomness of sealing (for reproducible test vectors only:
    /// reusing them across envelopes destroys confidentiality).
    pub struct FixedSealInputs {
        /// The data-encryption key.
        pub dek: [u8; 32],
        /// One seed per recipient: the X25519 `DeriveKeyPair` seed of the HPKE ephemeral key
        /// (X25519 suite), or the seed of the SM2 ephemeral stream (ShangMi suite).
        pub ephemeral_seeds: Vec<[u8; 32]>,
        /// The STREAM nonce prefix.
        pub nonce_prefix: [u8; 7],
        /// Plaintext bytes per chunk.
        pub chunk_size: u32,
    }

    /// Seals with fixed inputs instead of randomness; same output as [`crate::seal_to_vec`]
    /// would produce had the RNG returned these values.
    pub fn seal_deterministic(
        recipients: &[RecipientPublicKey],
        metadata: &Metadata,
        inputs: &FixedSealInputs,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        seal_deterministic_to(&as_key_recipients(recipients), metadata, inputs, plaintext)
    }

    /// [`seal_deterministic`] for recipients of any kind.
    pub fn seal_deterministic_to(
        recipients: &[Recipient],
        metadata: &Metadata,
        inputs: &FixedSealInputs,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let secrets = fixed_secrets(recipients, inputs)?;
        super::seal_slice(recipients, metadata, inputs.chunk_size, &secrets, plaintext)
    }

    /// The secrets a sealer would draw from the RNG, taken from `inputs` instead.
    fn fixed_secrets(
        recipients: &[Recipient],
        inputs: &FixedSealInputs,
    ) -> Result<SealSecrets, SealError> {
        if inputs.ephemeral_seeds.len() != recipients.len() {
            return Err(SealError::InvalidMetadata(
                "one ephemeral seed per recipient is required".to_string(),
            ));
        }
        Ok(SealSecrets {
            dek: Zeroizing::new(inputs.dek),
            ephemeral_seeds: Zeroizing::new(inputs.ephemeral_seeds.clone()),
            nonce_prefix: inputs.nonce_prefix,
        })
    }

    /// The streaming sealer with fixed inputs (to check it against [`seal_deterministic`]).
    pub fn seal_stream_deterministic<R: std::io::Read, W: std::io::Write>(
        recipients: &[RecipientPublicKey],
        metadata: &Metadata,
        inputs: &FixedSealInputs,
        input: R,
        output: W,
    ) -> Result<super::SealSummary, SealError> {
        seal_stream_deterministic_to(
            &as_key_recipients(recipients),
            metadata,
            inputs,
            input,
            output,
        )
    }

    /// [`seal_stream_deterministic`] for recipients of any kind.
    pub fn seal_stream_deterministic_to<R: std::io::Read, W: std::io::Write>(
        recipients: &[Recipient],
        metadata: &Metadata,
        inputs: &FixedSealInputs,
        input: R,
        output: W,
    ) -> Result<super::SealSummary, SealError> {
        let secrets = fixed_secrets(recipients, inputs)?;
        super::seal_stream(recipients, metadata, inputs.chunk_size, &secrets, input, output)
    }
}
