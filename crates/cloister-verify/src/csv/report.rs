//! The Hygon CSV legacy attestation report: its byte encodings, the `anonce` unmasking, and the
//! trustee JSON wrapper.
//!
//! Legacy report (2548 bytes, possibly zero-padded to a 4096-byte page):
//! `user_pubkey_digest [32] @0, vm_id [16] @32, vm_version [16] @48, report_data [64] @64,
//! mnonce [16] @128, measure [32] @144, policy u32 @176, sig_usage u32 @180, sig_algo u32 @184,
//! anonce u32 @188, signature r [72] @192, s [72] @264` (the 336-byte body), then the signer
//! section: `PEK certificate [2084] @336, chip serial number [64] @2420, reserved [32] @2484,
//! MAC [32] @2516`. Every body field before `anonce` reads XOR-masked with `anonce`'s
//! little-endian bytes repeated; the PEK SM2 signature covers the masked bytes [0, 180). The
//! firmware masks the PEK certificate and the serial number too, and the MAC is HMAC-SM3 keyed
//! with the unmasked `mnonce` over the masked PEK, serial number and reserved bytes. Some
//! attesters (csv-rs's `TeeInfoSigner::verify`, used by trustee) unmask the signer section in
//! place and zero the reserved bytes before sending: such a report reads with a plain PEK and
//! its MAC can no longer be checked.
//!
//! A 4116-byte wrapper `magic [16] @0, flags u32 @16, report [4096] @20` (csv-rs's
//! `AttestationReportWrapper`) says which layout the report has: zero magic, or magic
//! `ATTESTATION_EXT` with flags 0, is the legacy layout; `ATTESTATION_EXT` with flags 1 is the
//! extended layout (firmware API 1.4+): `user_pubkey_digest` to `sig_algo` as in the legacy
//! body but not masked, `build u32 @188, rtmr_version u16 @192, reserved [14], rtmr0..4 [32]
//! each @208, reserved [656] @368, signature r [72] @1024, s [72] @1096` (1168 bytes, signed
//! over [0, 1024)), then the same signer section (not masked) at 1168, 3380 bytes in all. The
//! extended layout comes from csv-rs's `TeeInfoV2`; no real extended report was available to
//! test it, only a synthetic one.

use serde_json::Value;

use super::CsvError;
use super::cert::{CA_CERT_LEN, CSV_CERT_LEN};
use super::sm::{Sm2Signature, hmac_sm3};

/// Size of a legacy report.
pub(crate) const LEGACY_LEN: usize = 2548;
/// Size of the page a report is padded to.
const PAGE_LEN: usize = 4096;
/// Size of the wrapper (magic, flags, page).
const WRAPPER_LEN: usize = 16 + 4 + PAGE_LEN;
/// The magic of an extension-aware wrapper.
const EXT_MAGIC: &[u8; 16] = b"ATTESTATION_EXT\0";
/// Offset of `anonce` in a legacy report; the bytes before it are masked.
const ANONCE_AT: usize = 188;
/// Size of one RTMR (SM3) of an extended report.
const RTMR_LEN: usize = 32;

/// Where the parts of a report are, per format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Bytes [0, signed_len) are covered by the report signature.
    signed_len: usize,
    /// Offset of the signature (r, s).
    sig_at: usize,
    /// Offset of the PEK certificate (the signer section).
    pek_at: usize,
}

impl Layout {
    /// The legacy report: 336-byte body, signature over [0, 180).
    pub(crate) const LEGACY: Layout = Layout { signed_len: 180, sig_at: 192, pek_at: 336 };
    /// The extended report: 1168-byte body, signature over [0, 1024).
    pub(crate) const EXTENDED: Layout = Layout { signed_len: 1024, sig_at: 1024, pek_at: 1168 };

