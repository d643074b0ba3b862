//! Fuzz target: arbitrary bytes as an offload message, as the TEE reads an accelerator's answer
//! and as the accelerator reads a request (through its whole handler). Nothing may panic.
#![no_main]

use cloister_offload::server::AcceleratorState;
use cloister_offload::wire::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(Message::decode(&message.encode()).ok(), Some(message));
    }
    let accelerator = AcceleratorState::new(1 << 16, 1);
    let _ = accelerator.handle(data);
});
