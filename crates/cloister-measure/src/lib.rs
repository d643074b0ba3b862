//! Measurement prediction: the values TEEs report, computed from build inputs, so that an
//! appraisal policy can be written before anything is deployed.
//!
//! The crate is pure computation over byte slices: no file or network I/O, no clock. Every
//! parser takes untrusted bytes, reads them by their own declared lengths with bounds checks, and
//! returns a [`MeasureError`] that says which input is wrong and how.
//!
//! # What it computes
//!
//! - **AMD SEV-SNP launch digest** ([`snp::launch_digest`]): the 48-byte `MEASUREMENT` of the
//!   attestation report. It replays the `SNP_LAUNCH_UPDATE` chain of the SEV-SNP ABI
//!   specification (section 8.17, `PAGE_INFO`: `digest = SHA-384(digest ‖ contents digest ‖
//!   length ‖ page type ‖ … ‖ GPA)`) over the OVMF image, the pages OVMF's SEV metadata lists
//!   (found through the GUIDed footer table at the end of the image), QEMU's kernel/initrd/cmdline
//!   hashes table for measured direct boot, and one VMSA page per vCPU. The VMSA depends on the
//!   vCPU type (its CPUID signature), the guest features (`SEV_FEATURES`) and the VMM: QEMU, EC2
//!   or GCE. Coconut SVSM launches ([`snp::Svsm`]) are supported for QEMU. The older SEV-ES and
//!   SEV launch digests (SHA-256) come with it ([`snp::sev_es_launch_digest`],
//!   [`snp::sev_launch_digest`]).
//! - **Intel TDX RTMR0–3** ([`tdx::replay`]): the runtime measurement registers replayed from the
//!   CC event log (the ACPI CCEL table's log area), in the crypto-agile format of the TCG PC
//!   Client Platform Firmware Profile; CC MR index 1–4 extends RTMR0–3 with SHA-384. The parsed
//!   events come back for display, and [`tdx::Replay::check`] compares with a quote's values.
//! - **Intel SGX** ([`sgx`]): MRENCLAVE from an SGXS measurement stream (the SHA-256 of the
//!   `ECREATE`/`EADD`/`EEXTEND` records, `UNMEASRD` records skipped), and a SIGSTRUCT's fields:
//!   MRSIGNER (the SHA-256 of the modulus as stored), the ENCLAVEHASH it signs, ISVPRODID, ISVSVN,
//!   attributes and masks, date and vendor, with the RSA-3072 signature and its Q1/Q2 values
//!   checked on request.
//!
//! # References
//!
//! The algorithms follow the specifications named above (AMD SEV-SNP ABI, AMD APM volume 2
//! table B-4 for the VMSA, the TCG PC Client Platform Firmware Profile, the Intel SDM volume 3D
//! for SIGSTRUCT, Fortanix's SGXS format description) and the behaviour of QEMU, edk2 OVMF and
//! Coconut SVSM. The values were checked against the vectors the virtee/sev and
//! virtee/sev-snp-measure projects (SNP), google/go-eventlog and confidential-containers/trustee
//! (TDX) and fortanix/rust-sgx (SGX) assert in their tests (see `tests/cases.rs`).
//!
//! **EC2 differs between the references.** virtee/sev-snp-measure changed its EC2 VMSA in its
//! commit 4a02bf0 (2026-05-12); virtee/sev still computes the older values. This crate follows
//! sev-snp-measure's current values ([`snp::Vmm::Ec2`]); a test pins both the values it matches
//! and the virtee/sev values it does not.
//!
//! # Out of scope
//!
//! - **TDX MRTD** (the TD's initial memory, measured from the TDVF firmware by the TDX module):
//!   no published TDVF image with an expected MRTD was found to check an implementation against.
//! - **AWS Nitro PCRs** (from an enclave image file): the published reference values need an image
//!   built from a container pulled over the network; there is no offline vector.
//! - Interpreting TDX event data (secure-boot state, the "duplicate separator" firmware bug that
//!   go-eventlog refuses when it extracts the firmware state): the replay reports what was
//!   measured, whatever the events mean.

mod bytes;
mod error;
pub mod sgx;
pub mod snp;
pub mod tdx;

pub use error::MeasureError;
