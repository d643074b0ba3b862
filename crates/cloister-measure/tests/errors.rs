//! Every way an input can be refused, on small synthetic inputs built here byte by byte: broken
//! firmware footer tables and SEV metadata, event logs that lie about their lengths or
//! algorithms, SGXS streams with unknown or misplaced records, SIGSTRUCTs of the wrong shape.
//! Each builder first makes a valid input, so every refusal below is about the one byte changed.

#![allow(clippy::unwrap_used)]

use cloister_measure::MeasureError;
use cloister_measure::sgx::{self, Sigstruct};
use cloister_measure::snp::{self, DirectBoot, LaunchInputs, Svsm, VcpuType};
use cloister_measure::tdx;
use sha2::{Digest, Sha256, Sha384};

// --- SEV-SNP firmware ---

const FOOTER: &str = "96b582de-1fb2-45f7-baea-a366c55a082d";
const RESET_BLOCK: &str = "00f771de-1a7e-4fcb-890e-68c77e2fb44e";
const METADATA: &str = "dc886566-984a-4798-a75e-5585a7bf67cc";
const HASH_TABLE: &str = "7255371f-3a3b-4b04-927b-1da6efa8d454";
const SVSM_INFO: &str = "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd";

/// A GUID in edk2's byte order.
fn guid(s: &str) -> Vec<u8> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let b = hex::decode(hex).unwrap();
    let mut out = Vec::new();
    out.extend(b[..4].iter().rev());
    out.extend(b[4..6].iter().rev());
    out.extend(b[6..8].iter().rev());
    out.extend(&b[8..]);
    out
}

/// An `ASEV` metadata block with sections of (GPA, size, type).
fn asev(sections: &[(u32, u32, u32)]) -> Vec<u8> {
    let mut out = b"ASEV".to_vec();
    out.extend((16 + 12 * sections.len() as u32).to_le_bytes());
    out.extend(1u32.to_le_bytes());
    out.extend((sections.len() as u32).to_le_bytes());
    for (gpa, size, kind) in sections {
        out.extend(gpa.to_le_bytes());
        out.extend(size.to_le_bytes());
        out.extend(kind.to_le_bytes());
    }
    out
}

fn valid_sections() -> Vec<(u32, u32, u32)> {
    vec![
        (0x80_0000, 0x3000, 1),
        (0x80_3000, 0x1000, 2),
        (0x80_4000, 0x1000, 3),
        (0x80_5000, 0x1000, 0x10),
    ]
}

fn valid_entries() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (RESET_BLOCK, 0xffff_f000u32.to_le_bytes().to_vec()),
        (METADATA, 0x1000u32.to_le_bytes().to_vec()),
        (HASH_TABLE, [0x80_5c00u32.to_le_bytes(), 0x400u32.to_le_bytes()].concat()),
    ]
}

/// A two-page firmware: the metadata block at the start of the last page, the footer table
/// ending 32 bytes before the end (the raw table bytes are given, footer entry excluded).
fn firmware_with_table(table: &[u8], footer_len: usize, metadata: &[u8]) -> Vec<u8> {
    let len = 2 * 4096;
    let mut image = vec![0u8; len];
    image[len - 0x1000..len - 0x1000 + metadata.len()].copy_from_slice(metadata);
    let mut tail = table.to_vec();
    tail.extend((footer_len as u16).to_le_bytes());
    tail.extend(guid(FOOTER));
    let end = len - 32;
    image[end - tail.len()..end].copy_from_slice(&tail);
    image
}

fn table(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (g, data) in entries {
        out.extend(data);
        out.extend(((data.len() + 18) as u16).to_le_bytes());
        out.extend(guid(g));
    }
    out
}

fn firmware(entries: &[(&str, Vec<u8>)], sections: &[(u32, u32, u32)]) -> Vec<u8> {
    let t = table(entries);
    firmware_with_table(&t, t.len() + 18, &asev(sections))
}

fn digest(ovmf: &[u8], boot: Option<DirectBoot<'_>>) -> Result<[u8; 48], MeasureError> {
    let mut inputs = LaunchInputs::new(ovmf);
    inputs.vcpu_type = Some(VcpuType::EpycGenoa);
    inputs.vcpus = 2;
    inputs.boot = boot;
    snp::launch_digest(&inputs)
}