    fn sn_at(self) -> usize {
        self.pek_at + CSV_CERT_LEN
    }
    fn reserved_at(self) -> usize {
        self.sn_at() + 64
    }
    fn mac_at(self) -> usize {
        self.reserved_at() + 32
    }
    /// The report's size.
    pub(crate) fn len(self) -> usize {
        self.mac_at() + 32
    }
}

/// How the evidence bytes were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// The 2548-byte report.
    Raw,
    /// The report zero-padded to 4096 bytes.
    Page,
    /// csv-rs's binary wrapper (magic, flags, page).
    Wrapper,
    /// trustee's JSON evidence `{attestation_report, cert_chain, serial_number, cc_eventlog}`.
    TrusteeJson,
}

impl Encoding {
    /// The name used in claims.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Page => "page",
            Encoding::Wrapper => "wrapper",
            Encoding::TrusteeJson => "trustee-json",
        }
    }
}

/// XORs `data` with the little-endian bytes of `anonce`, repeated (every masked field starts at
/// a multiple of 4).
pub(crate) fn xor_anonce(data: &[u8], anonce: u32) -> Vec<u8> {
    let key = anonce.to_le_bytes();
    data.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k).collect()
}

fn u32_le(bytes: &[u8], offset: usize) -> Result<u32, CsvError> {
    bytes
        .get(offset..offset + 4)
        .and_then(|raw| raw.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(|| CsvError::Malformed(format!("report is truncated at offset {offset}")))
}

fn take<const N: usize>(bytes: &[u8], offset: usize) -> Result<[u8; N], CsvError> {
    bytes
        .get(offset..offset + N)
        .and_then(|raw| raw.try_into().ok())
        .ok_or_else(|| CsvError::Malformed(format!("report is truncated at offset {offset}")))
}

/// The fields only an extended report has.
#[derive(Clone, Debug)]
pub(crate) struct Extended {
    /// The firmware build.
    pub(crate) build: u32,
    /// The RTMR version.
    pub(crate) rtmr_version: u16,
    /// RTMR 0 (equal to the launch measurement) to 4.
    pub(crate) rtmrs: [[u8; RTMR_LEN]; 5],
}

/// A parsed report: the bytes as signed, and every field unmasked.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// How the evidence was encoded.
    pub(crate) encoding: Encoding,
    /// Where the parts are.
    pub(crate) layout: Layout,
    /// The report bytes as received (2548 legacy, 3380 extended).
    pub(crate) bytes: Vec<u8>,
    /// The masking nonce (0 in extended reports, which are not masked).
    pub(crate) anonce: u32,
    /// Unmasked fields.
    pub(crate) user_pubkey_digest: [u8; 32],
    /// Unmasked.
    pub(crate) vm_id: [u8; 16],
    /// Unmasked.
    pub(crate) vm_version: [u8; 16],
    /// Unmasked.
    pub(crate) report_data: [u8; 64],
    /// Unmasked.
    pub(crate) mnonce: [u8; 16],
    /// Unmasked launch measurement.
    pub(crate) measure: [u8; 32],
    /// Unmasked guest policy.
    pub(crate) policy: u32,
    /// Unmasked signature usage.
    pub(crate) sig_usage: u32,
    /// Unmasked signature algorithm.
    pub(crate) sig_algo: u32,
    /// Extended-report fields.
    pub(crate) extended: Option<Extended>,
    /// The report signature (not masked).
    pub(crate) signature: Option<Sm2Signature>,
    /// The PEK certificate, unmasked.
    pub(crate) pek: Vec<u8>,
    /// The chip serial number field, unmasked.
    pub(crate) serial: [u8; 64],
    /// Whether the signer section arrived as the firmware wrote it (masked in legacy reports).
    pub(crate) signer_masked: bool,
    /// Certificates that came inside the evidence (trustee JSON `cert_chain.hsk_cek`).
    pub(crate) embedded_certificates: Vec<Vec<u8>>,
    /// Whether the trustee JSON carried an event log (not replayed by this driver).
    pub(crate) eventlog_present: bool,
}

