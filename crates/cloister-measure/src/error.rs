//! Why a measurement could not be computed: one error type for the whole crate, each variant
//! saying what was wrong with which input.

use thiserror::Error;

/// A measurement that could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MeasureError {
    // --- SEV-SNP inputs ---
    /// A firmware image is empty, not whole pages, or too large for where it goes.
    #[error(
        "the {image} image is {len} bytes: it must be a whole number of 4096-byte pages that fits \
         below 4 GiB (is this the right file?)"
    )]
    FirmwareSize {
        /// `OVMF` or `SVSM`.
        image: &'static str,
        /// The image's size.
        len: usize,
    },

    /// The image does not end with the GUIDed footer table SEV firmware carries.
    #[error(
        "the {image} image has no GUIDed footer table (GUID 96b582de-1fb2-45f7-baea-a366c55a082d \
         50 bytes before its end): give the whole firmware file of an SEV-capable build \
         (e.g. edk2 OvmfPkg/AmdSev), not a code-only or vars-only part"
    )]
    NoFooterTable {
        /// `OVMF` or `SVSM`.
        image: &'static str,
    },

    /// The footer table or the SEV metadata it points to is inconsistent.
    #[error("the {image} image is malformed: {reason}")]
    MalformedFirmware {
        /// `OVMF` or `SVSM`.
        image: &'static str,
        /// What is wrong, and where.
        reason: String,
    },

    /// The footer table lacks an entry the launch needs.
    #[error(
        "the {image} image's footer table has no {entry} entry ({guid}); this firmware cannot be launched this way"
    )]
    MissingFirmwareEntry {
        /// `OVMF` or `SVSM`.
        image: &'static str,
        /// The entry's name.
        entry: &'static str,
        /// The entry's GUID.
        guid: String,
    },

    /// A kernel was given but the firmware has no place for QEMU's hashes table.
    #[error(
        "a kernel was given but this OVMF cannot measure kernel/initrd/cmdline for {mode} (its \
         metadata has no SNP_KERNEL_HASHES section, or no SEV hash table entry): use an OVMF built \
         from OvmfPkg/AmdSev/AmdSevX64.dsc for measured direct boot, or leave out the kernel"
    )]
    KernelHashesUnsupported {
        /// `SNP`, `SEV-ES` or `SEV`.
        mode: &'static str,
    },

    /// An initrd or a command line without a kernel.
    #[error("a {part} was given without a kernel: QEMU only measures it with direct kernel boot")]
    BootPartWithoutKernel {
        /// `initrd` or `command line`.
        part: &'static str,
    },

    /// The vCPU count is out of range.
    #[error("{vcpus} vCPUs: the count must be 1 to 4096")]
    VcpuCount {
        /// The count given.
        vcpus: u32,
    },

    /// QEMU needs the vCPU type.
    #[error(
        "QEMU writes the vCPU's CPUID signature into every VMSA, so the vCPU type is needed: give \
         the -cpu model the VM runs with (e.g. EPYC-v4) or its signature (e.g. 0x00800f12)"
    )]
    VcpuTypeRequired,

    /// An unknown vCPU type name.
    #[error(
        "unknown vCPU type {given:?}: use one of EPYC, EPYC-v1, EPYC-v2, EPYC-IBPB, EPYC-v3, EPYC-v4, \
         EPYC-Rome, EPYC-Rome-v1, EPYC-Rome-v2, EPYC-Rome-v3, EPYC-Milan, EPYC-Milan-v1, \
         EPYC-Milan-v2, EPYC-Genoa, EPYC-Genoa-v1, EPYC-Turin, or a CPUID signature such as 0x00800f12"
    )]
    UnknownVcpuType {
        /// What was given.
        given: String,
    },

    /// An unknown VMM name.
    #[error("unknown VMM {given:?}: use one of qemu, ec2, gce")]
    UnknownVmm {
        /// What was given.
        given: String,
    },

    /// Something Coconut SVSM mode does not support.
    #[error("Coconut SVSM mode does not support {what}")]
    SvsmUnsupported {
        /// The unsupported input.
        what: &'static str,
    },

    /// The OVMF variable-store size does not fit below OVMF or is not whole pages.
    #[error("OVMF vars size {size} is not a whole number of 4096-byte pages that fits below OVMF")]
    OvmfVarsSize {
        /// The size given.
        size: u64,
    },

    // --- TDX event logs ---
    /// The log does not open with the Spec ID event.
    #[error("not a crypto-agile TCG event log: {reason}")]
    NoSpecIdEvent {
        /// What was found instead.
        reason: String,
    },

    /// The log carries no SHA-384 digests.
    #[error(
        "the event log carries no SHA-384 digests (its algorithms: {algorithms:04x?}); TDX RTMRs are \
         SHA-384, so this is not a TDX CC event log"
    )]
    NoSha384 {
        /// The TCG algorithm identifiers it declares.
        algorithms: Vec<u16>,
    },

    /// An event uses an algorithm the Spec ID event does not declare, so its size is unknown.
    #[error(
        "event {event} (byte {offset}) has a digest of algorithm {algorithm:#06x}, which the Spec ID \
         event does not declare; the log cannot be parsed past it"
    )]
    UndeclaredAlgorithm {
        /// The event's number (1 = the first after the Spec ID event).
        event: u32,
        /// Where the event starts.
        offset: usize,
        /// The TCG algorithm identifier.
        algorithm: u16,
    },

    /// An event has no SHA-384 digest to extend.
    #[error("event {event} (byte {offset}) has no SHA-384 digest")]
    MissingSha384 {
        /// The event's number.
        event: u32,
        /// Where the event starts.
        offset: usize,
    },

    /// An event names a measurement register TDX does not have.
    #[error(
        "event {event} (byte {offset}) extends CC MR index {mr_index}; TDX has indices 0 (MRTD) to 4 (RTMR3)"
    )]
    MrIndex {
        /// The event's number.
        event: u32,
        /// Where the event starts.
        offset: usize,
        /// The index found.
        mr_index: u32,
    },

    /// The log's structure is broken.
    #[error("malformed event log at byte {offset}: {reason}")]
    MalformedEventLog {
        /// Where the broken structure starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },

    /// A replayed register differs from the value it was checked against.
    #[error(
        "the event log does not replay to the expected RTMR{rtmr} (CC MR index {}): calculated \
         {calculated}, expected {expected}",
        rtmr + 1
    )]
    RtmrMismatch {
        /// 0–3.
        rtmr: usize,
        /// The replayed value (hex).
        calculated: String,
        /// The expected value (hex).
        expected: String,
    },

    // --- SGX ---
    /// The SGXS stream is broken.
    #[error("malformed SGXS stream at byte {offset}: {reason}")]
    MalformedSgxs {
        /// Where the broken record starts.
        offset: usize,
        /// What is wrong.
        reason: String,
    },

    /// A record type the SGXS format does not define.
    #[error(
        "unknown SGXS record \"{tag}\" at byte {offset} (expected ECREATE, EADD, EEXTEND or UNMEASRD)"
    )]
    UnknownSgxsRecord {
        /// Where the record starts.
        offset: usize,
        /// Its 8-byte tag, escaped.
        tag: String,
    },

    /// The stream's enclave size is not final.
    #[error(
        "the SGXS stream starts with UNSIZED: its enclave size is not final, so it has no MRENCLAVE yet"
    )]
    SgxsUnsized,

    /// A SIGSTRUCT of the wrong size.
    #[error("a SIGSTRUCT is 1808 bytes, this input is {len}")]
    SigstructSize {
        /// The input's size.
        len: usize,
    },

    /// A SIGSTRUCT field with a value SGX does not accept.
    #[error("not a valid SIGSTRUCT: {name} is {found}")]
    SigstructField {
        /// The field.
        name: &'static str,
        /// Its value.
        found: String,
    },

    /// The SIGSTRUCT's signature does not verify.
    #[error("the SIGSTRUCT's signature is invalid: {reason}")]
    SignatureInvalid {
        /// Which check failed.
        reason: String,
    },
}
