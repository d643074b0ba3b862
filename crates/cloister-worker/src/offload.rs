//! The enclave's connection to an untrusted accelerator (`cloister serve accelerator`): one
//! length-prefixed request and answer at a time over TCP, with a deadline. Nothing it returns
//! is trusted: [`cloister_offload::OffloadLayer`] range-checks and verifies every answer.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::Mutex;
use std::time::Duration;

use cloister_offload::{Accelerator, OffloadError, wire};

/// An accelerator reached over TCP; the connection is kept between requests and opened again
/// after any error.
#[derive(Debug)]
pub struct TcpAccelerator {
    addr: SocketAddr,
    timeout: Duration,
    connection: Mutex<Option<TcpStream>>,
}

impl TcpAccelerator {
    /// An accelerator at `addr` (resolved now) that must answer each request within `timeout`;
    /// past it the request fails ([`OffloadError::Transport`]) and the caller falls back or
    /// fails, as its policy says.
    pub fn new(addr: &str, timeout: Duration) -> Result<Self, OffloadError> {
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| OffloadError::Transport(format!("{addr}: {e}")))?
            .next()
            .ok_or_else(|| OffloadError::Transport(format!("{addr} resolves to nothing")))?;
        Ok(TcpAccelerator { addr, timeout, connection: Mutex::new(None) })
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn round_trip(stream: &mut TcpStream, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
    let io = |e: std::io::Error| OffloadError::Transport(e.to_string());
    let length = u32::try_from(request.len())
        .map_err(|_| OffloadError::Malformed("a request too long to frame"))?;
    stream.write_all(&length.to_le_bytes()).map_err(io)?;
    stream.write_all(request).map_err(io)?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).map_err(io)?;
    let mut answer = vec![0u8; wire::frame_length(prefix)?];
    stream.read_exact(&mut answer).map_err(io)?;
    Ok(answer)
}

impl Accelerator for TcpAccelerator {
    fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, OffloadError> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let mut stream = match connection.take() {
            Some(stream) => stream,
            None => self
                .connect()
                .map_err(|e| OffloadError::Transport(format!("{}: {e}", self.addr)))?,
        };
        // A failed exchange drops the connection: the next request starts on a fresh one, so
        // a late answer to this one can never be read as the answer to the next.
        let answer = round_trip(&mut stream, request)?;
        *connection = Some(stream);
        Ok(answer)
    }
}