const KERNEL: Option<DirectBoot<'static>> =
    Some(DirectBoot { kernel: b"kernel", initrd: None, append: Some("quiet") });

fn malformed(result: Result<[u8; 48], MeasureError>, needle: &str) {
    match result {
        Err(e @ MeasureError::MalformedFirmware { .. }) => {
            assert!(e.to_string().contains(needle), "{e} does not say {needle:?}")
        }
        other => panic!("expected a malformed-firmware error about {needle:?}, got {other:?}"),
    }
}

#[test]
fn the_synthetic_firmware_is_valid() {
    let fw = firmware(&valid_entries(), &valid_sections());
    let without = digest(&fw, None).unwrap();
    let with = digest(&fw, KERNEL).unwrap();
    assert_ne!(without, with);
    // The kernel, initrd and command line each reach the digest.
    let other_cmdline = Some(DirectBoot { append: Some("loud"), ..KERNEL.unwrap() });
    assert_ne!(digest(&fw, other_cmdline).unwrap(), with);
    let with_initrd = Some(DirectBoot { initrd: Some(b"i"), ..KERNEL.unwrap() });
    assert_ne!(digest(&fw, with_initrd).unwrap(), with);
    // A firmware without metadata measures its pages and the VMSAs only.
    let bare = firmware(&valid_entries()[..1], &[]);
    assert!(digest(&bare, None).is_ok());
    assert_eq!(
        digest(&bare, KERNEL).unwrap_err(),
        MeasureError::KernelHashesUnsupported { mode: "SNP" }
    );
}

#[test]
fn image_size() {
    let fw = firmware(&valid_entries(), &valid_sections());
    for bad in [&fw[..0], &fw[1..], &fw[..100]] {
        let err = digest(bad, None).unwrap_err();
        assert!(matches!(err, MeasureError::FirmwareSize { image: "OVMF", .. }), "{err}");
    }
    assert!(matches!(snp::ovmf_hash(&fw[1..]), Err(MeasureError::FirmwareSize { .. })));
    assert!(matches!(
        snp::sev_launch_digest(&fw[1..], None),
        Err(MeasureError::FirmwareSize { .. })
    ));
}

#[test]
fn no_footer_table() {
    let mut fw = firmware(&valid_entries(), &valid_sections());
    let at = fw.len() - 32 - 16;
    fw[at] ^= 1;
    assert_eq!(digest(&fw, None).unwrap_err(), MeasureError::NoFooterTable { image: "OVMF" });
    assert!(digest(&[0; 4096], None).unwrap_err().to_string().contains("no GUIDed footer table"));
}

#[test]
fn truncated_footer_table() {
    let t = table(&valid_entries());
    // The footer claims a table longer than the image before it.
    malformed(digest(&firmware_with_table(&t, 9000, &[]), None), "starts before the image");
    // The footer's own length is below its header.
    malformed(digest(&firmware_with_table(&t, 17, &[]), None), "below its 18-byte header");
    // The footer covers fewer bytes than the entries take: the first entry is cut.
    malformed(digest(&firmware_with_table(&t, t.len() + 18 - 5, &[]), None), "not a whole entry");
    // Five bytes too many: stray bytes before the first entry.
    let mut padded = vec![0; 5];
    padded.extend(&t);
    malformed(
        digest(&firmware_with_table(&padded, padded.len() + 18, &[]), None),
        "5 bytes at the start of the footer table are not a whole entry",
    );
}

