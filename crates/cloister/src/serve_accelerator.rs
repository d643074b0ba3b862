//! `cloister serve accelerator`: the untrusted side of hybrid execution. It multiplies blinded
//! rows by public weights for TEEs that send them ([`cloister_offload`]) and is trusted with
//! nothing: what it receives is uniform noise to it, and every answer is checked by the TEE.
//! Plain TCP, length-prefixed messages ([`cloister_offload::wire::frame_length`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use cloister_offload::server::AcceleratorState;
use cloister_offload::wire;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// How long a client may take to send a whole request once it started one.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What `serve accelerator` is given.
#[derive(Clone, Debug)]
pub struct AcceleratorOptions {
    /// Address to listen on.
    pub listen: String,
    /// Threads for the products.
    pub threads: usize,
    /// Bytes of public weights held at once.
    pub weights_budget: usize,
    /// Where to write every request received, when anywhere.
    pub record: Option<PathBuf>,
}

/// Writes each request received to its own file, numbered in arrival order.
#[derive(Debug)]
struct Recorder {
    dir: PathBuf,
    next: AtomicU64,
}

impl Recorder {
    fn record(&self, request: &[u8]) -> std::io::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        std::fs::write(self.dir.join(format!("{seq:06}.bin")), request)
    }
}

/// Serves until interrupted.
pub async fn serve(options: &AcceleratorOptions) -> Result<()> {
    let listen = &options.listen;
    let threads = options.threads;
    let recorder = match &options.record {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the record directory {}", dir.display()))?;
            Some(Arc::new(Recorder { dir: dir.clone(), next: AtomicU64::new(0) }))
        }
        None => None,
    };
    let listener =
        TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let state = Arc::new(AcceleratorState::new(options.weights_budget, threads));
    let local = listener.local_addr()?;
    tracing::info!(
        event = crate::logging::LISTENING,
        address = %local,
        threads,
        "accelerator listening (it sees only blinded values and public weights)"
    );
    let accept = async {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let state = Arc::clone(&state);
            let recorder = recorder.clone();
            tokio::spawn(async move {
                if let Err(e) = connection(stream, state, recorder).await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    };
    tokio::select! {
        () = accept => Ok(()),
        () = crate::serve::shutdown_signal() => Ok(()),
    }
}

/// Answers requests on one connection until the client closes it.
async fn connection(
    mut stream: TcpStream,
    state: Arc<AcceleratorState>,
    recorder: Option<Arc<Recorder>>,
) -> Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let mut prefix = [0u8; 4];
        match stream.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let length = wire::frame_length(prefix)?;
        let mut request = vec![0u8; length];
        tokio::time::timeout(REQUEST_TIMEOUT, stream.read_exact(&mut request))
            .await
            .context("the request did not arrive in time")??;
        let state = Arc::clone(&state);
        let recorder = recorder.clone();
        let answer = tokio::task::spawn_blocking(move || {
            if let Some(recorder) = recorder
                && let Err(e) = recorder.record(&request)
            {
                tracing::warn!(error = %e, "a request could not be recorded");
            }
            state.handle(&request)
        })
        .await?;
        let length = u32::try_from(answer.len()).context("an answer too long to frame")?;
        stream.write_all(&length.to_le_bytes()).await?;
        stream.write_all(&answer).await?;
    }
}
