//! The JSON form of SNP evidence that Confidential Containers' trustee (and virtee/sev's serde
//! encoding) produce: `{"attestation_report": {decoded fields}, "cert_chain": [{"cert_type",
//! "data"}]}`. The report is rebuilt byte for byte from its fields, so the signature check then
//! decides whether the rebuild is faithful; certificates are handed on to be recognised by
//! content like any other.

use serde::Deserialize;

use super::SnpError;
use super::report::{Product, REPORT_LEN, SIGNED_LEN, TcbVersion};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Evidence {
    attestation_report: JsonReport,
    #[serde(default)]
    cert_chain: Vec<CertEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    #[allow(dead_code)]
    cert_type: serde_json::Value,
    data: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tcb {
    #[serde(default)]
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Version {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Signature {
    r: Vec<u8>,
    s: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: Tcb,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: Tcb,
    #[serde(default)]
    cpuid_fam_id: Option<u8>,
    #[serde(default)]
    cpuid_mod_id: Option<u8>,
    #[serde(default)]
    cpuid_step: Option<u8>,
    chip_id: Vec<u8>,
    committed_tcb: Tcb,
    current: Version,
    committed: Version,
    launch_tcb: Tcb,
    #[serde(default)]
    launch_mit_vector: Option<u64>,
    #[serde(default)]
    current_mit_vector: Option<u64>,
    signature: Signature,
}

/// Whether `bytes` look like the JSON form (an object), rather than a binary report.
pub(super) fn looks_like_json(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Rebuilds the 1184-byte report from the JSON form and returns it with the DER certificates
/// that came with it.
pub(super) fn parse(bytes: &[u8]) -> Result<([u8; REPORT_LEN], Vec<Vec<u8>>), SnpError> {
    let evidence: Evidence = serde_json::from_slice(bytes)
        .map_err(|e| SnpError::Malformed(format!("SNP evidence JSON: {e}")))?;
    let report = encode(&evidence.attestation_report)?;
    let certs = evidence.cert_chain.into_iter().map(|entry| entry.data).collect();
    Ok((report, certs))
}

struct Writer {
    out: [u8; REPORT_LEN],
}

impl Writer {
    fn put(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(dst) = self.out.get_mut(offset..offset.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }

    fn fixed(
        &mut self,
        offset: usize,
        bytes: &[u8],
        len: usize,
        name: &str,
    ) -> Result<(), SnpError> {
        if bytes.len() != len {
            return Err(SnpError::Malformed(format!(
                "SNP evidence JSON: {name} has {} bytes, expected {len}",
                bytes.len()
            )));
        }
        self.put(offset, bytes);
        Ok(())
    }

    fn tcb(&mut self, offset: usize, tcb: &Tcb, turin: bool, name: &str) -> Result<(), SnpError> {
        if tcb.fmc.is_some() != turin {
            return Err(SnpError::Malformed(format!(
                "SNP evidence JSON: {name} {} an FMC level, but the report's CPUID is {}",
                if tcb.fmc.is_some() { "has" } else { "lacks" },
                if turin { "Turin's" } else { "not Turin's" }
            )));
        }
        let raw = TcbVersion::encode(tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode);
        self.put(offset, &raw);
        Ok(())
    }
}

fn encode(r: &JsonReport) -> Result<[u8; REPORT_LEN], SnpError> {
    let mut w = Writer { out: [0u8; REPORT_LEN] };
    w.put(0x00, &r.version.to_le_bytes());
    w.put(0x04, &r.guest_svn.to_le_bytes());
    w.put(0x08, &r.policy.to_le_bytes());
    w.fixed(0x10, &r.family_id, 16, "family_id")?;
    w.fixed(0x20, &r.image_id, 16, "image_id")?;
    w.put(0x30, &r.vmpl.to_le_bytes());
    w.put(0x34, &r.sig_algo.to_le_bytes());
    let turin = match (r.cpuid_fam_id, r.cpuid_mod_id) {
        (Some(family), Some(model)) => Product::from_cpuid(family, model) == Some(Product::Turin),
        _ => false,
    };
    w.tcb(0x38, &r.current_tcb, turin, "current_tcb")?;
    w.put(0x40, &r.plat_info.to_le_bytes());
    w.put(0x48, &r.key_info.to_le_bytes());
    w.fixed(0x50, &r.report_data, 64, "report_data")?;
    w.fixed(0x90, &r.measurement, 48, "measurement")?;
    w.fixed(0xC0, &r.host_data, 32, "host_data")?;
    w.fixed(0xE0, &r.id_key_digest, 48, "id_key_digest")?;
    w.fixed(0x110, &r.author_key_digest, 48, "author_key_digest")?;
    w.fixed(0x140, &r.report_id, 32, "report_id")?;
    w.fixed(0x160, &r.report_id_ma, 32, "report_id_ma")?;
    w.tcb(0x180, &r.reported_tcb, turin, "reported_tcb")?;
    w.put(
        0x188,
        &[r.cpuid_fam_id.unwrap_or(0), r.cpuid_mod_id.unwrap_or(0), r.cpuid_step.unwrap_or(0)],
    );
    w.fixed(0x1A0, &r.chip_id, 64, "chip_id")?;
    w.tcb(0x1E0, &r.committed_tcb, turin, "committed_tcb")?;
    w.put(0x1E8, &[r.current.build, r.current.minor, r.current.major]);
    w.put(0x1EC, &[r.committed.build, r.committed.minor, r.committed.major]);
    w.tcb(0x1F0, &r.launch_tcb, turin, "launch_tcb")?;
    if let Some(v) = r.launch_mit_vector {
        w.put(0x1F8, &v.to_le_bytes());
    }
    if let Some(v) = r.current_mit_vector {
        w.put(0x200, &v.to_le_bytes());
    }
    w.fixed(SIGNED_LEN, &r.signature.r, 72, "signature.r")?;
    w.fixed(SIGNED_LEN + 72, &r.signature.s, 72, "signature.s")?;
    Ok(w.out)
}