#[test]
fn bad_entry_lengths() {
    // An entry whose length is below its own header (2 instead of 18 + 4).
    let mut t = table(&valid_entries());
    let last_len = t.len() - 18;
    t[last_len..last_len + 2].copy_from_slice(&2u16.to_le_bytes());
    malformed(
        digest(&firmware_with_table(&t, t.len() + 18, &[]), None),
        "less than its 18-byte header",
    );
    // An entry longer than the table.
    t[last_len..last_len + 2].copy_from_slice(&400u16.to_le_bytes());
    malformed(
        digest(&firmware_with_table(&t, t.len() + 18, &[]), None),
        "runs past the table's start",
    );
    // An entry too short for its value.
    let mut entries = valid_entries();
    entries[0].1.truncate(2);
    malformed(digest(&firmware(&entries, &valid_sections()), None), "fewer than 4");
    // The same GUID twice.
    let mut entries = valid_entries();
    entries.push((RESET_BLOCK, vec![0; 4]));
    malformed(digest(&firmware(&entries, &valid_sections()), None), "appears twice");
}

#[test]
fn missing_entries() {
    let entries: Vec<_> = valid_entries().into_iter().filter(|(g, _)| *g != RESET_BLOCK).collect();
    let err = digest(&firmware(&entries, &valid_sections()), None).unwrap_err();
    assert!(
        matches!(err, MeasureError::MissingFirmwareEntry { entry: "SEV-ES reset block", .. }),
        "{err}"
    );
    assert!(err.to_string().contains(RESET_BLOCK), "{err}");
    // Without the hash-table entry a kernel has nowhere to go.
    let entries: Vec<_> = valid_entries().into_iter().filter(|(g, _)| *g != HASH_TABLE).collect();
    let fw = firmware(&entries, &valid_sections());
    assert!(digest(&fw, None).is_ok());
    let err = digest(&fw, KERNEL).unwrap_err();
    assert!(
        matches!(err, MeasureError::MissingFirmwareEntry { entry: "SEV hash table", .. }),
        "{err}"
    );
    let err = snp::sev_launch_digest(&fw, KERNEL.as_ref()).unwrap_err();
    assert_eq!(err, MeasureError::KernelHashesUnsupported { mode: "SEV" });
}

#[test]
fn bad_metadata() {
    let entries = valid_entries();
    let t = table(&entries);
    let with = |metadata: &[u8]| firmware_with_table(&t, t.len() + 18, metadata);
    let good = asev(&valid_sections());
    let mut m = good.clone();
    m[0] = b'B';
    malformed(digest(&with(&m), None), "not \"ASEV\"");
    let mut m = good.clone();
    m[8] = 2;
    malformed(digest(&with(&m), None), "version 2");
    let mut m = good.clone();
    m[12] = 200;
    malformed(digest(&with(&m), None), "200 sections do not fit");
    let mut m = good.clone();
    m[4..8].copy_from_slice(&0x2000u32.to_le_bytes());
    malformed(digest(&with(&m), None), "does not fit the image");
    let mut m = good.clone();
    m[4..8].copy_from_slice(&3u32.to_le_bytes());
    malformed(digest(&with(&m), None), "does not fit the image");
    for (sections, needle) in [
        (vec![(0x80_0000, 0x1000, 7)], "unknown type 0x7"),
        (vec![(0x80_0100, 0x1000, 1)], "not page-aligned"),
        (vec![(0x80_0000, 0x1800, 1)], "not page-aligned"),
        (vec![(0xffff_f000, 0x2000, 1)], "runs past 4 GiB"),
        (vec![(0x80_0000, 0x3000, 1), (0x80_2000, 0x1000, 2)], "overlap"),
        (vec![(0x80_2000, 0x1000, 3), (0x80_2000, 0, 1), (0x80_0000, 0x3000, 4)], "overlap"),
    ] {
        malformed(digest(&firmware(&entries, &sections), None), needle);
    }
    // The metadata pointer outside the image.
    let mut entries = valid_entries();
    entries[1].1 = 0x9000u32.to_le_bytes().to_vec();
    malformed(digest(&firmware(&entries, &valid_sections()), None), "outside the image");
    entries[1].1 = 0u32.to_le_bytes().to_vec();
    malformed(digest(&firmware(&entries, &valid_sections()), None), "outside the image");
}

#[test]
fn the_hashes_table_must_fit_its_page() {
    let mut entries = valid_entries();
    entries[2].1 = [0x80_5f80u32.to_le_bytes(), 0x80u32.to_le_bytes()].concat();
    let fw = firmware(&entries, &valid_sections());
    assert!(digest(&fw, None).is_ok(), "only a kernel needs the table");
    malformed(digest(&fw, KERNEL), "cross a page boundary");
}