impl Report {
    /// The bytes the report signature covers (masked, as received).
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..self.layout.signed_len).unwrap_or_default()
    }

    /// The chip serial number as text (trailing NULs removed), if it is printable ASCII.
    pub(crate) fn chip_id(&self) -> Result<String, CsvError> {
        let end = self.serial.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let trimmed = self.serial.get(..end).unwrap_or_default();
        if trimmed.is_empty() || !trimmed.iter().all(|b| b.is_ascii_graphic()) {
            return Err(CsvError::Malformed(format!(
                "chip serial number is not printable ASCII (unmasked bytes {})",
                hex::encode(trimmed)
            )));
        }
        Ok(String::from_utf8_lossy(trimmed).into_owned())
    }

    /// Checks the MAC of the signer section; returns whether it was checked.
    ///
    /// `false`: an attester already restored the section (csv-rs unmasks the PEK and serial
    /// and zeroes the reserved bytes), so the MAC cannot be recomputed. The MAC is keyed with
    /// `mnonce`, which the report reveals, so it detects corruption, not forgery; the PEK is
    /// authenticated by the CEK signature.
    pub(crate) fn check_mac(&self) -> Result<bool, CsvError> {
        let l = self.layout;
        let part = |range: std::ops::Range<usize>| {
            self.bytes.get(range).ok_or_else(|| CsvError::Malformed("report is truncated".into()))
        };
        let reserved = part(l.reserved_at()..l.mac_at())?;
        let expected = hmac_sm3(
            &self.mnonce,
            &[part(l.pek_at..l.sn_at())?, part(l.sn_at()..l.reserved_at())?, reserved],
        );
        let mac = part(l.mac_at()..l.len())?;
        if bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], mac)) {
            Ok(true)
        } else if !self.signer_masked || (self.anonce == 0 && reserved.iter().all(|&b| b == 0)) {
            // Restored in place (in an extended report, or with anonce 0, the only trace of
            // the restoring is the zeroed reserved bytes).
            Ok(false)
        } else {
            Err(CsvError::BadMac)
        }
    }
}

/// Parses evidence: the raw legacy report, the legacy report padded to a page, the binary
/// wrapper (legacy or extended) or the trustee JSON evidence.
pub(crate) fn parse(evidence: &[u8]) -> Result<Report, CsvError> {
    if evidence.first() == Some(&b'{') {
        return parse_trustee_json(evidence);
    }
    match evidence.len() {
        LEGACY_LEN => parse_report(evidence, Layout::LEGACY, Encoding::Raw),
        PAGE_LEN => parse_page(evidence, Layout::LEGACY, Encoding::Page),
        WRAPPER_LEN => {
            let magic = evidence.get(..16).unwrap_or_default();
            let flags = u32_le(evidence, 16)?;
            parse_wrapped(magic, flags, evidence.get(20..).unwrap_or_default(), Encoding::Wrapper)
        }
        other => Err(CsvError::Malformed(format!(
            "evidence is {other} bytes; expected a legacy report ({LEGACY_LEN} bytes, or \
             {PAGE_LEN} zero-padded), the {WRAPPER_LEN}-byte wrapper, or trustee JSON evidence"
        ))),
    }
}

fn parse_wrapped(
    magic: &[u8],
    flags: u32,
    page: &[u8],
    encoding: Encoding,
) -> Result<Report, CsvError> {
    let zero_magic = magic.iter().all(|&b| b == 0);
    if zero_magic || (magic == EXT_MAGIC && flags == 0) {
        parse_page(page, Layout::LEGACY, encoding)
    } else if magic == EXT_MAGIC && flags == 1 {
        parse_page(page, Layout::EXTENDED, encoding)
    } else {
        Err(CsvError::Malformed(format!(
            "unknown report wrapper (magic {}, flags {flags})",
            hex::encode(magic)
        )))
    }
}

