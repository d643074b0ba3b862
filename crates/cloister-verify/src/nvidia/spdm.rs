//! The SPDM 1.1/1.2/1.3 GET_MEASUREMENTS request and MEASUREMENTS response an NVIDIA GPU returns
//! as its attestation report, and the NVIDIA opaque-data fields inside it.
//!
//! Layout (DMTF DSP0274 1.1, 1.2 and 1.3; all integers little-endian):
//!
//! ```text
//! request  (37 bytes;  version 0x11/0x12/0x13 | code 0xE0 | param1 (bit 0: signature requested)
//!  45 in 1.3):         | param2 (measurement operation, 0xFF = all) | nonce (32) | slot id (1)
//!                      | [1.3: requester context (8)]
//! response:            version | code 0x60 | param1 | param2 (slot id) | number of blocks (1)
//!                      | measurement record length (3) | measurement record
//!                      | responder nonce (32) | opaque length (2) | opaque data
//!                      | [1.3: requester context (8)] | signature (96)
//! measurement block:   index (1) | measurement specification (1, bit 0 = DMTF) | size (2)
//!                      | DMTF value type (1) | DMTF value size (2) | value
//! opaque data:         a list of NVIDIA fields: type (2) | length (2) | value
//! ```
//!
//! SPDM 1.3 (DSP0274 1.3.0, GET_MEASUREMENTS and MEASUREMENTS) adds the 8-byte
//! `RequesterContext` to the request, after the slot id, and echoes it in the response, after
//! the opaque data and before the signature; the response's must equal the request's
//! ([`NvidiaError::RequesterContextMismatch`]). 1.1 and 1.2 have no such field. Any other
//! version byte is refused.
//!
//! Every variable part is read by its own length field (measurement record length, each block's
//! size and DMTF value size, opaque data length); the signature's length is not in the message
//! but follows from the negotiated algorithm, ECDSA P-384 (96 bytes, `r || s`) for NVIDIA's
//! devices. Bytes after the signature are not part of the response (capture tools append
//! newlines or NULs): they are counted in [`Report::trailing`] and never read.
//!
//! What the signature covers depends on the version: in 1.1, SHA-384 over every byte before it
//! (request and response); from 1.2, SHA-384 over the signing context ([`signed_message`]), whose
//! prefix names the version (`dmtf-spdm-v1.2.*`, `dmtf-spdm-v1.3.*`).

use sha2::{Digest as _, Sha384};

use super::NvidiaError;

/// SPDM 1.1: the signature covers request and response as they are.
pub(crate) const SPDM_VERSION_1_1: u8 = 0x11;
/// SPDM 1.2: the signature covers a signing context and the transcript's hash.
pub(crate) const SPDM_VERSION_1_2: u8 = 0x12;
/// SPDM 1.3: as 1.2, and request and response carry the requester context.
pub(crate) const SPDM_VERSION_1_3: u8 = 0x13;
/// Length of the 1.3 `RequesterContext`.
const REQUESTER_CONTEXT_LEN: usize = 8;
/// GET_MEASUREMENTS request code.
const GET_MEASUREMENTS: u8 = 0xE0;
/// MEASUREMENTS response code.
const MEASUREMENTS: u8 = 0x60;
/// The measurement operation asking for every measurement block.
const ALL_MEASUREMENTS: u8 = 0xFF;
/// Length of a P-384 `r || s` signature.
pub(crate) const SIGNATURE_LEN: usize = 96;
/// Length of SPDM nonces.
const NONCE_LEN: usize = 32;
/// The measurement specification bit for DMTF measurement blocks.
const DMTF_SPECIFICATION: u8 = 0x01;
/// The largest evidence accepted (a genuine Hopper report is about 4 KiB).
pub(crate) const MAX_EVIDENCE_LEN: usize = 256 * 1024;

/// One measurement block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MeasurementBlock {
    /// The block's index (1-based, as the device numbers them).
    pub(crate) index: u8,
    /// The DMTF measurement value type (bit 7: raw bit stream rather than a digest).
    pub(crate) value_type: u8,
    /// The measurement value.
    pub(crate) value: Vec<u8>,
}

/// One field of NVIDIA's opaque data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpaqueField {
    /// The field type.
    pub(crate) kind: u16,
    /// The raw value.
    pub(crate) value: Vec<u8>,
}

