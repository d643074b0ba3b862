//! Online inference over Oblivious HTTP: the names both sides agree on (media types, the runtime
//! data field that carries the enclave's OHTTP key configuration, the authorization scheme) and
//! the claims a requester signs for each inner request.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encoding::Hex;

/// The runtime-data field (`RuntimeData::extra`) holding the enclave's OHTTP key configuration
/// (RFC 9458 §3, one `KeyConfig` encoding) as unpadded base64url.
pub const OHTTP_KEY_CONFIG_FIELD: &str = "ohttp_key_config";

/// The worker route encapsulated requests are posted to.
pub const OHTTP_PATH: &str = "/v1/ohttp";

/// Media type of an encapsulated request (RFC 9458 §9.2).
pub const OHTTP_REQUEST: &str = "message/ohttp-req";
/// Media type of an encapsulated response (RFC 9458 §9.3).
pub const OHTTP_RESPONSE: &str = "message/ohttp-res";
/// Media type of a chunked encapsulated request (draft-ietf-ohai-chunked-ohttp).
pub const OHTTP_CHUNKED_REQUEST: &str = "message/ohttp-chunked-req";
/// Media type of a chunked encapsulated response (draft-ietf-ohai-chunked-ohttp).
pub const OHTTP_CHUNKED_RESPONSE: &str = "message/ohttp-chunked-res";

/// The scheme of the inner `authorization` header: `Cloister <compact JWS>`.
pub const AUTHORIZATION_SCHEME: &str = "Cloister";

/// What the requester's signing key signs (JWS `what = "inference request"`) for one inner
/// request. The JWS issuer is the requester's public key; `iat`/`exp` bound its validity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InferenceAuthorization {
    /// The HTTP method, upper case.
    pub method: String,
    /// The request path (with any query).
    pub path: String,
    /// SHA-256 of the request body.
    pub body_sha256: Hex,
    /// A fresh random identifier (the request's "jti"; named apart from the JWT's own `jti`
    /// claim, which the JWS layer reserves): the worker refuses a second request with the same
    /// one within its validity.
    pub request_id: String,
}

impl InferenceAuthorization {
    /// The claims for a request with this method, path and body.
    pub fn for_request(method: &str, path: &str, body: &[u8], request_id: String) -> Self {
        InferenceAuthorization {
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            body_sha256: Hex(Sha256::digest(body).to_vec()),
            request_id,
        }
    }
}
