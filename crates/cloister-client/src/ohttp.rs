//! Online inference as the requester sees it: an Oblivious HTTP (RFC 9458) client for one
//! attested worker.
//!
//! [`OhttpClient::connect`] attests the worker over attested TLS and takes the OHTTP key
//! configuration **only** from the verified enclave's runtime data. It pins that enclave (TEE,
//! measurement, key configuration): every later TLS handshake must present the same enclave,
//! otherwise the handshake fails and nothing is sent ([`OhttpError::EnclaveChanged`]).
//! Requests travel as Binary HTTP (RFC 9292) inside OHTTP; streamed answers use chunked OHTTP
//! (draft-ietf-ohai-chunked-ohttp) and are decrypted chunk by chunk as they arrive.

use std::io::Cursor;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bhttp::stream::AsyncReadMessage as _;
use bhttp::{Message, Mode};
use cloister_sign::{SigningKey, unix_now};
use cloister_types::online::{
    AUTHORIZATION_SCHEME, InferenceAuthorization, OHTTP_CHUNKED_REQUEST, OHTTP_CHUNKED_RESPONSE,
    OHTTP_KEY_CONFIG_FIELD, OHTTP_PATH, OHTTP_REQUEST, OHTTP_RESPONSE,
};
use cloister_types::{Hex, TeeKind};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, Stream, TryStreamExt as _};
use zeroize::Zeroizing;

use crate::enclave::{Expectations, VerifiedEnclave};
use crate::http::{ClientError, WorkerClient, transport};
use crate::tls::{AttestedServerVerifier, client_config};

/// How long a request authorization is valid.
pub const AUTHORIZATION_VALIDITY: Duration = Duration::from_secs(120);

/// Why an online request was not sent or its answer not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OhttpError {
    /// Attesting or reaching the worker failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The enclave's runtime data has no OHTTP key configuration.
    #[error(
        "the worker's attested runtime data has no OHTTP key configuration \
         ({OHTTP_KEY_CONFIG_FIELD}); it does not serve online inference"
    )]
    NoKeyConfig,
    /// The key configuration cannot be used.
    #[error("the worker's OHTTP key configuration is unusable: {0}")]
    BadKeyConfig(String),
    /// No connection to the worker could be opened (TCP or TLS failed before the request was
    /// written): nothing was sent.
    #[error("could not connect to the worker at {url} ({reason}); nothing was sent")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A later handshake presented another enclave, or one that no longer verifies.
    #[error(
        "the worker's attestation changed or no longer verifies ({0}); nothing was sent. Only an \
         enclave that attests again against the expectations is trusted"
    )]
    EnclaveChanged(String),
    /// The request could not be encapsulated or signed.
    #[error("could not prepare the request: {0}")]
    Encapsulate(String),
    /// The answer could not be decrypted or decoded.
    #[error("the worker's answer could not be decrypted: {0}")]
    Decrypt(String),
}

/// The part of a verified enclave the client pins at start.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PinnedEnclave {
    tee: TeeKind,
    measurement: Hex,
    key_config: String,
}

impl PinnedEnclave {
    fn of(enclave: &VerifiedEnclave) -> Result<Self, OhttpError> {
        let key_config = enclave
            .runtime_data
            .extra
            .get(OHTTP_KEY_CONFIG_FIELD)
            .and_then(|v| v.as_str())
            .ok_or(OhttpError::NoKeyConfig)?
            .to_owned();
        Ok(PinnedEnclave {
            tee: enclave.claims.tee,
            measurement: enclave.claims.measurement.clone(),
            key_config,
        })
    }

    fn difference(&self, other: &PinnedEnclave) -> Option<String> {
        if self.tee != other.tee {
            Some(format!("the TEE is now {} instead of {}", other.tee, self.tee))
        } else if self.measurement != other.measurement {
            Some(format!(
                "the measurement is now {} instead of {}",
                other.measurement, self.measurement
            ))
        } else if self.key_config != other.key_config {
            Some("the enclave's OHTTP key is not the one attested at start".to_owned())
        } else {
            None
        }
    }
}

/// One inner request (plaintext; it exists only on the requester's machine and in the enclave).
#[derive(Debug)]
pub struct InnerRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path with query.
    pub path: &'a str,
    /// Header fields (`content-type`, `authorization`, …).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: &'a [u8],
}

