//! Hybrid execution over a real socket: an enclave-side layer offloads its product to
//! `cloister serve accelerator` and gets the right answer; a lying accelerator on the same
//! protocol is caught; a stalled one fails the request within the deadline.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cloister_offload::server::AcceleratorState;
use cloister_offload::wire::{self, Message};
use cloister_offload::{DEFAULT_ROUNDS, OffloadError, OffloadLayer, QuantizedWeights};
use cloister_worker::offload::TcpAccelerator;

/// `cloister serve accelerator` on a free port; killed on drop.
struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_accelerator() -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloister"));
    command.args(["serve", "accelerator", "--listen", "127.0.0.1:0", "--threads", "2"]);
    let started = support::started(command);
    let addr = started.field("address");
    Served { child: started.child, addr }
}

fn layer(n: usize, k: usize) -> (Vec<f32>, OffloadLayer) {
    let weights: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let quantized = QuantizedWeights::quantize(n, k, &weights).unwrap();
    (weights, OffloadLayer::new(quantized, DEFAULT_ROUNDS))
}

#[test]
fn a_layer_offloaded_to_the_accelerator_process_gets_the_product() {
    let served = serve_accelerator();
    let accelerator = TcpAccelerator::new(&served.addr, Duration::from_secs(10)).unwrap();
    let (n, k, m) = (300, 40, 5);
    let (weights, layer) = layer(n, k);
    layer.precompute(m).unwrap();
    let x: Vec<f32> = (0..m * n).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
    for _ in 0..3 {
        let y = layer.multiply(&accelerator, &x, m).unwrap();
        for a in 0..m {
            for j in 0..k {
                let exact: f32 = (0..n).map(|i| x[a * n + i] * weights[i * k + j]).sum();
                let bound =
                    cloister_offload::output_error_bound(&x[a * n..][..n], layer.weights(), j);
                assert!(f64::from((y[a * k + j] - exact).abs()) <= bound + 1e-3, "[{a},{j}]");
            }
        }
    }
    let stats = layer.stats();
    assert_eq!((stats.rows_offloaded, stats.checks_failed, stats.masks_computed), (15, 0, 15));
}

/// A TCP accelerator speaking the protocol that adds one to the first value of every product.
fn lying_accelerator() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let state = AcceleratorState::new(1 << 20, 1);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            loop {
                let mut prefix = [0u8; 4];
                if stream.read_exact(&mut prefix).is_err() {
                    break;
                }
                let mut request = vec![0u8; wire::frame_length(prefix).unwrap()];
                stream.read_exact(&mut request).unwrap();
                let mut answer = Message::decode(&state.handle(&request)).unwrap();
                if let Message::Product { values, .. } = &mut answer {
                    values[0] = (values[0] + 1) % cloister_offload::field::P as u32;
                }
                let bytes = answer.encode();
                stream.write_all(&(bytes.len() as u32).to_le_bytes()).unwrap();
                stream.write_all(&bytes).unwrap();
            }
        }
    });
    addr
}

#[test]
fn a_lying_accelerator_is_caught_and_a_stalled_one_times_out() {
    let (_, layer) = layer(16, 4);
    let x = vec![0.5f32; 16];
    let liar = TcpAccelerator::new(&lying_accelerator(), Duration::from_secs(10)).unwrap();
    for _ in 0..5 {
        let err = layer.multiply(&liar, &x, 1).unwrap_err();
        assert!(matches!(err, OffloadError::IntegrityCheckFailed(_)), "{err}");
    }
    assert_eq!(layer.stats().checks_failed, 5);
    assert_eq!(layer.stats().rows_offloaded, 0);

    // Accepts the connection and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let stalled = TcpAccelerator::new(&addr, Duration::from_millis(500)).unwrap();
    let started = Instant::now();
    let err = layer.multiply(&stalled, &x, 1).unwrap_err();
    assert!(matches!(err, OffloadError::Transport(_)), "{err}");
    // The deadline, not performance: a generous margin over the 500 ms asked for.
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    drop(silent);
}