fn parse_page(page: &[u8], layout: Layout, encoding: Encoding) -> Result<Report, CsvError> {
    if page.len() != PAGE_LEN {
        return Err(CsvError::Malformed(format!(
            "report page is {} bytes, expected {PAGE_LEN}",
            page.len()
        )));
    }
    let (report, padding) = page.split_at(layout.len());
    if padding.iter().any(|&b| b != 0) {
        return Err(CsvError::UnsupportedFormat(format!(
            "report page with data after the {}-byte report (an extended report without its \
             wrapper?)",
            layout.len()
        )));
    }
    parse_report(report, layout, encoding)
}

/// Parses and unmasks a report of `layout`.
pub(crate) fn parse_report(
    bytes: &[u8],
    layout: Layout,
    encoding: Encoding,
) -> Result<Report, CsvError> {
    if bytes.len() != layout.len() {
        return Err(CsvError::Malformed(format!(
            "report is {} bytes, expected {}",
            bytes.len(),
            layout.len()
        )));
    }
    let legacy = layout == Layout::LEGACY;
    let anonce = if legacy { u32_le(bytes, ANONCE_AT)? } else { 0 };
    let body = xor_anonce(bytes.get(..ANONCE_AT).unwrap_or_default(), anonce);
    let sig_usage = u32_le(&body, 180)?;
    let sig_algo = u32_le(&body, 184)?;
    if sig_usage != super::cert::usage::PEK || sig_algo != super::cert::ALGO_SM2_SIGN {
        return Err(CsvError::Malformed(format!(
            "report sig_usage/sig_algo unmask to {sig_usage:#x}/{sig_algo}, expected 0x1002 (PEK) \
             / 4 (SM2): wrong anonce or corrupt report"
        )));
    }
    let pek_raw = bytes.get(layout.pek_at..layout.sn_at()).unwrap_or_default();
    let pek_version = u32_le(pek_raw, 0)?;
    let signer_masked = if matches!(pek_version ^ anonce, 1 | 2) {
        true
    } else if matches!(pek_version, 1 | 2) {
        false
    } else {
        return Err(CsvError::Malformed(
            "the PEK certificate in the report is neither masked with anonce nor plain".into(),
        ));
    };
    let unmask = |raw: &[u8]| if signer_masked { xor_anonce(raw, anonce) } else { raw.to_vec() };
    let serial = unmask(bytes.get(layout.sn_at()..layout.reserved_at()).unwrap_or_default());
    let extended = if legacy {
        None
    } else {
        let mut rtmrs = [[0u8; RTMR_LEN]; 5];
        for (index, rtmr) in rtmrs.iter_mut().enumerate() {
            *rtmr = take(bytes, 208 + index * RTMR_LEN)?;
        }
        let rtmr_version = take::<2>(bytes, 192)?;
        Some(Extended {
            build: u32_le(bytes, 188)?,
            rtmr_version: u16::from_le_bytes(rtmr_version),
            rtmrs,
        })
    };
    Ok(Report {
        encoding,
        layout,
        bytes: bytes.to_vec(),
        anonce,
        user_pubkey_digest: take(&body, 0)?,
        vm_id: take(&body, 32)?,
        vm_version: take(&body, 48)?,
        report_data: take(&body, 64)?,
        mnonce: take(&body, 128)?,
        measure: take(&body, 144)?,
        policy: u32_le(&body, 176)?,
        sig_usage,
        sig_algo,
        extended,
        signature: bytes.get(layout.sig_at..layout.pek_at).and_then(Sm2Signature::from_le_fields),
        pek: unmask(pek_raw),
        serial: take(&serial, 0)?,
        signer_masked,
        embedded_certificates: Vec::new(),
        eventlog_present: false,
    })
}

