//! Fuzz target: arbitrary bytes as an SGXS measurement stream and as a SIGSTRUCT (parsed, then
//! its signature and Q1/Q2 checked). Nothing may panic; an SGXS stream without unmeasured
//! records measures to its own SHA-256.
#![no_main]

use cloister_measure::sgx::{self, Sigstruct};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    if let Ok(mrenclave) = sgx::mrenclave_from_sgxs(data) {
        let unmeasured = data.chunks(64).any(|record| record.starts_with(b"UNMEASRD"));
        if !unmeasured {
            assert_eq!(mrenclave, <[u8; 32]>::from(Sha256::digest(data)));
        }
    }
    if let Ok(sigstruct) = Sigstruct::parse(data) {
        let _ = (sigstruct.mrsigner(), sigstruct.date(), sigstruct.allows_debug());
        let _ = sigstruct.verify_signature();
    }
});
