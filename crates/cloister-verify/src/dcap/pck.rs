//! The Intel SGX extension of PCK certificates (OID 1.2.840.113741.1.13.1): PPID, FMSPC, TCB.
//!
//! The extension is a DER `SEQUENCE` of `SEQUENCE { OID, value }`; the TCB entry is itself such
//! a sequence of the 16 component SVNs, the PCESVN and the CPUSVN. A small bounds-checked TLV
//! walker reads it.

/// The SGX extension OID.
pub(crate) const SGX_EXTENSION_OID: &str = "1.2.840.113741.1.13.1";

/// DER content octets of the OIDs under 1.2.840.113741.1.13.1 (prefix `2a 86 48 86 f8 4d 01 0d 01`).
const PREFIX: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];

/// What a PCK certificate says about its platform.
#[derive(Clone, Debug, Default)]
pub(crate) struct PckInfo {
    pub ppid: Vec<u8>,
    pub fmspc: Vec<u8>,
    pub pce_id: Vec<u8>,
    pub cpu_svn: Vec<u8>,
    pub pce_svn: u64,
    pub sgx_type: Option<u64>,
}

/// One DER TLV: tag and content.
fn tlv(bytes: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let tag = *bytes.first().ok_or("DER value is empty")?;
    let first = *bytes.get(1).ok_or("DER length is missing")?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2usize)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return Err("DER length form not supported".into());
        }
        let mut len = 0usize;
        for i in 0..count {
            let b = *bytes.get(2usize.saturating_add(i)).ok_or("DER length is truncated")?;
            len = len.checked_shl(8).ok_or("DER length overflows")? | usize::from(b);
        }
        (len, 2usize.saturating_add(count))
    };
    let end = header.checked_add(len).ok_or("DER length overflows")?;
    let content = bytes.get(header..end).ok_or("DER value is truncated")?;
    let rest = bytes.get(end..).unwrap_or_default();
    Ok((tag, content, rest))
}

/// One `SEQUENCE { OID, value }` entry: OID content, value tag, value content.
type Entry<'a> = (&'a [u8], u8, &'a [u8]);

/// The `(OID content, value TLV)` pairs of a SEQUENCE OF SEQUENCE { OID, value }.
fn entries(seq_content: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = seq_content;
    while !rest.is_empty() {
        let (tag, entry, next) = tlv(rest)?;
        if tag != 0x30 {
            return Err("SGX extension entry is not a SEQUENCE".into());
        }
        let (oid_tag, oid, after) = tlv(entry)?;
        if oid_tag != 0x06 {
            return Err("SGX extension entry does not start with an OID".into());
        }
        let (value_tag, value, _) = tlv(after)?;
        out.push((oid, value_tag, value));
        rest = next;
    }
    Ok(out)
}

fn integer(value: &[u8]) -> Result<u64, String> {
    if value.is_empty() || value.len() > 9 {
        return Err("SGX extension integer has a bad length".into());
    }
    let mut out = 0u64;
    for &b in value {
        out = out.checked_shl(8).ok_or("SGX extension integer overflows")? | u64::from(b);
    }
    Ok(out)
}

/// Parses the extension's value (the OCTET STRING content).
pub(crate) fn parse_sgx_extension(ext: &[u8]) -> Result<PckInfo, String> {
    let (tag, content, _) = tlv(ext)?;
    if tag != 0x30 {
        return Err("SGX extension is not a SEQUENCE".into());
    }
    let mut info = PckInfo::default();
    let mut seen_tcb = false;
    for (oid, value_tag, value) in entries(content)? {
        let Some(suffix) = oid.strip_prefix(&PREFIX[..]) else { continue };
        match suffix {
            [1] => info.ppid = value.to_vec(),
            [3] => info.pce_id = value.to_vec(),
            [4] => info.fmspc = value.to_vec(),
            [5] => info.sgx_type = Some(integer(value)?),
            [2] if value_tag == 0x30 => {
                seen_tcb = true;
                for (tcb_oid, _, tcb_value) in entries(value)? {
                    match tcb_oid.strip_prefix(&PREFIX[..]) {
                        Some([2, 17]) => info.pce_svn = integer(tcb_value)?,
                        Some([2, 18]) => info.cpu_svn = tcb_value.to_vec(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if info.fmspc.len() != 6 {
        return Err(format!("FMSPC is {} bytes, not 6", info.fmspc.len()));
    }
    if info.ppid.len() != 16 {
        return Err(format!("PPID is {} bytes, not 16", info.ppid.len()));
    }
    if !seen_tcb || info.cpu_svn.len() != 16 {
        return Err("TCB (CPUSVN, PCESVN) is missing".into());
    }
    Ok(info)
}
