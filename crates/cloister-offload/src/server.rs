//! The accelerator's request handler (no I/O: `cloister serve accelerator` reads and writes the
//! bytes). It holds public weights by digest — nothing about any request outlives the request.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::cpu::{self, PreparedWeights};
use crate::quant::QuantizedWeights;
use crate::wire::{Message, REFUSED, UNKNOWN_WEIGHTS};

/// Weights held at once, in bytes, before the oldest are dropped (1 GiB).
pub const DEFAULT_WEIGHTS_BUDGET: usize = 1 << 30;

/// An untrusted accelerator: weights by digest and the CPU GEMM.
#[derive(Debug)]
pub struct AcceleratorState {
    held: Mutex<VecDeque<PreparedWeights>>,
    budget: usize,
    threads: usize,
}

impl AcceleratorState {
    /// Holds at most `budget` bytes of weights; multiplies on `threads` threads.
    pub fn new(budget: usize, threads: usize) -> Self {
        AcceleratorState { held: Mutex::new(VecDeque::new()), budget, threads: threads.max(1) }
    }

    /// Answers one request (bytes of a [`Message`]) with the bytes of another.
    pub fn handle(&self, request: &[u8]) -> Vec<u8> {
        let refuse =
            |id: [u8; 16], code: u8, reason: String| Message::Refusal { id, code, reason }.encode();
        match Message::decode(request) {
            Ok(Message::Weights { n, k, values }) => {
                match QuantizedWeights::public(n as usize, k as usize, values) {
                    Ok(weights) => {
                        let digest = *weights.digest();
                        self.hold(PreparedWeights::new(weights));
                        Message::Held { weights: digest }.encode()
                    }
                    Err(e) => refuse([0; 16], REFUSED, e.to_string()),
                }
            }
            Ok(Message::Multiply { id, weights, m, n, rows }) => {
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                let Some(w) = held.iter().find(|w| *w.weights().digest() == weights).cloned()
                else {
                    return refuse(id, UNKNOWN_WEIGHTS, "unknown weights".to_owned());
                };
                drop(held);
                let (w_n, w_k) = (w.weights().n(), w.weights().k());
                if w_n != n as usize {
                    return refuse(id, REFUSED, format!("rows of {n}, weights of {w_n}"));
                }
                match cpu::multiply_prepared(&rows, m as usize, &w, self.threads) {
                    Ok(values) => Message::Product { id, m, k: w_k as u32, values }.encode(),
                    Err(e) => refuse(id, REFUSED, e.to_string()),
                }
            }
            Ok(_) => refuse([0; 16], REFUSED, "not a request".to_owned()),
            Err(e) => refuse([0; 16], REFUSED, e.to_string()),
        }
    }

    fn hold(&self, weights: PreparedWeights) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.iter().any(|w| w.weights().digest() == weights.weights().digest()) {
            return;
        }
        held.push_back(weights);
        // Counted as the f64 matrix each holds (8 bytes a weight).
        while held.iter().map(|w| w.weights().values().len() * 8).sum::<usize>() > self.budget
            && held.len() > 1
        {
            held.pop_front();
        }
    }
}