/// trustee's JSON evidence (`deps/verifier/src/csv`): the report wrapper and the certificates
/// as serde structures with byte arrays as JSON arrays of numbers.
fn parse_trustee_json(evidence: &[u8]) -> Result<Report, CsvError> {
    let json_err = |what: &str| CsvError::Malformed(format!("trustee JSON evidence: {what}"));
    let value: Value =
        serde_json::from_slice(evidence).map_err(|e| json_err(&format!("not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| json_err("not an object"))?;
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "attestation_report" | "cert_chain" | "serial_number" | "cc_eventlog"
        ) {
            return Err(json_err(&format!("unknown field {key:?}")));
        }
    }
    let wrapper =
        object.get("attestation_report").ok_or_else(|| json_err("no attestation_report"))?;
    let magic = bytes_field(wrapper, &["magic"], 16).map_err(|e| json_err(&e))?;
    let flags = int_field(wrapper, &["flags"], u64::from(u32::MAX)).map_err(|e| json_err(&e))?;
    let page = bytes_field(wrapper, &["data"], PAGE_LEN).map_err(|e| json_err(&e))?;
    let flags = u32::try_from(flags).map_err(|_| json_err("flags out of range"))?;
    let mut report = parse_wrapped(&magic, flags, &page, Encoding::TrusteeJson)?;

    // The serial number beside the report must be the one inside it.
    let serial = object
        .get("serial_number")
        .map(|v| bytes_any(v).map_err(|e| json_err(&format!("serial_number: {e}"))))
        .transpose()?;
    if let Some(serial) = serial {
        let inside = report.serial.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let outside = serial.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if serial.get(..outside) != report.serial.get(..inside) {
            return Err(json_err("serial_number differs from the chip serial inside the report"));
        }
    }
    let chain = object.get("cert_chain").ok_or_else(|| json_err("no cert_chain"))?;
    let chain = chain.as_object().ok_or_else(|| json_err("cert_chain is not an object"))?;
    for key in chain.keys() {
        if !matches!(key.as_str(), "pek" | "hsk_cek") {
            return Err(json_err(&format!("unknown cert_chain field {key:?}")));
        }
    }
    // The PEK beside the report must be the one inside it (the report's is the one used).
    if let Some(pek) = chain.get("pek") {
        let encoded = encode(pek, CSV_CERT_SPEC, CSV_CERT_LEN)
            .map_err(|e| json_err(&format!("cert_chain.pek: {e}")))?;
        if encoded != report.pek {
            return Err(json_err(
                "cert_chain.pek differs from the PEK certificate inside the report",
            ));
        }
    }
    if let Some(hsk_cek) = chain.get("hsk_cek").filter(|v| !v.is_null()) {
        let hsk = hsk_cek.get("hsk").ok_or_else(|| json_err("cert_chain.hsk_cek has no hsk"))?;
        let cek = hsk_cek.get("cek").ok_or_else(|| json_err("cert_chain.hsk_cek has no cek"))?;
        report.embedded_certificates.push(
            encode(hsk, CA_CERT_SPEC, CA_CERT_LEN)
                .map_err(|e| json_err(&format!("cert_chain.hsk_cek.hsk: {e}")))?,
        );
        report.embedded_certificates.push(
            encode(cek, CSV_CERT_SPEC, CSV_CERT_LEN)
                .map_err(|e| json_err(&format!("cert_chain.hsk_cek.cek: {e}")))?,
        );
    }
    report.eventlog_present = object.get("cc_eventlog").is_some_and(|v| !v.is_null());
    Ok(report)
}

/// A field of a binary structure serialised by serde: an integer of some width or a byte array.
#[derive(Clone, Copy)]
enum Field {
    U8,
    U16,
    U32,
    Bytes(usize),
}

/// csv-rs's `csv::Certificate` as serde writes it, in byte order.
const CSV_CERT_SPEC: &[(&str, Field)] = &[
    ("body.ver", Field::U32),
    ("body.data.firmware.major", Field::U8),
    ("body.data.firmware.minor", Field::U8),
    ("body.data.reserved1", Field::U16),
    ("body.data.pubkey.usage", Field::U32),
    ("body.data.pubkey.algo", Field::U32),
    ("body.data.pubkey.key.g", Field::U32),
    ("body.data.pubkey.key.x", Field::Bytes(72)),
    ("body.data.pubkey.key.y", Field::Bytes(72)),
    ("body.data.uid_size", Field::U16),
    ("body.data.user_id", Field::Bytes(254)),
    ("body.data.sid", Field::Bytes(16)),
    ("body.data.reserved2", Field::Bytes(608)),
    ("sigs.0.usage", Field::U32),
    ("sigs.0.algo", Field::U32),
    ("sigs.0.signature.r", Field::Bytes(72)),
    ("sigs.0.signature.s", Field::Bytes(72)),
    ("sigs.0._reserved", Field::Bytes(368)),
    ("sigs.1.usage", Field::U32),
    ("sigs.1.algo", Field::U32),
    ("sigs.1.signature.r", Field::Bytes(72)),
    ("sigs.1.signature.s", Field::Bytes(72)),
    ("sigs.1._reserved", Field::Bytes(368)),
];

/// csv-rs's `ca::Certificate` (HSK) as serde writes it, in byte order.
const CA_CERT_SPEC: &[(&str, Field)] = &[
    ("body.preamble.ver", Field::U32),
    ("body.preamble.data.kid", Field::Bytes(16)),
    ("body.preamble.data.sid", Field::Bytes(16)),
    ("body.preamble.data.usage", Field::U32),
    ("body.preamble.data.reserved", Field::Bytes(24)),
    ("body.pubkey.g", Field::U32),
    ("body.pubkey.x", Field::Bytes(72)),
    ("body.pubkey.y", Field::Bytes(72)),
    ("body.uid_size", Field::U16),
    ("body.user_id", Field::Bytes(254)),
    ("body.reserved", Field::Bytes(108)),
    ("signature.r", Field::Bytes(72)),
    ("signature.s", Field::Bytes(72)),
    ("_reserved", Field::Bytes(112)),
];

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Result<&'a Value, String> {
    let mut at = value;
    for segment in path {
        at = match segment.parse::<usize>() {
            Ok(index) => at.get(index),
            Err(_) => at.get(segment),
        }
        .ok_or_else(|| format!("missing {}", path.join(".")))?;
    }
    Ok(at)
}

