//! Appraisal policies: Rego (evaluated by `regorus`) that turns verified claims and an
//! instance's reference values into an EAR status, an AR4SI trustworthiness vector and reasons.
//!
//! The contract for policy authors (see `docs/policy.md`): the module is
//! `package cloister.appraisal`; the input is
//! `{"claims": <Claims>, "reference_values": <object>, "tee": "<tee>"}`; the rule `result` is an
//! object `{"status", "trustworthiness_vector", "reasons"}`. Anything else fails closed: an
//! undefined or malformed `result` is a contraindicated [`Appraisal`] saying why.
//!
//! Two built-in policies ship with the crate: [`AppraisalPolicy::production_default`], which
//! never accepts the simulated TEE, and [`AppraisalPolicy::development_sim`], which names `sim`
//! explicitly and accepts it as a warning only.
//!
//! Key release policies ([`ReleasePolicy`], `package cloister.release`) decide whether the key
//! broker releases an owner's key to an attested enclave; see `docs/policy.md`.
//!
//! This crate is pure: no I/O; policies are compiled once and each appraisal runs on a clone of
//! the prepared engine. Every evaluation is bounded in time ([`EVALUATION_TIME_LIMIT`]) and
//! fails closed past it.

mod appraisal;
pub mod authz;
mod error;
mod limits;
mod release;

pub use crate::appraisal::{AR4SI_CLAIMS, Appraisal, AppraisalPolicy, POLICY_PACKAGE};
pub use crate::authz::{Action, Denied, Principal, Resource, authorize};
pub use crate::error::PolicyError;
pub use crate::limits::{EVALUATION_TIME_LIMIT, MAX_POLICY_BYTES, MAX_RANGE_ELEMENTS};
pub use crate::release::{
    MAX_RELEASE_POLICY_LEN, RELEASE_POLICY_PACKAGE, ReleaseDecision, ReleaseInput, ReleasePolicy,
    overall_status,
};