/// A parsed GET_MEASUREMENTS request and MEASUREMENTS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// The SPDM version byte (0x11, 0x12 or 0x13).
    pub(crate) version: u8,
    /// The request's param1 (attributes).
    pub(crate) request_attributes: u8,
    /// The requester's nonce (request bytes 4..36).
    pub(crate) nonce: [u8; 32],
    /// The slot of the certificate chain the device was asked to sign with.
    pub(crate) slot_id: u8,
    /// The 1.3 requester context, the same in request and response; `None` for 1.1 and 1.2,
    /// whose messages have no such field.
    pub(crate) requester_context: Option<[u8; REQUESTER_CONTEXT_LEN]>,
    /// The response's param1.
    pub(crate) response_param1: u8,
    /// The measurement blocks, in the order received.
    pub(crate) blocks: Vec<MeasurementBlock>,
    /// The responder's nonce.
    pub(crate) responder_nonce: [u8; 32],
    /// The opaque data fields, in the order received.
    pub(crate) opaque: Vec<OpaqueField>,
    /// The number of bytes of the transcript (request and response up to the signature).
    pub(crate) signed_len: usize,
    /// The signature, `r || s`.
    pub(crate) signature: [u8; 96],
    /// How many bytes followed the signature (never interpreted).
    pub(crate) trailing: usize,
}

/// A bounds-checked reader over the evidence.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], NvidiaError> {
        let have = self.bytes.len().saturating_sub(self.pos);
        if n > have {
            return Err(NvidiaError::Truncated { what, need: n, have });
        }
        let out = self.bytes.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, NvidiaError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, NvidiaError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]))
    }

    fn u24(&mut self, what: &'static str) -> Result<usize, NvidiaError> {
        let b = self.take(3, what)?;
        Ok(b.iter().rev().fold(0usize, |acc, &x| (acc << 8) | usize::from(x)))
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], NvidiaError> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }
}

/// Parses the request and response; checks structure only (no signature, no trust decision).
pub(crate) fn parse(evidence: &[u8]) -> Result<Report, NvidiaError> {
    if evidence.len() > MAX_EVIDENCE_LEN {
        return Err(NvidiaError::TooLarge { len: evidence.len(), max: MAX_EVIDENCE_LEN });
    }
    let mut r = Reader { bytes: evidence, pos: 0 };

    // The request.
    let version = r.u8("request version")?;
    if ![SPDM_VERSION_1_1, SPDM_VERSION_1_2, SPDM_VERSION_1_3].contains(&version) {
        return Err(NvidiaError::SpdmVersion(version));
    }
    let code = r.u8("request code")?;
    if code != GET_MEASUREMENTS {
        return Err(NvidiaError::Malformed(format!(
            "the evidence does not start with an SPDM GET_MEASUREMENTS request (code {code:#04x}, \
             expected 0xe0)"
        )));
    }
    let request_attributes = r.u8("request attributes")?;
    if request_attributes & 1 == 0 {
        return Err(NvidiaError::Malformed(
            "the GET_MEASUREMENTS request did not ask for a signature".into(),
        ));
    }
    let operation = r.u8("request measurement operation")?;
    if operation != ALL_MEASUREMENTS {
        return Err(NvidiaError::Malformed(format!(
            "the GET_MEASUREMENTS request asked for measurement operation {operation:#04x}, not \
             all measurements (0xff)"
        )));
    }
    let nonce = r.array::<NONCE_LEN>("request nonce")?;
    let slot_id = r.u8("request slot id")?;
    let requester_context = if version == SPDM_VERSION_1_3 {
        Some(r.array::<REQUESTER_CONTEXT_LEN>("request requester context")?)
    } else {
        None
    };

    // The response.
    let response_version = r.u8("response version")?;
    if response_version != version {
        return Err(NvidiaError::Malformed(format!(
            "the response's SPDM version {response_version:#04x} differs from the request's \
             {version:#04x}"
        )));
    }
    let code = r.u8("response code")?;
    if code != MEASUREMENTS {
        return Err(NvidiaError::Malformed(format!(
            "the response is not an SPDM MEASUREMENTS response (code {code:#04x}, expected 0x60)"
        )));
    }
    let response_param1 = r.u8("response param1")?;
    let response_slot = r.u8("response param2")? & 0x0f;
    if response_slot != slot_id & 0x0f {
        return Err(NvidiaError::Malformed(format!(
            "the response names certificate slot {response_slot}, the request slot {slot_id}"
        )));
    }
    let count = r.u8("number of measurement blocks")?;
    if count == 0 {
        return Err(NvidiaError::Malformed("the response carries no measurement blocks".into()));
    }
    let record_len = r.u24("measurement record length")?;
    let record = r.take(record_len, "measurement record")?;
    let blocks = parse_record(record, count)?;
    let responder_nonce = r.array::<NONCE_LEN>("responder nonce")?;
    let opaque_len = usize::from(r.u16("opaque data length")?);
    let opaque = parse_opaque(r.take(opaque_len, "opaque data")?)?;
    if let Some(request) = requester_context {
        let response = r.array::<REQUESTER_CONTEXT_LEN>("response requester context")?;
        if response != request {
            return Err(NvidiaError::RequesterContextMismatch {
                request: hex::encode(request),
                response: hex::encode(response),
            });
        }
    }
    let signed_len = r.pos;
    let signature = r.array::<SIGNATURE_LEN>("signature")?;
    let trailing = r.remaining();
    Ok(Report {
        version,
        request_attributes,
        nonce,
        slot_id,
        requester_context,
        response_param1,
        blocks,
        responder_nonce,
        opaque,
        signed_len,
        signature,
        trailing,
    })
}