/// A decrypted answer.
#[derive(Debug)]
pub struct InnerResponse {
    /// HTTP status.
    pub status: u16,
    /// Its `content-type`, if any.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Zeroizing<Vec<u8>>,
}

/// The decrypted body of a streamed answer, as it arrives.
pub type DecryptedStream = Pin<Box<dyn Stream<Item = Result<bytes::Bytes, OhttpError>> + Send>>;

/// A streamed answer: status and type first, then the body chunk by chunk.
pub struct StreamingResponse {
    /// HTTP status.
    pub status: u16,
    /// Its `content-type`, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: DecryptedStream,
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse").field("status", &self.status).finish_non_exhaustive()
    }
}

/// An OHTTP client of one pinned, attested worker.
#[derive(Debug)]
pub struct OhttpClient {
    url: String,
    http: reqwest::Client,
    verifier: Arc<AttestedServerVerifier>,
    key_config: Vec<u8>,
    enclave: VerifiedEnclave,
}

impl OhttpClient {
    /// Attests the worker at `base` against `expectations`, reads its OHTTP key configuration
    /// from the verified runtime data, and pins that enclave for every later request.
    pub async fn connect(base: &str, expectations: Expectations) -> Result<Self, OhttpError> {
        let base = base.trim_end_matches('/');
        let (enclave, _) = WorkerClient::new(base, expectations.clone())?.attest().await?;
        let pinned = PinnedEnclave::of(&enclave)?;
        let key_config = URL_SAFE_NO_PAD
            .decode(&pinned.key_config)
            .map_err(|e| OhttpError::BadKeyConfig(e.to_string()))?;
        ohttp::KeyConfig::decode(&key_config)
            .map_err(|e| OhttpError::BadKeyConfig(e.to_string()))?;
        // Every later handshake must present the same enclave: the expectations again, and the
        // TEE, measurement and OHTTP key attested at start.
        let verifier = Arc::new(AttestedServerVerifier::with_check(
            expectations,
            Box::new(move |enclave| {
                let presented = PinnedEnclave::of(enclave).map_err(|e| e.to_string())?;
                pinned.difference(&presented).map_or(Ok(()), Err)
            }),
        ));
        let url = format!("{base}{OHTTP_PATH}");
        let tls = client_config(verifier.clone())
            .map_err(|e| ClientError::Transport { url: url.clone(), reason: e.to_string() })?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| transport(&url, e))?;
        Ok(OhttpClient { url, http, verifier, key_config, enclave })
    }

    /// The enclave verified and pinned at start.
    pub fn enclave(&self) -> &VerifiedEnclave {
        &self.enclave
    }

    /// Sends one request and returns the decrypted answer.
    pub async fn send(&self, request: &InnerRequest<'_>) -> Result<InnerResponse, OhttpError> {
        let encoded = encode_request(request)?;
        let (encapsulated, responder) = ohttp::ClientRequest::from_encoded_config(&self.key_config)
            .and_then(|client| client.encapsulate(&encoded))
            .map_err(|e| OhttpError::Encapsulate(e.to_string()))?;
        drop(encoded);
        let response = self.post(OHTTP_REQUEST, OHTTP_RESPONSE, encapsulated).await?;
        let bytes = response.bytes().await.map_err(|e| transport(&self.url, e))?;
        let plain = Zeroizing::new(
            responder.decapsulate(&bytes).map_err(|e| OhttpError::Decrypt(e.to_string()))?,
        );
        let message = Message::read_bhttp(&mut Cursor::new(&plain[..]))
            .map_err(|e| OhttpError::Decrypt(format!("not a Binary HTTP response: {e}")))?;
        let status = message
            .control()
            .status()
            .map(u16::from)
            .ok_or_else(|| OhttpError::Decrypt("the inner answer is not a response".into()))?;
        let content_type =
            message.header().get(b"content-type").map(|v| String::from_utf8_lossy(v).into_owned());
        Ok(InnerResponse { status, content_type, body: Zeroizing::new(message.content().to_vec()) })
    }

    /// Sends one request with chunked OHTTP and returns the answer as it is decrypted, chunk by
    /// chunk (for server-sent events).
    pub async fn send_streaming(
        &self,
        request: &InnerRequest<'_>,
    ) -> Result<StreamingResponse, OhttpError> {
        let encoded = encode_request(request)?;
        let buffer = SharedBuffer::default();
        let mut writer = ohttp::ClientRequest::from_encoded_config(&self.key_config)
            .and_then(|client| client.encapsulate_stream(buffer.clone()))
            .map_err(|e| OhttpError::Encapsulate(e.to_string()))?;
        let encapsulate = |e: std::io::Error| OhttpError::Encapsulate(e.to_string());
        writer.write_all(&encoded).await.map_err(encapsulate)?;
        writer.close().await.map_err(encapsulate)?;
        drop(encoded);
        let encapsulated = buffer.take();
        let response =
            self.post(OHTTP_CHUNKED_REQUEST, OHTTP_CHUNKED_RESPONSE, encapsulated).await?;
        let url = self.url.clone();
        let chunks = futures::stream::unfold(response, move |mut response| {
            let url = url.clone();
            async move {
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), response)),
                    Ok(None) => None,
                    Err(e) => Some((Err(std::io::Error::other(transport(&url, e))), response)),
                }
            }
        });
        let reader = writer
            .response(Box::pin(chunks).into_async_read())
            .map_err(|e| OhttpError::Decrypt(e.to_string()))?;
        let mut message = Message::async_read(reader);
        let header = message.header().await.map_err(|e| OhttpError::Decrypt(e.to_string()))?;
        let status = header
            .control()
            .status()
            .map(u16::from)
            .ok_or_else(|| OhttpError::Decrypt("the inner answer is not a response".into()))?;
        let content_type =
            header.get(b"content-type").map(|v| String::from_utf8_lossy(v).into_owned());
        let body = futures::stream::unfold(Some(message), |state| async move {
            let mut message = state?;
            let mut buf = vec![0u8; 16 << 10];
            let read = match message.body() {
                Ok(mut body) => body.read(&mut buf).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), Some(message)))
                }
                Err(e) => Some((Err(OhttpError::Decrypt(e)), None)),
            }
        });
        Ok(StreamingResponse { status, content_type, body: Box::pin(body) })
    }

    async fn post(
        &self,
        content_type: &str,
        expected: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, OhttpError> {
        self.verifier.take_refusal();
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if let Some(why) = self.verifier.take_refusal() {
                    return Err(OhttpError::EnclaveChanged(why));
                }
                // reqwest reports a failure of its connector (TCP connect or TLS handshake) as a
                // connect error: the request had not been written on any connection yet.
                let connect = error.is_connect();
                return Err(match transport(&self.url, error) {
                    ClientError::Transport { url, reason } if connect => {
                        OhttpError::Unreachable { url, reason }
                    }
                    other => other.into(),
                });
            }
        };
        let status = response.status();
        let got = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !status.is_success() || got != expected {
            let text = response.text().await.unwrap_or_default();
            return Err(ClientError::Refused {
                url: self.url.clone(),
                status: status.as_u16(),
                code: String::new(),
                message: text.chars().take(300).collect(),
            }
            .into());
        }
        Ok(response)
    }
}