#[test]
fn vcpu_limits() {
    let fw = firmware(&valid_entries(), &valid_sections());
    let mut inputs = LaunchInputs::new(&fw);
    inputs.vcpu_type = Some(VcpuType::Epyc);
    inputs.vcpus = snp::MAX_VCPUS + 1;
    assert!(matches!(snp::launch_digest(&inputs), Err(MeasureError::VcpuCount { .. })));
    inputs.vcpus = snp::MAX_VCPUS;
    assert!(snp::launch_digest(&inputs).is_ok());
    let err = snp::sev_es_launch_digest(&fw, None, 0, Some(VcpuType::Epyc), snp::Vmm::Qemu);
    assert!(matches!(err, Err(MeasureError::VcpuCount { vcpus: 0 })));
}

#[test]
fn svsm_placement() {
    let ovmf = firmware(&valid_entries(), &[]);
    let svsm = firmware(&[(SVSM_INFO, 0x10u32.to_le_bytes().to_vec())], &[(0x80_0000, 0x1000, 4)]);
    let mut inputs = LaunchInputs::new(&ovmf);
    inputs.vcpu_type = Some(VcpuType::Epyc);
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 0x1000 });
    assert!(snp::launch_digest(&inputs).is_ok());
    // The variable store cannot reach below address 0.
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 1 << 40 });
    assert!(matches!(snp::launch_digest(&inputs), Err(MeasureError::OvmfVarsSize { .. })));
    // An SVSM without its information entry has no entry point.
    let mut broken = svsm.clone();
    let at = broken.len() - 32 - 18 - 16;
    broken[at] ^= 1;
    inputs.svsm = Some(Svsm { image: &broken, ovmf_vars_size: 0x1000 });
    let err = snp::launch_digest(&inputs).unwrap_err();
    assert!(matches!(err, MeasureError::MissingFirmwareEntry { image: "SVSM", .. }), "{err}");
}

// --- TDX event logs ---

const SHA256: u16 = 0x000B;
const SHA384: u16 = 0x000C;

