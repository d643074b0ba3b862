//! Intel TDX RTMR0–3 replayed from a CC event log (the ACPI CCEL table's log area), in the
//! crypto-agile format of the TCG PC Client Platform Firmware Profile.
//!
//! The log opens with one event in the old SHA-1 format (`TCG_PCClientPCREvent`: MR index,
//! type, a 20-byte digest, a `u32` data size, data) whose data is the `Spec ID Event03`
//! structure: it lists every digest algorithm the log carries with its digest size. Every later
//! event is a `TCG_PCR_EVENT2`: MR index, type, a `u32` digest count, that many (algorithm
//! `u16`, digest) pairs sized by the Spec ID event, a `u32` data size and the data.
//!
//! The CC MR index maps to TDX registers as 0 → MRTD (measured by the TDX module, never
//! extended by the log), 1 → RTMR0, 2 → RTMR1, 3 → RTMR2, 4 → RTMR3. Each register starts as
//! 48 zero bytes and every event but `EV_NO_ACTION` extends it:
//! `RTMR = SHA-384(RTMR ‖ event's SHA-384 digest)`.
//!
//! The log area is larger than the log and padded with `0xFF` (or zeros): the log ends where
//! the padding starts. The events are parsed by their own lengths only; their data is not
//! interpreted and the digests are not checked against it (firmware measures other bytes than
//! it logs for several event types).

use sha2::{Digest, Sha384};

use crate::MeasureError;
use crate::bytes::Cursor;

/// `TPM_ALG_SHA384`.
pub const ALG_SHA384: u16 = 0x000C;
/// `EV_NO_ACTION`: logged, never extended.
pub const EV_NO_ACTION: u32 = 0x3;
const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";
/// The SHA-1 header event's digest size.
const SHA1_SIZE: usize = 20;

/// One event of the log (the Spec ID header event excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The event's position: 1 for the first event after the Spec ID event.
    pub number: u32,
    /// Where the event starts in the log.
    pub offset: usize,
    /// The CC measurement-register index (0 = MRTD, 1–4 = RTMR0–3).
    pub mr_index: u32,
    /// The event type (`EV_*`); [`event_type_name`] names the known ones.
    pub event_type: u32,
    /// The SHA-384 digest the event carries.
    pub digest: [u8; 48],
    /// The size of the event's data.
    pub data_len: u32,
    /// The RTMR (0–3) the event extended, if any: none for `EV_NO_ACTION` and MR index 0.
    pub rtmr: Option<usize>,
}

/// A digest algorithm the log declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithm {
    /// The TCG algorithm identifier (`TPM_ALG_*`).
    pub id: u16,
    /// The digest size in bytes.
    pub digest_size: u16,
}

/// The registers the log replays to, and what it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replay {
    /// RTMR0 to RTMR3.
    pub rtmr: [[u8; 48]; 4],
    /// Every event after the Spec ID event, in log order.
    pub events: Vec<Event>,
    /// The algorithms the Spec ID event declares.
    pub algorithms: Vec<Algorithm>,
    /// The length of the log proper, where the padding (if any) begins.
    pub log_len: usize,
}

impl Replay {
    /// Compares the replayed registers with expected values (`None` = not checked), RTMR0 first;
    /// the first difference is the error.
    pub fn check(&self, expected: &[Option<[u8; 48]>; 4]) -> Result<(), MeasureError> {
        for (rtmr, (calculated, expected)) in self.rtmr.iter().zip(expected).enumerate() {
            if let Some(expected) = expected
                && calculated != expected
            {
                return Err(MeasureError::RtmrMismatch {
                    rtmr,
                    calculated: hex::encode(calculated),
                    expected: hex::encode(expected),
                });
            }
        }
        Ok(())
    }
}

