//! Key-broker support: the text form of a broker recipient (`cloister-broker:…`) and the HPKE
//! wrap that carries a released broker secret key to an attested enclave.
//!
//! A key-broker key is an ordinary X25519 envelope key pair whose secret the key broker holds.
//! Envelopes list it as recipient kind 2 ([`crate::Recipient::Broker`]). When an enclave proves
//! (with an attestation result) that it may have the key, the broker wraps the 32 secret bytes to
//! the enclave's own HPKE public key with [`wrap_secret_key`]; the enclave recovers the key with
//! [`unwrap_secret_key`] and then opens the envelope as any recipient would.

use std::fmt;
use std::str::FromStr;

use hpke::aead::AeadTag;
use hpke::inout::InOutBuf;
use hpke::{Deserializable as _, OpModeR, OpModeS, Serializable as _};
use zeroize::Zeroizing;

use crate::error::{KeyError, OpenError, SealError};
use crate::header::ENC_LEN;
use crate::keys::{KeyId, PUBLIC_KEY_PREFIX, RecipientPublicKey, RecipientSecretKey};
use crate::stream::TAG_LEN;
use crate::{HpkeAead, HpkeKdf, HpkeKem, Recipient, SeedRng, random_bytes};

/// Text prefix of a key-broker reference.
pub const BROKER_REFERENCE_PREFIX: &str = "cloister-broker:";

/// HPKE `info` of a key release (domain separation from the envelope's DEK wrap).
pub const KEY_RELEASE_INFO: &[u8] = b"cloister key-broker release v1";

/// Length of a wrapped secret key: HPKE `enc` (32) ‖ encrypted key (32) ‖ GCM tag (16).
pub const WRAPPED_SECRET_KEY_LEN: usize = ENC_LEN + 32 + TAG_LEN;

/// Longest broker key id accepted after `kb_` in a reference.
const MAX_BROKER_ID_LEN: usize = 64;

/// A key-broker key as a sealer names it: the broker's id for the key (`kb_…`) and its public
/// half.
///
/// Text form: `cloister-broker:<kb id>:<public key text>`, for example
/// `cloister-broker:kb_3f2a…:cloister-hpke-x25519:q1Lw…`. The id tells a reader which broker key
/// to ask for; only the public key goes into the envelope (as a kind-2 entry under its key id).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BrokerRecipient {
    broker_key: String,
    public_key: RecipientPublicKey,
}

impl BrokerRecipient {
    /// Pairs a broker key id (`kb_` followed by 1 to 64 ASCII letters or digits) with its public
    /// key.
    pub fn new(broker_key: &str, public_key: RecipientPublicKey) -> Result<Self, KeyError> {
        check_broker_id(broker_key)?;
        Ok(Self { broker_key: broker_key.to_owned(), public_key })
    }

    /// The broker's id for the key (`kb_…`).
    pub fn broker_key(&self) -> &str {
        &self.broker_key
    }

    /// The key's public half.
    pub fn public_key(&self) -> &RecipientPublicKey {
        &self.public_key
    }

    /// The key id envelopes list the key under.
    pub fn key_id(&self) -> KeyId {
        self.public_key.key_id()
    }

    /// This key as a kind-2 recipient.
    pub fn recipient(&self) -> Recipient {
        Recipient::Broker(self.public_key.clone())
    }

    /// `cloister-broker:<kb id>:<public key text>`.
    pub fn to_text(&self) -> String {
        format!("{BROKER_REFERENCE_PREFIX}{}:{}", self.broker_key, self.public_key.to_text())
    }

    /// Parses [`BrokerRecipient::to_text`] output; surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let rest = text.strip_prefix(BROKER_REFERENCE_PREFIX).ok_or_else(|| {
            KeyError::BrokerReference(format!("it does not start with {BROKER_REFERENCE_PREFIX:?}"))
        })?;
        let (id, key) = rest.split_once(':').ok_or_else(|| {
            KeyError::BrokerReference(
                "the broker key id is not followed by ':' and a public key".into(),
            )
        })?;
        check_broker_id(id)?;
        if !key.starts_with(PUBLIC_KEY_PREFIX) {
            return Err(KeyError::BrokerReference(format!(
                "the public key after the broker key id must start with {PUBLIC_KEY_PREFIX:?}"
            )));
        }
        let public_key = RecipientPublicKey::from_text(key)
            .map_err(|e| KeyError::BrokerReference(format!("its public key is unusable: {e}")))?;
        Ok(Self { broker_key: id.to_owned(), public_key })
    }
}