/// The SHA-1-format Spec ID event declaring `algorithms` (id, size).
fn spec_id(algorithms: &[(u16, u16)]) -> Vec<u8> {
    let mut data = b"Spec ID Event03\0".to_vec();
    data.extend([0, 0, 0, 0, 0, 2, 0, 2]);
    data.extend((algorithms.len() as u32).to_le_bytes());
    for (id, size) in algorithms {
        data.extend(id.to_le_bytes());
        data.extend(size.to_le_bytes());
    }
    data.push(0);
    let mut out = Vec::new();
    out.extend(0u32.to_le_bytes());
    out.extend(3u32.to_le_bytes());
    out.extend([0; 20]);
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

fn event2(mr: u32, event_type: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(mr.to_le_bytes());
    out.extend(event_type.to_le_bytes());
    out.extend((digests.len() as u32).to_le_bytes());
    for (id, digest) in digests {
        out.extend(id.to_le_bytes());
        out.extend(digest);
    }
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

fn sha384(data: &[u8]) -> Vec<u8> {
    Sha384::digest(data).to_vec()
}

fn malformed_log(log: &[u8], needle: &str) {
    match tdx::replay(log) {
        Err(e @ MeasureError::MalformedEventLog { .. }) => {
            assert!(e.to_string().contains(needle), "{e} does not say {needle:?}")
        }
        other => panic!("expected a malformed-log error about {needle:?}, got {other:?}"),
    }
}

#[test]
fn replay_by_hand() {
    // SHA-256, SHA-384 and an algorithm this crate does not know (7 bytes), all declared.
    let mut log = spec_id(&[(SHA256, 32), (0x0099, 7), (SHA384, 48)]);
    let both = |d: &[u8]| vec![(SHA256, vec![1; 32]), (0x0099, vec![9; 7]), (SHA384, sha384(d))];
    log.extend(event2(1, 0x8000_000B, &both(b"a"), b"table"));
    log.extend(event2(2, 4, &both(b"b"), &[0; 4]));
    log.extend(event2(1, 3, &both(b"ignored"), b"no action"));
    log.extend(event2(0, 1, &both(b"mrtd"), b""));
    log.extend(event2(4, 0xd, &both(b"c"), b"runtime"));
    let log_len = log.len();
    let extend = |old: [u8; 48], d: &[u8]| -> [u8; 48] {
        Sha384::new().chain_update(old).chain_update(sha384(d)).finalize().into()
    };
    let zero = [0u8; 48];
    let expected = [extend(zero, b"a"), extend(zero, b"b"), zero, extend(zero, b"c")];
    for pad in [0x00u8, 0xFF] {
        let mut padded = log.clone();
        padded.resize(log_len + 1000, pad);
        let replay = tdx::replay(&padded).unwrap();
        assert_eq!(replay.rtmr, expected);
        assert_eq!(replay.log_len, log_len);
        assert_eq!(replay.events.len(), 5);
        let rtmrs: Vec<_> = replay.events.iter().map(|e| e.rtmr).collect();
        assert_eq!(rtmrs, [Some(0), Some(1), None, None, Some(3)]);
        assert_eq!(replay.events[1].data_len, 4);
        assert_eq!(tdx::event_type_name(replay.events[1].event_type), Some("EV_SEPARATOR"));
        assert_eq!(replay.algorithms.len(), 3);
    }
    assert_eq!(tdx::replay(&log).unwrap().rtmr, expected);
}

#[test]
fn digest_count_beyond_the_data() {
    // More digests announced than the log holds.
    let mut log = spec_id(&[(SHA384, 48)]);
    let mut event = event2(1, 1, &[(SHA384, sha384(b"x"))], b"");
    event[8..12].copy_from_slice(&5u32.to_le_bytes());
    log.extend(&event[..event.len() - 4]);
    malformed_log(&log, "ends inside event 1");
    // When more bytes follow, the next digest header is read from them (here the data size,
    // zero, as an algorithm identifier) and the parse stops there.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(&event);
    let err = tdx::replay(&log).unwrap_err();
    assert_eq!(err, MeasureError::UndeclaredAlgorithm { event: 1, offset: 65, algorithm: 0 });
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(event2(1, 1, &[], b""));
    malformed_log(&log, "carries no digest");
}

#[test]
fn lengths_beyond_the_data() {
    let mut log = spec_id(&[(SHA384, 48)]);
    let mut event = event2(1, 1, &[(SHA384, sha384(b"x"))], b"data");
    let len_at = event.len() - 8;
    event[len_at..len_at + 4].copy_from_slice(&1000u32.to_le_bytes());
    log.extend(&event);
    malformed_log(&log, "ends inside event 1");
    // A log cut in the middle of an event.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(&event2(1, 1, &[(SHA384, sha384(b"x"))], b"data")[..30]);
    malformed_log(&log, "ends inside event 1");
    // Padding, then data again: the "padding" is read as an event, which does not parse.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend([0xFF; 64]);
    log.push(1);
    assert!(tdx::replay(&log).is_err());
    // The Spec ID event's own length beyond the log.
    let mut log = spec_id(&[(SHA384, 48)]);
    log[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
    malformed_log(&log, "Spec ID event");
    // An algorithm count beyond the Spec ID event's data.
    let mut log = spec_id(&[(SHA384, 48)]);
    log[32 + 24..32 + 28].copy_from_slice(&1_000_000u32.to_le_bytes());
    malformed_log(&log, "algorithm list");
}

#[test]
fn algorithms() {
    // An event with a digest of an algorithm the Spec ID event does not declare.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(event2(1, 1, &[(SHA256, vec![0; 32]), (SHA384, sha384(b"x"))], b""));
    let err = tdx::replay(&log).unwrap_err();
    assert_eq!(err, MeasureError::UndeclaredAlgorithm { event: 1, offset: 65, algorithm: SHA256 });
    // A log without SHA-384.
    let mut log = spec_id(&[(SHA256, 32)]);
    log.extend(event2(1, 1, &[(SHA256, vec![0; 32])], b""));
    let err = tdx::replay(&log).unwrap_err();
    assert_eq!(err, MeasureError::NoSha384 { algorithms: vec![SHA256] });
    assert!(err.to_string().contains("[000b]"), "{err}");
    // SHA-384 with the wrong size.
    malformed_log(&spec_id(&[(SHA384, 32)]), "not 48");
    // The same algorithm twice in the Spec ID event.
    malformed_log(&spec_id(&[(SHA384, 48), (SHA384, 48)]), "twice");
    // An event that carries SHA-256 only, where both are declared.
    let mut log = spec_id(&[(SHA256, 32), (SHA384, 48)]);
    log.extend(event2(1, 1, &[(SHA256, vec![0; 32])], b""));
    assert_eq!(
        tdx::replay(&log).unwrap_err(),
        MeasureError::MissingSha384 { event: 1, offset: 69 }
    );
    // Two SHA-384 digests in one event.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(event2(1, 1, &[(SHA384, sha384(b"x")), (SHA384, sha384(b"y"))], b""));
    malformed_log(&log, "two SHA-384 digests");
}

#[test]
fn register_indices() {
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(event2(5, 1, &[(SHA384, sha384(b"x"))], b""));
    assert_eq!(
        tdx::replay(&log).unwrap_err(),
        MeasureError::MrIndex { event: 1, offset: 65, mr_index: 5 }
    );
    // EV_NO_ACTION on any index is logged only.
    let mut log = spec_id(&[(SHA384, 48)]);
    log.extend(event2(9, 3, &[(SHA384, sha384(b"x"))], b""));
    assert_eq!(tdx::replay(&log).unwrap().rtmr, [[0; 48]; 4]);
}

#[test]
fn not_an_event_log() {
    for (log, needle) in [
        (Vec::new(), "shorter than one event header"),
        (vec![0xFF; 100], "not EV_NO_ACTION"),
        (
            {
                let mut l = spec_id(&[(SHA384, 48)]);
                l[32] = b'X';
                l
            },
            "Spec ID Event03",
        ),
        (
            {
                let mut l = spec_id(&[(SHA384, 48)]);
                l[4] = 1;
                l
            },
            "type 0x1",
        ),
    ] {
        let err = tdx::replay(&log).unwrap_err();
        assert!(matches!(err, MeasureError::NoSpecIdEvent { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err} does not say {needle:?}");
    }
    // The Spec ID event alone is an empty log.
    let replay = tdx::replay(&spec_id(&[(SHA384, 48)])).unwrap();
    assert_eq!((replay.events.len(), replay.rtmr), (0, [[0; 48]; 4]));
}

// --- SGX ---

fn record(tag: &[u8; 8], fields: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    out.extend(fields);
    out.resize(64, 0);
    out
}

fn ecreate(size: u64) -> Vec<u8> {
    record(b"ECREATE\0", &[1u32.to_le_bytes().as_slice(), &size.to_le_bytes()].concat())
}

fn eadd(offset: u64) -> Vec<u8> {
    record(b"EADD\0\0\0\0", &[offset.to_le_bytes(), 0x201u64.to_le_bytes()].concat())
}

fn chunk(tag: &[u8; 8], offset: u64, fill: u8) -> Vec<u8> {
    let mut out = record(tag, &offset.to_le_bytes());
    out.extend([fill; 256]);
    out
}

fn valid_sgxs() -> Vec<u8> {
    [ecreate(0x10000), eadd(0x1000), chunk(b"EEXTEND\0", 0x1000, 7), chunk(b"EEXTEND\0", 0x1100, 8)]
        .concat()
}

fn malformed_sgxs(sgxs: &[u8], needle: &str) {
    match sgx::mrenclave_from_sgxs(sgxs) {
        Err(e @ MeasureError::MalformedSgxs { .. }) => {
            assert!(e.to_string().contains(needle), "{e} does not say {needle:?}")
        }
        other => panic!("expected a malformed-SGXS error about {needle:?}, got {other:?}"),
    }
}

#[test]
fn sgxs_measures_the_measured_records() {
    let sgxs = valid_sgxs();
    let mrenclave = sgx::mrenclave_from_sgxs(&sgxs).unwrap();
    assert_eq!(mrenclave, <[u8; 32]>::from(Sha256::digest(&sgxs)));
    // Unmeasured data is loaded, not measured.
    let with_unmeasured = [sgxs.clone(), chunk(b"UNMEASRD", 0x1200, 9)].concat();
    assert_eq!(sgx::mrenclave_from_sgxs(&with_unmeasured).unwrap(), mrenclave);
    // Measured data is.
    let more = [sgxs, chunk(b"EEXTEND\0", 0x1200, 9)].concat();
    assert_ne!(sgx::mrenclave_from_sgxs(&more).unwrap(), mrenclave);
}

#[test]
fn sgxs_refusals() {
    let good = valid_sgxs();
    let err =
        sgx::mrenclave_from_sgxs(&[good.clone(), record(b"EREMOVE\0", &[])].concat()).unwrap_err();
    assert!(matches!(err, MeasureError::UnknownSgxsRecord { offset: 768, .. }), "{err}");
    assert!(err.to_string().contains("EREMOVE\\x00"), "{err}");
    let mut unsized_stream = good.clone();
    unsized_stream[..8].copy_from_slice(b"UNSIZED\0");
    assert_eq!(sgx::mrenclave_from_sgxs(&unsized_stream).unwrap_err(), MeasureError::SgxsUnsized);
    malformed_sgxs(&good[..good.len() - 1], "256 data bytes");
    malformed_sgxs(&[good.clone(), vec![0; 63]].concat(), "63 bytes left");
    malformed_sgxs(&good[64..], "does not start with ECREATE");
    malformed_sgxs(&[good.clone(), ecreate(0x10000)].concat(), "a second ECREATE");
    malformed_sgxs(&[], "empty");
    malformed_sgxs(&ecreate(0x3000), "not a power of two");
    malformed_sgxs(&[ecreate(0x10000), eadd(0x1001)].concat(), "not a page inside");
    malformed_sgxs(&[ecreate(0x10000), eadd(0x10000)].concat(), "not a page inside");
    malformed_sgxs(
        &[ecreate(0x10000), chunk(b"EEXTEND\0", 0x1080, 0)].concat(),
        "not 256-byte aligned",
    );
    let mut reserved = good;
    reserved[64 + 40] = 1;
    malformed_sgxs(&reserved, "reserved bytes");
}

fn valid_sigstruct() -> Vec<u8> {
    let mut s = vec![0u8; sgx::SIGSTRUCT_LEN];
    s[..16].copy_from_slice(&[6, 0, 0, 0, 0xE1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
    s[24..40].copy_from_slice(&[1, 1, 0, 0, 0x60, 0, 0, 0, 0x60, 0, 0, 0, 1, 0, 0, 0]);
    s[512..516].copy_from_slice(&3u32.to_le_bytes());
    s
}

#[test]
fn sigstruct_refusals() {
    let good = valid_sigstruct();
    assert!(Sigstruct::parse(&good).is_ok());
    assert_eq!(
        Sigstruct::parse(&good[1..]).unwrap_err(),
        MeasureError::SigstructSize { len: 1807 }
    );
    let long = [good.clone(), vec![0]].concat();
    assert_eq!(Sigstruct::parse(&long).unwrap_err(), MeasureError::SigstructSize { len: 1809 });
    assert_eq!(Sigstruct::parse(&[]).unwrap_err(), MeasureError::SigstructSize { len: 0 });
    for (at, value, name) in
        [(0, 7, "HEADER"), (27, 1, "HEADER2"), (16, 0x34, "VENDOR"), (512, 1, "EXPONENT")]
    {
        let mut bad = good.clone();
        bad[at] = value;
        let err = Sigstruct::parse(&bad).unwrap_err();
        assert!(matches!(err, MeasureError::SigstructField { name: n, .. } if n == name), "{err}");
    }
    let mut intel = good;
    intel[16..20].copy_from_slice(&0x8086u32.to_le_bytes());
    assert_eq!(Sigstruct::parse(&intel).unwrap().vendor, 0x8086);
}
