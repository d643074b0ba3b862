//! The enclave's side of a key release: recover a broker key from the key broker's answer.
//!
//! The key broker wraps the key's secret to the enclave's HPKE key with the release context
//! digest (instance, key id, job context) as associated data. [`open_released_key`] recomputes
//! that digest from the request the enclave itself sent, so a wrapped key released for another
//! instance, key or job does not open here, and checks that what came back is the key asked for.

use cloister_seal::{OpenError, RecipientSecretKey};
use cloister_types::Hex;
use cloister_types::api::{KeyReleaseRequest, KeyReleaseResponse, release_context_digest};

/// Why a released key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleasedKeyError {
    /// The broker answered for another key than the one requested.
    #[error("the key broker answered for key {answered}, but key {requested} was requested")]
    KeyIdMismatch {
        /// The key id requested.
        requested: String,
        /// The key id in the answer.
        answered: String,
    },
    /// The broker bound the release to another context than the one requested.
    #[error(
        "the key broker released the key for context digest {answered}, but this request's \
         digest is {expected} (another instance, key or job context)"
    )]
    ContextMismatch {
        /// The digest of this request.
        expected: String,
        /// The digest in the answer.
        answered: String,
    },
    /// The wrapped key did not decrypt with this enclave's key.
    #[error("the released key cannot be unwrapped by this enclave: {0}")]
    Unwrap(#[source] OpenError),
    /// The unwrapped secret is not the requested key.
    #[error("the key broker released key {released}, but key {requested} was requested")]
    WrongKey {
        /// The key id requested.
        requested: String,
        /// The key id of the secret that came back.
        released: String,
    },
}

/// Recovers the broker key released in `response` with the enclave's HPKE secret key, for the
/// `request` this enclave sent about `instance_id` (the instance that issued its EAR token).
pub fn open_released_key(
    enclave_secret: &RecipientSecretKey,
    response: &KeyReleaseResponse,
    instance_id: &str,
    request: &KeyReleaseRequest,
) -> Result<RecipientSecretKey, ReleasedKeyError> {
    if response.key_id != request.key_id {
        return Err(ReleasedKeyError::KeyIdMismatch {
            requested: request.key_id.to_string(),
            answered: response.key_id.to_string(),
        });
    }
    let digest = release_context_digest(instance_id, request.key_id.as_bytes(), &request.context);
    if response.context_digest.as_bytes() != digest.as_slice() {
        return Err(ReleasedKeyError::ContextMismatch {
            expected: Hex(digest.to_vec()).to_string(),
            answered: response.context_digest.to_string(),
        });
    }
    let key =
        cloister_seal::unwrap_secret_key(enclave_secret, response.wrapped.as_bytes(), &digest)
            .map_err(ReleasedKeyError::Unwrap)?;
    if key.key_id().0.as_slice() != request.key_id.as_bytes() {
        return Err(ReleasedKeyError::WrongKey {
            requested: request.key_id.to_string(),
            released: key.key_id().to_hex(),
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use cloister_seal::{Metadata, Recipient, open_to_vec, seal_to_vec_for, wrap_secret_key};
    use cloister_types::Base64Url;
    use cloister_types::api::ReleaseContext;

    use super::*;

    const INSTANCE: &str = "in_1";

    struct Case {
        broker: RecipientSecretKey,
        enclave: RecipientSecretKey,
        request: KeyReleaseRequest,
        response: KeyReleaseResponse,
    }

    /// What the key broker would answer (its wrap, done by hand here).
    fn case() -> Case {
        let broker = RecipientSecretKey::generate();
        let enclave = RecipientSecretKey::generate();
        let request = KeyReleaseRequest {
            key_id: Hex(broker.key_id().0.to_vec()),
            ear: "token".into(),
            context: ReleaseContext { job_id: Some("job-1".into()), ..ReleaseContext::default() },
            nonce: String::new(),
            proof: String::new(),
            after: None,
        };
        let digest = release_context_digest(INSTANCE, request.key_id.as_bytes(), &request.context);
        let wrapped = wrap_secret_key(&enclave.public_key(), &broker, &digest).unwrap();
        let response = KeyReleaseResponse {
            key_id: request.key_id.clone(),
            broker_key: "kb_1".into(),
            wrapped: Base64Url(wrapped),
            context_digest: Hex(digest.to_vec()),
            answer: String::new(),
        };
        Case { broker, enclave, request, response }
    }

    #[test]
    fn a_released_key_opens_its_envelopes() {
        let c = case();
        let env = seal_to_vec_for(
            &[Recipient::Broker(c.broker.public_key())],
            &Metadata::default(),
            b"model weights",
        )
        .unwrap();
        let key = open_released_key(&c.enclave, &c.response, INSTANCE, &c.request).unwrap();
        assert_eq!(open_to_vec(&key, &env).unwrap().1.as_slice(), b"model weights");
    }

    #[test]
    fn another_enclave_key_cannot_open_it() {
        let c = case();
        let other = RecipientSecretKey::generate();
        let err = open_released_key(&other, &c.response, INSTANCE, &c.request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::Unwrap(OpenError::KeyUnwrapFailed)), "{err}");
    }

    #[test]
    fn another_instance_or_context_is_refused() {
        let c = case();
        let err = open_released_key(&c.enclave, &c.response, "in_2", &c.request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::ContextMismatch { .. }), "{err}");
        let mut request = c.request.clone();
        request.context.job_id = Some("job-2".into());
        let err = open_released_key(&c.enclave, &c.response, INSTANCE, &request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::ContextMismatch { .. }), "{err}");
        // A broker that claims the right digest but wrapped under another context still fails.
        let mut response = c.response.clone();
        let other = release_context_digest("in_2", c.request.key_id.as_bytes(), &c.request.context);
        response.wrapped =
            Base64Url(wrap_secret_key(&c.enclave.public_key(), &c.broker, &other).unwrap());
        let err = open_released_key(&c.enclave, &response, INSTANCE, &c.request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::Unwrap(_)), "{err}");
    }

    #[test]
    fn an_answer_for_another_key_is_refused() {
        let c = case();
        let mut response = c.response.clone();
        response.key_id = Hex(vec![0; 16]);
        let err = open_released_key(&c.enclave, &response, INSTANCE, &c.request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::KeyIdMismatch { .. }), "{err}");

        // The right key id and digest, but another secret inside the wrap.
        let impostor = RecipientSecretKey::generate();
        let digest =
            release_context_digest(INSTANCE, c.request.key_id.as_bytes(), &c.request.context);
        let mut response = c.response.clone();
        response.wrapped =
            Base64Url(wrap_secret_key(&c.enclave.public_key(), &impostor, &digest).unwrap());
        let err = open_released_key(&c.enclave, &response, INSTANCE, &c.request).unwrap_err();
        assert!(matches!(err, ReleasedKeyError::WrongKey { .. }), "{err}");
    }
}