fn check_broker_id(id: &str) -> Result<(), KeyError> {
    let ok = id.strip_prefix("kb_").is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= MAX_BROKER_ID_LEN
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if ok {
        Ok(())
    } else {
        Err(KeyError::BrokerReference(format!(
            "broker key id {id:?} is not \"kb_\" followed by 1 to {MAX_BROKER_ID_LEN} letters or \
             digits"
        )))
    }
}

impl fmt::Display for BrokerRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for BrokerRecipient {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s)
    }
}

/// Wraps the 32 bytes of `secret` to `to` (an enclave's HPKE public key): HPKE Base mode
/// single-shot seal, suite 0x0020/0x0001/0x0002, `info` = [`KEY_RELEASE_INFO`], AAD = `context`.
///
/// The output is `enc ‖ ciphertext ‖ tag` ([`WRAPPED_SECRET_KEY_LEN`] bytes). The same `context`
/// must be given to [`unwrap_secret_key`]; the key broker puts the release context digest there
/// (key id, instance id and job context), so a wrapped key cannot be replayed into another
/// release.
pub fn wrap_secret_key(
    to: &RecipientPublicKey,
    secret: &RecipientSecretKey,
    context: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    random_bytes(seed.as_mut_slice())?;
    wrap_with_seed(to, secret, context, &seed)
}

/// [`wrap_secret_key`] with the HPKE ephemeral key derived from `seed` (random in use; fixed
/// only for test vectors).
pub(crate) fn wrap_with_seed(
    to: &RecipientPublicKey,
    secret: &RecipientSecretKey,
    context: &[u8],
    seed: &[u8; 32],
) -> Result<Vec<u8>, SealError> {
    let mut rng = SeedRng { seed, offset: 0 };
    let mut body = Zeroizing::new(*secret.secret_bytes());
    let (enc, tag) = hpke::single_shot_seal_inout_detached_with_rng::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeS::Base,
        &to.hpke_public_key(),
        KEY_RELEASE_INFO,
        InOutBuf::from(&mut body[..]),
        context,
        &mut rng,
    )
    .map_err(|_| SealError::Encapsulation(to.key_id()))?;
    let mut out = Vec::with_capacity(WRAPPED_SECRET_KEY_LEN);
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(body.as_slice());
    out.extend_from_slice(&tag.to_bytes());
    debug_assert_eq!(out.len(), WRAPPED_SECRET_KEY_LEN);
    Ok(out)
}

/// Recovers a secret key wrapped by [`wrap_secret_key`] with the recipient's secret key `with`
/// and the same `context`. Fails with [`OpenError::WrappedKeyLength`] for input of the wrong
/// length and [`OpenError::KeyUnwrapFailed`] for the wrong key, the wrong context or any changed
/// byte.
pub fn unwrap_secret_key(
    with: &RecipientSecretKey,
    wrapped: &[u8],
    context: &[u8],
) -> Result<RecipientSecretKey, OpenError> {
    if wrapped.len() != WRAPPED_SECRET_KEY_LEN {
        return Err(OpenError::WrappedKeyLength {
            len: wrapped.len(),
            expected: WRAPPED_SECRET_KEY_LEN,
        });
    }
    let (enc, rest) = wrapped.split_at(ENC_LEN);
    let (ciphertext, tag) = rest.split_at(32);
    let enc = <HpkeKem as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| OpenError::KeyUnwrapFailed)?;
    let tag = AeadTag::<HpkeAead>::from_bytes(tag).map_err(|_| OpenError::KeyUnwrapFailed)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    secret.copy_from_slice(ciphertext);
    hpke::single_shot_open_inout_detached::<HpkeAead, HpkeKdf, HpkeKem>(
        &OpModeR::Base,
        &with.hpke_private_key(),
        &enc,
        KEY_RELEASE_INFO,
        InOutBuf::from(&mut secret[..]),
        context,
        &tag,
    )
    .map_err(|_| OpenError::KeyUnwrapFailed)?;
    Ok(RecipientSecretKey::from_bytes(&secret))
}