/// The bytes the device's key signed (hashed with SHA-384 by ECDSA), for `transcript`: the
/// request and the response up to the signature.
///
/// SPDM 1.1 signs the transcript itself. SPDM 1.2 and 1.3 (DSP0274, "signature generation")
/// sign the combined prefix, `"dmtf-spdm-v1.N.*"` four times with `N` the minor version (2 or
/// 3), then zero bytes padding the context to 36 bytes, then the context
/// `"responder-measurements signing"`, followed by SHA-384 of the transcript (which, in 1.3,
/// includes both requester contexts).
pub(crate) fn signed_message(version: u8, transcript: &[u8]) -> Vec<u8> {
    if version == SPDM_VERSION_1_1 {
        return transcript.to_vec();
    }
    const CONTEXT: &[u8] = b"responder-measurements signing";
    const CONTEXT_FIELD_LEN: usize = 36;
    let mut message = Vec::with_capacity(64 + CONTEXT_FIELD_LEN + 48);
    for _ in 0..4 {
        message.extend_from_slice(b"dmtf-spdm-v1.");
        message.push(b'0' + (version & 0x0f));
        message.extend_from_slice(b".*");
    }
    message.resize(message.len() + CONTEXT_FIELD_LEN - CONTEXT.len(), 0);
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(&Sha384::digest(transcript));
    message
}

fn parse_record(record: &[u8], count: u8) -> Result<Vec<MeasurementBlock>, NvidiaError> {
    let mut r = Reader { bytes: record, pos: 0 };
    let mut blocks: Vec<MeasurementBlock> = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let index = r.u8("measurement block index")?;
        if index == 0 || index == 0xff {
            return Err(NvidiaError::Malformed(format!(
                "measurement block index {index} is reserved"
            )));
        }
        if blocks.iter().any(|b| b.index == index) {
            return Err(NvidiaError::Malformed(format!("measurement block {index} appears twice")));
        }
        let specification = r.u8("measurement specification")?;
        if specification != DMTF_SPECIFICATION {
            return Err(NvidiaError::Malformed(format!(
                "measurement block {index} uses measurement specification {specification:#04x}, \
                 not DMTF (0x01)"
            )));
        }
        let size = usize::from(r.u16("measurement size")?);
        let body = r.take(size, "measurement block")?;
        let mut b = Reader { bytes: body, pos: 0 };
        let value_type = b.u8("DMTF measurement value type")?;
        let value_size = usize::from(b.u16("DMTF measurement value size")?);
        let value = b.take(value_size, "DMTF measurement value")?.to_vec();
        if b.remaining() != 0 {
            return Err(NvidiaError::Malformed(format!(
                "measurement block {index} is {size} bytes but its DMTF value ends after {}",
                b.pos
            )));
        }
        blocks.push(MeasurementBlock { index, value_type, value });
    }
    if r.remaining() != 0 {
        return Err(NvidiaError::Malformed(format!(
            "the measurement record has {} bytes after its {count} blocks",
            r.remaining()
        )));
    }
    Ok(blocks)
}

fn parse_opaque(data: &[u8]) -> Result<Vec<OpaqueField>, NvidiaError> {
    let mut r = Reader { bytes: data, pos: 0 };
    let mut fields: Vec<OpaqueField> = Vec::new();
    while r.remaining() > 0 {
        let kind = r.u16("opaque field type")?;
        let len = usize::from(r.u16("opaque field length")?);
        let value = r.take(len, "opaque field value")?.to_vec();
        if fields.iter().any(|f| f.kind == kind) {
            return Err(NvidiaError::Malformed(format!("opaque field {kind} appears twice")));
        }
        fields.push(OpaqueField { kind, value });
    }
    Ok(fields)
}

impl Report {
    /// The raw value of opaque field `kind`, if present.
    pub(crate) fn opaque_field(&self, kind: u16) -> Option<&[u8]> {
        self.opaque.iter().find(|f| f.kind == kind).map(|f| f.value.as_slice())
    }
}