/// Replays a CC event log (the CCEL log area, padding included or not).
pub fn replay(log: &[u8]) -> Result<Replay, MeasureError> {
    let mut c = Cursor::new(log);
    let algorithms = spec_id_event(&mut c)?;
    let Some(sha384_size) =
        algorithms.iter().find(|a| a.id == ALG_SHA384).map(|a| usize::from(a.digest_size))
    else {
        return Err(MeasureError::NoSha384 {
            algorithms: algorithms.iter().map(|a| a.id).collect(),
        });
    };
    if sha384_size != 48 {
        return Err(MeasureError::MalformedEventLog {
            offset: 0,
            reason: format!("the Spec ID event gives SHA-384 digests {sha384_size} bytes, not 48"),
        });
    }

    let mut rtmr = [[0u8; 48]; 4];
    let mut events = Vec::new();
    let mut number = 0u32;
    loop {
        let offset = c.pos();
        if is_padding(c.rest()) {
            break;
        }
        number += 1;
        let event = pcr_event2(&mut c, number, offset, &algorithms)?;
        if let Some(i) = event.rtmr {
            let mut h = Sha384::new();
            h.update(rtmr[i]);
            h.update(event.digest);
            rtmr[i] = h.finalize().into();
        }
        events.push(event);
    }
    Ok(Replay { rtmr, events, algorithms, log_len: c.pos() })
}

/// Whether the log ends here: nothing left, or padding to the end. A header that starts like
/// padding but is followed by other bytes is not padding: that is an error in the event parser.
fn is_padding(rest: &[u8]) -> bool {
    match rest.first() {
        None => true,
        Some(&fill @ (0x00 | 0xFF)) => rest.iter().all(|&b| b == fill),
        Some(_) => false,
    }
}

fn truncated(offset: usize, what: &str) -> MeasureError {
    MeasureError::MalformedEventLog { offset, reason: format!("the log ends inside {what}") }
}

/// Parses the SHA-1-format first event and returns the algorithms its Spec ID data declares.
fn spec_id_event(c: &mut Cursor<'_>) -> Result<Vec<Algorithm>, MeasureError> {
    let no_spec_id = |reason: &str| MeasureError::NoSpecIdEvent { reason: reason.to_owned() };
    let (Some(_mr_index), Some(event_type), Some(_digest), Some(size)) =
        (c.u32(), c.u32(), c.bytes(SHA1_SIZE), c.u32())
    else {
        return Err(no_spec_id("the log is shorter than one event header"));
    };
    if event_type != EV_NO_ACTION {
        return Err(no_spec_id(&format!(
            "the first event has type {event_type:#x}, not EV_NO_ACTION"
        )));
    }
    let data_at = c.pos();
    let data = c.bytes(size as usize).ok_or_else(|| truncated(data_at, "the Spec ID event"))?;
    let mut d = Cursor::new(data);
    if d.bytes(16) != Some(SPEC_ID_SIGNATURE.as_slice()) {
        return Err(no_spec_id("the first event's data does not start with \"Spec ID Event03\""));
    }
    let short = || truncated(data_at, "the Spec ID event's algorithm list");
    // platformClass u32, specVersionMinor/Major, specErrata, uintnSize (one byte each).
    d.bytes(8).ok_or_else(short)?;
    let count = d.u32().ok_or_else(short)?;
    let mut algorithms: Vec<Algorithm> = Vec::new();
    for _ in 0..count {
        let (Some(id), Some(digest_size)) = (d.u16(), d.u16()) else { return Err(short()) };
        if algorithms.iter().any(|a| a.id == id) {
            return Err(MeasureError::MalformedEventLog {
                offset: data_at,
                reason: format!("the Spec ID event lists algorithm {id:#06x} twice"),
            });
        }
        algorithms.push(Algorithm { id, digest_size });
    }
    let vendor_len = d.u8().ok_or_else(short)?;
    d.bytes(usize::from(vendor_len)).ok_or_else(short)?;
    Ok(algorithms)
}

