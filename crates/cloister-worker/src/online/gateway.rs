//! The outer route `POST /v1/ohttp`: an Oblivious HTTP gateway (RFC 9458) in front of the inner
//! router, inside the enclave. What reaches it and what leaves it is ciphertext to everything
//! outside the enclave, TLS terminators included.
//!
//! - `message/ohttp-req` → the inner answer as one `message/ohttp-res`.
//! - `message/ohttp-chunked-req` (draft-ietf-ohai-chunked-ohttp) → `message/ohttp-chunked-res`:
//!   the inner answer as an indeterminate-length Binary HTTP response whose head is the first
//!   chunk and whose every body frame (one server-sent event each) is its own encrypted chunk,
//!   flushed as it is produced.
//!
//! A request that does not decrypt gets a plain 400 that says nothing more; every other answer,
//! errors included, is encrypted.

use std::convert::Infallible;
use std::io::Cursor;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bhttp::{Message, Mode};
use cloister_types::online::{
    OHTTP_CHUNKED_REQUEST, OHTTP_CHUNKED_RESPONSE, OHTTP_PATH, OHTTP_REQUEST, OHTTP_RESPONSE,
};
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use crate::online::api::{MAX_INNER_BODY, inner_router};
use crate::online::error::{OnlineError, RefusalCode};
use crate::server::Worker;

/// Largest encapsulated request.
const MAX_ENCAPSULATED: usize = MAX_INNER_BODY + (64 << 10);

#[derive(Clone)]
struct Gateway {
    worker: Arc<Worker>,
    inner: Router,
}

/// The gateway route, to be mounted on the outer router at [`OHTTP_PATH`].
pub fn gateway(worker: Arc<Worker>) -> Router {
    let inner = inner_router(worker.clone());
    Router::new()
        .route(OHTTP_PATH, post(handle))
        .layer(DefaultBodyLimit::max(MAX_ENCAPSULATED))
        .with_state(Gateway { worker, inner })
}

async fn handle(State(gateway): State<Gateway>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    match content_type {
        OHTTP_REQUEST => whole(gateway, &body).await,
        OHTTP_CHUNKED_REQUEST => chunked(gateway, body).await,
        _ => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send {OHTTP_REQUEST} or {OHTTP_CHUNKED_REQUEST}"),
        )
            .into_response(),
    }
}

fn undecryptable(worker: &Worker) -> Response {
    worker.metrics.online(Some("undecryptable"));
    tracing::info!("refused an encapsulated request that does not decrypt");
    (StatusCode::BAD_REQUEST, "the encapsulated request could not be decrypted").into_response()
}

fn server(worker: &Worker) -> Result<ohttp::Server, StatusCode> {
    ohttp::Server::new(worker.identity.ohttp_key_config().clone()).map_err(|error| {
        tracing::error!(%error, "the OHTTP key configuration is unusable");
        StatusCode::INTERNAL_SERVER_ERROR
    })
}