/// The `authorization` header value for one inner request: `Cloister <JWS>`, the requester's
/// signature over the method, path, body digest and a fresh id, valid for
/// [`AUTHORIZATION_VALIDITY`].
pub fn authorization_header(
    key: &SigningKey,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, OhttpError> {
    let claims = InferenceAuthorization::for_request(
        method,
        path,
        body,
        uuid::Uuid::new_v4().simple().to_string(),
    );
    let token = key
        .sign("inference request", &claims, unix_now(), AUTHORIZATION_VALIDITY)
        .map_err(|e| OhttpError::Encapsulate(e.to_string()))?;
    Ok(format!("{AUTHORIZATION_SCHEME} {token}"))
}

/// The request as a known-length Binary HTTP message.
fn encode_request(request: &InnerRequest<'_>) -> Result<Zeroizing<Vec<u8>>, OhttpError> {
    let mut message = Message::request(
        request.method.as_bytes().to_vec(),
        b"https".to_vec(),
        b"enclave".to_vec(),
        request.path.as_bytes().to_vec(),
    );
    for (name, value) in &request.headers {
        message.put_header(name.to_ascii_lowercase().into_bytes(), value.as_bytes().to_vec());
    }
    message.write_content(request.body);
    let mut encoded = Zeroizing::new(Vec::with_capacity(request.body.len() + 256));
    message
        .write_bhttp(Mode::KnownLength, &mut *encoded)
        .map_err(|e| OhttpError::Encapsulate(e.to_string()))?;
    Ok(encoded)
}

/// Collects what the chunked request writer produces.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl futures::AsyncWrite for SharedBuffer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