fn pcr_event2(
    c: &mut Cursor<'_>,
    number: u32,
    offset: usize,
    algorithms: &[Algorithm],
) -> Result<Event, MeasureError> {
    let what = format!("event {number}");
    let (Some(mr_index), Some(event_type), Some(count)) = (c.u32(), c.u32(), c.u32()) else {
        return Err(truncated(offset, &what));
    };
    let bad = |reason: String| MeasureError::MalformedEventLog { offset, reason };
    if count == 0 {
        return Err(bad(format!("{what} carries no digest")));
    }
    let mut sha384 = None;
    for _ in 0..count {
        let id = c.u16().ok_or_else(|| truncated(offset, &what))?;
        let Some(alg) = algorithms.iter().find(|a| a.id == id) else {
            return Err(MeasureError::UndeclaredAlgorithm { event: number, offset, algorithm: id });
        };
        let digest =
            c.bytes(usize::from(alg.digest_size)).ok_or_else(|| truncated(offset, &what))?;
        if id == ALG_SHA384 {
            if sha384.is_some() {
                return Err(bad(format!("{what} carries two SHA-384 digests")));
            }
            sha384 = <[u8; 48]>::try_from(digest).ok();
        }
    }
    let data_len = c.u32().ok_or_else(|| truncated(offset, &what))?;
    c.bytes(data_len as usize).ok_or_else(|| truncated(offset, &what))?;
    let digest = sha384.ok_or(MeasureError::MissingSha384 { event: number, offset })?;
    let rtmr = match mr_index {
        _ if event_type == EV_NO_ACTION => None,
        0 => None,
        1..=4 => Some(mr_index as usize - 1),
        _ => return Err(MeasureError::MrIndex { event: number, offset, mr_index }),
    };
    Ok(Event { number, offset, mr_index, event_type, digest, data_len, rtmr })
}

/// The TCG name of an event type (PC Client Platform Firmware Profile, section 10.4.1).
pub fn event_type_name(event_type: u32) -> Option<&'static str> {
    Some(match event_type {
        0x0 => "EV_PREBOOT_CERT",
        0x1 => "EV_POST_CODE",
        0x2 => "EV_UNUSED",
        0x3 => "EV_NO_ACTION",
        0x4 => "EV_SEPARATOR",
        0x5 => "EV_ACTION",
        0x6 => "EV_EVENT_TAG",
        0x7 => "EV_S_CRTM_CONTENTS",
        0x8 => "EV_S_CRTM_VERSION",
        0x9 => "EV_CPU_MICROCODE",
        0xA => "EV_PLATFORM_CONFIG_FLAGS",
        0xB => "EV_TABLE_OF_DEVICES",
        0xC => "EV_COMPACT_HASH",
        0xD => "EV_IPL",
        0xE => "EV_IPL_PARTITION_DATA",
        0xF => "EV_NONHOST_CODE",
        0x10 => "EV_NONHOST_CONFIG",
        0x11 => "EV_NONHOST_INFO",
        0x12 => "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0000 => "EV_EFI_EVENT_BASE",
        0x8000_0001 => "EV_EFI_VARIABLE_DRIVER_CONFIG",
        0x8000_0002 => "EV_EFI_VARIABLE_BOOT",
        0x8000_0003 => "EV_EFI_BOOT_SERVICES_APPLICATION",
        0x8000_0004 => "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005 => "EV_EFI_RUNTIME_SERVICES_DRIVER",
        0x8000_0006 => "EV_EFI_GPT_EVENT",
        0x8000_0007 => "EV_EFI_ACTION",
        0x8000_0008 => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
        0x8000_0009 => "EV_EFI_HANDOFF_TABLES",
        0x8000_000A => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
        0x8000_000B => "EV_EFI_HANDOFF_TABLES2",
        0x8000_000C => "EV_EFI_VARIABLE_BOOT2",
        0x8000_000D => "EV_EFI_GPT_EVENT2",
        0x8000_0010 => "EV_EFI_HCRTM_EVENT",
        0x8000_00E0 => "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1 => "EV_EFI_SPDM_FIRMWARE_BLOB",
        0x8000_00E2 => "EV_EFI_SPDM_FIRMWARE_CONFIG",
        _ => return None,
    })
}
