//! The Cloister enclave worker: generates its keys, attests, serves an attested-TLS API, runs jobs
//! on sealed inputs, seals outputs, erases, and signs receipts.

pub mod engine;