fn int_field(value: &Value, path: &[&str], max: u64) -> Result<u64, String> {
    lookup(value, path)?
        .as_u64()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("{} is not an integer up to {max}", path.join(".")))
}

fn bytes_any(value: &Value) -> Result<Vec<u8>, String> {
    value
        .as_array()
        .ok_or("not an array of bytes")?
        .iter()
        .map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()).ok_or("not an array of bytes"))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(str::to_owned)
}

fn bytes_field(value: &Value, path: &[&str], len: usize) -> Result<Vec<u8>, String> {
    let bytes = bytes_any(lookup(value, path)?).map_err(|e| format!("{}: {e}", path.join(".")))?;
    if bytes.len() != len {
        return Err(format!("{} has {} bytes, expected {len}", path.join("."), bytes.len()));
    }
    Ok(bytes)
}

/// Encodes a serde-JSON structure back into its little-endian binary form.
fn encode(value: &Value, spec: &[(&str, Field)], len: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(len);
    for (path, field) in spec {
        let path: Vec<&str> = path.split('.').collect();
        match field {
            Field::U8 => out.push(int_field(value, &path, u64::from(u8::MAX))? as u8),
            Field::U16 => out.extend_from_slice(
                &(int_field(value, &path, u64::from(u16::MAX))? as u16).to_le_bytes(),
            ),
            Field::U32 => out.extend_from_slice(
                &(int_field(value, &path, u64::from(u32::MAX))? as u32).to_le_bytes(),
            ),
            Field::Bytes(n) => out.extend_from_slice(&bytes_field(value, &path, *n)?),
        }
    }
    if out.len() != len {
        return Err(format!("encodes to {} bytes, expected {len}", out.len()));
    }
    Ok(out)
}
