//! ML engines that run inside the enclave worker.