async fn whole(gateway: Gateway, body: &[u8]) -> Response {
    let server = match server(&gateway.worker) {
        Ok(server) => server,
        Err(status) => return status.into_response(),
    };
    let Ok((plain, responder)) = server.decapsulate(body) else {
        return undecryptable(&gateway.worker);
    };
    let plain = Zeroizing::new(plain);
    let response = dispatch(&gateway.inner, &plain, &gateway.worker.metrics).await;
    drop(plain);
    let (parts, body) = response.into_parts();
    let content = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(content) => content,
        Err(error) => {
            tracing::warn!(%error, "the inner answer could not be read");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut encoded = Zeroizing::new(Vec::with_capacity(content.len() + 64));
    let encapsulated = response_message(parts.status, &parts.headers)
        .map_err(|e| e.to_string())
        .and_then(|mut message| {
            message.write_content(&content);
            message.write_bhttp(Mode::KnownLength, &mut *encoded).map_err(|e| e.to_string())
        })
        .and_then(|()| responder.encapsulate(&encoded).map_err(|e| e.to_string()));
    match encapsulated {
        Ok(bytes) => ([(CONTENT_TYPE, OHTTP_RESPONSE)], bytes).into_response(),
        Err(error) => {
            tracing::warn!(%error, "the inner answer could not be encapsulated");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn chunked(gateway: Gateway, body: Bytes) -> Response {
    let server = match server(&gateway.worker) {
        Ok(server) => server,
        Err(status) => return status.into_response(),
    };
    let mut request = server.decapsulate_stream(futures::io::Cursor::new(body));
    let mut plain = Zeroizing::new(Vec::new());
    if request.read_to_end(&mut plain).await.is_err() {
        return undecryptable(&gateway.worker);
    }
    let (sender, receiver) = futures::channel::mpsc::unbounded::<Bytes>();
    let writer = match request.response(ChannelWriter(sender)) {
        Ok(writer) => writer,
        Err(error) => {
            tracing::warn!(%error, "could not start the chunked response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let inner = gateway.inner.clone();
    let metrics = gateway.worker.metrics.clone();
    tokio::spawn(async move {
        if let Err(error) = stream_answer(inner, plain, writer, &metrics).await {
            tracing::info!(%error, "a chunked answer ended early");
        }
    });
    ([(CONTENT_TYPE, OHTTP_CHUNKED_RESPONSE)], Body::from_stream(receiver.map(Ok::<_, Infallible>)))
        .into_response()
}

/// Runs the inner request and writes its answer as chunks: the Binary HTTP head first, then one
/// chunk per body frame, each flushed at once.
async fn stream_answer(
    inner: Router,
    plain: Zeroizing<Vec<u8>>,
    writer: impl futures::AsyncWrite,
    metrics: &crate::metrics::WorkerMetrics,
) -> std::io::Result<()> {
    let response = dispatch(&inner, &plain, metrics).await;
    drop(plain);
    let (parts, body) = response.into_parts();
    let head = stream_head(parts.status, &parts.headers)?;
    let mut writer = pin!(writer);
    writer.write_all(&head).await?;
    writer.flush().await?;
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let data = frame.map_err(std::io::Error::other)?;
        if data.is_empty() {
            continue;
        }
        let mut chunk = Zeroizing::new(Vec::with_capacity(data.len() + 8));
        write_varint(data.len() as u64, &mut chunk);
        chunk.extend_from_slice(&data);
        writer.write_all(&chunk).await?;
        writer.flush().await?;
    }
    // The end of the content and an empty trailer section (RFC 9292 §3.8).
    writer.write_all(&[0, 0]).await?;
    writer.close().await
}

/// The head of an indeterminate-length Binary HTTP response: framing indicator, status and
/// header fields with their terminator; the content follows as length-prefixed chunks.
fn stream_head(status: StatusCode, headers: &HeaderMap) -> std::io::Result<Vec<u8>> {
    let message = response_message(status, headers)?;
    let mut head = Vec::new();
    message.write_bhttp(Mode::IndeterminateLength, &mut head).map_err(std::io::Error::other)?;
    // An empty message ends with the empty content's and the empty trailer's terminators.
    if !head.ends_with(&[0, 0]) {
        return Err(std::io::Error::other("unexpected Binary HTTP encoding"));
    }
    head.truncate(head.len() - 2);
    Ok(head)
}

fn response_message(status: StatusCode, headers: &HeaderMap) -> std::io::Result<Message> {
    let status = bhttp::StatusCode::try_from(status.as_u16()).map_err(std::io::Error::other)?;
    let mut message = Message::response(status);
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        message.put_header("content-type", content_type.as_bytes());
    }
    Ok(message)
}

/// QUIC variable-length integer (RFC 9000 §16), as Binary HTTP uses.
fn write_varint(value: u64, out: &mut Vec<u8>) {
    if value < 1 << 6 {
        out.push(value as u8);
    } else if value < 1 << 14 {
        out.extend_from_slice(&((value as u16) | 0x4000).to_be_bytes());
    } else if value < 1 << 30 {
        out.extend_from_slice(&((value as u32) | 0x8000_0000).to_be_bytes());
    } else {
        out.extend_from_slice(&(value | 0xc000_0000_0000_0000).to_be_bytes());
    }
}

/// Decodes the decrypted Binary HTTP request and runs it through the inner router; counts it as
/// answered or refused (by the refusal's code) in `metrics`.
async fn dispatch(
    inner: &Router,
    plain: &[u8],
    metrics: &crate::metrics::WorkerMetrics,
) -> Response {
    let response = match to_request(plain) {
        Ok(request) => match inner.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(error) => error.into_response(),
    };
    metrics.online(response.extensions().get::<RefusalCode>().map(|code| code.0));
    response
}

fn to_request(plain: &[u8]) -> Result<Request<Body>, OnlineError> {
    let bad =
        || OnlineError::BadRequest("the decrypted request is not a Binary HTTP request".into());
    let message = Message::read_bhttp(&mut Cursor::new(plain)).map_err(|_| bad())?;
    let control = message.control();
    let (Some(method), Some(path)) = (control.method(), control.path()) else {
        return Err(bad());
    };
    let mut builder = Request::builder().method(method).uri(path);
    for field in message.header().fields() {
        builder = builder.header(field.name(), field.value());
    }
    builder.body(Body::from(message.content().to_vec())).map_err(|_| bad())
}

/// Hands every encrypted byte the chunked writer produces to the HTTP response body.
struct ChannelWriter(futures::channel::mpsc::UnboundedSender<Bytes>);

impl futures::AsyncWrite for ChannelWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.0
                .unbounded_send(Bytes::copy_from_slice(buf))
                .map(|()| buf.len())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.0.close_channel();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_head_and_chunks_read_back_as_binary_http() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "text/event-stream".parse().unwrap());
        let mut bytes = stream_head(StatusCode::OK, &headers).unwrap();
        for event in ["data: one\n\n", "data: two\n\n"] {
            write_varint(event.len() as u64, &mut bytes);
            bytes.extend_from_slice(event.as_bytes());
        }
        bytes.extend_from_slice(&[0, 0]);
        let message = Message::read_bhttp(&mut Cursor::new(&bytes[..])).unwrap();
        assert_eq!(message.control().status().map(u16::from), Some(200));
        assert_eq!(message.header().get(b"content-type"), Some(&b"text/event-stream"[..]));
        assert_eq!(message.content(), b"data: one\n\ndata: two\n\n");
    }

    #[test]
    fn varints_use_the_shortest_form() {
        for (value, len) in [(0u64, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (1 << 30, 8)] {
            let mut out = Vec::new();
            write_varint(value, &mut out);
            assert_eq!(out.len(), len, "{value}");
        }
    }
}
