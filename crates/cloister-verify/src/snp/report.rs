//! The SEV-SNP `ATTESTATION_REPORT` structure (AMD SEV-SNP firmware ABI specification, table
//! "ATTESTATION_REPORT Structure"): a bounds-checked parser of the 1184 bytes and the decoding
//! of its policy, platform-info and TCB fields.

use super::SnpError;

/// Size of an attestation report, signature included.
pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes `[0, SIGNED_LEN)`.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only algorithm the ABI defines.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// Lowest and highest report `VERSION` this parser knows the layout of.
pub const VERSIONS: std::ops::RangeInclusive<u32> = 2..=5;

/// An AMD EPYC product generation, which decides the TCB layout and the AMD root (ARK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Product {
    /// EPYC 7003 (family 19h, models 00h–0Fh).
    Milan,
    /// EPYC 9004/8004 (family 19h, models 10h–1Fh and A0h–AFh).
    Genoa,
    /// EPYC 9005 (family 1Ah, models 00h–1Fh); its TCB has an FMC field.
    Turin,
}

impl Product {
    /// All products this verifier has a pinned root for.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD uses in certificate names and KDS URLs (`Milan`).
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// The lowercase name used in claims (`milan`).
    pub fn lowercase(self) -> &'static str {
        match self {
            Product::Milan => "milan",
            Product::Genoa => "genoa",
            Product::Turin => "turin",
        }
    }

    /// The product of a CPUID family/model pair, if known.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x1F) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The product named by an AMD certificate name suffix or product-name extension
    /// (`Milan`, `Milan-B0`, `Genoa`, `Turin`).
    pub fn from_name(name: &str) -> Option<Self> {
        let base = name.split('-').next().unwrap_or(name);
        Product::ALL.into_iter().find(|p| p.name() == base)
    }

    /// Whether TCB versions use the Turin layout (FMC first).
    pub fn has_fmc(self) -> bool {
        self == Product::Turin
    }
}

/// A decoded `TCB_VERSION`: the security patch levels of the platform's firmware components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcbVersion {
    /// The raw 8 bytes as in the report.
    pub raw: [u8; 8],
    /// Turin only: the FMC (first mutable code) SPL.
    pub fmc: Option<u8>,
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
}

impl TcbVersion {
    /// Decodes the 8 bytes with the layout of `turin_layout` (FMC, bootloader, TEE, SNP, 3
    /// reserved, microcode) or of Milan/Genoa (bootloader, TEE, 4 reserved, SNP, microcode).
    pub fn decode(raw: [u8; 8], turin_layout: bool) -> Self {
        let [b0, b1, b2, b3, _, _, b6, b7] = raw;
        if turin_layout {
            Self { raw, fmc: Some(b0), bootloader: b1, tee: b2, snp: b3, microcode: b7 }
        } else {
            Self { raw, fmc: None, bootloader: b0, tee: b1, snp: b6, microcode: b7 }
        }
    }

    /// Encodes the components back into the 8-byte layout (reserved bytes zero).
    pub fn encode(fmc: Option<u8>, bootloader: u8, tee: u8, snp: u8, microcode: u8) -> [u8; 8] {
        match fmc {
            Some(fmc) => [fmc, bootloader, tee, snp, 0, 0, 0, microcode],
            None => [bootloader, tee, 0, 0, 0, 0, snp, microcode],
        }
    }

    /// Whether every component equals `other`'s (the raw reserved bytes are not compared).
    pub fn same_levels(&self, other: &TcbVersion) -> bool {
        self.fmc == other.fmc
            && self.bootloader == other.bootloader
            && self.tee == other.tee
            && self.snp == other.snp
            && self.microcode == other.microcode
    }

    /// The decoded levels as a JSON object of numbers only (`fmc` on Turin), so a policy can
    /// compare every field with a minimum.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        if let Some(fmc) = self.fmc {
            map.insert("fmc".into(), fmc.into());
        }
        map.insert("bootloader".into(), self.bootloader.into());
        map.insert("tee".into(), self.tee.into());
        map.insert("snp".into(), self.snp.into());
        map.insert("microcode".into(), self.microcode.into());
        serde_json::Value::Object(map)
    }
}

impl std::fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc {fmc} ")?;
        }
        write!(
            f,
            "bl {} tee {} snp {} ucode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// Which key signed the report (`SIGNING_KEY`, bits 4:2 at 0x48).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningKey {
    /// The chip's Versioned Chip Endorsement Key.
    Vcek,
    /// A cloud provider's Versioned Loaded Endorsement Key.
    Vlek,
}

impl SigningKey {
    /// `VCEK` or `VLEK`, for messages.
    pub fn upper(self) -> &'static str {
        match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
        }
    }

    /// `vcek` or `vlek`, for claims.
    pub fn lower(self) -> &'static str {
        match self {
            SigningKey::Vcek => "vcek",
            SigningKey::Vlek => "vlek",
        }
    }
}

/// A parsed attestation report. Multi-byte integers are little-endian in the report.
#[derive(Clone, Debug)]
pub struct Report {
    /// The 1184 bytes of the report.
    pub bytes: [u8; REPORT_LEN],
    /// Whether the report came inside the firmware's `MSG_REPORT_RSP` (status, report size,
    /// 24 reserved bytes, then the report), as some tools save the whole response.
    pub in_response: bool,
    /// How many bytes followed the report (never interpreted).
    pub trailing: usize,
    /// `VERSION`.
    pub version: u32,
    /// `GUEST_SVN`.
    pub guest_svn: u32,
    /// `POLICY` (raw).
    pub policy: u64,
    /// `FAMILY_ID`.
    pub family_id: [u8; 16],
    /// `IMAGE_ID`.
    pub image_id: [u8; 16],
    /// `VMPL` of the requester.
    pub vmpl: u32,
    /// `SIGNATURE_ALGO`.
    pub signature_algo: u32,
    /// `CURRENT_TCB` (raw).
    pub current_tcb: [u8; 8],
    /// `PLATFORM_INFO` (raw).
    pub platform_info: u64,
    /// The key-info word at 0x48 (AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY).
    pub key_info: u32,
    /// `REPORT_DATA`.
    pub report_data: [u8; 64],
    /// `MEASUREMENT`.
    pub measurement: [u8; 48],
    /// `HOST_DATA`.
    pub host_data: [u8; 32],
    /// `ID_KEY_DIGEST`.
    pub id_key_digest: [u8; 48],
    /// `AUTHOR_KEY_DIGEST`.
    pub author_key_digest: [u8; 48],
    /// `REPORT_ID`.
    pub report_id: [u8; 32],
    /// `REPORT_ID_MA`.
    pub report_id_ma: [u8; 32],
    /// `REPORTED_TCB` (raw): the TCB the VCEK/VLEK was derived for.
    pub reported_tcb: [u8; 8],
    /// Version 3+: `CPUID_FAM_ID`, `CPUID_MOD_ID`, `CPUID_STEP`.
    pub cpuid: Option<(u8, u8, u8)>,
    /// `CHIP_ID` (all zero when the host masks it, and always for VLEK-signed reports).
    pub chip_id: [u8; 64],
    /// `COMMITTED_TCB` (raw).
    pub committed_tcb: [u8; 8],
    /// `CURRENT_BUILD`, `CURRENT_MINOR`, `CURRENT_MAJOR` (firmware version).
    pub current_version: (u8, u8, u8),
    /// `COMMITTED_BUILD`, `COMMITTED_MINOR`, `COMMITTED_MAJOR`.
    pub committed_version: (u8, u8, u8),
    /// `LAUNCH_TCB` (raw).
    pub launch_tcb: [u8; 8],
    /// Version 5+: `LAUNCH_MIT_VECTOR` and `CURRENT_MIT_VECTOR`.
    pub mit_vectors: Option<(u64, u64)>,
    /// Signature `R`, big-endian, 48 bytes (the report stores 72 little-endian bytes).
    pub sig_r: [u8; 48],
    /// Signature `S`, big-endian, 48 bytes.
    pub sig_s: [u8; 48],
}

/// Copies `N` bytes at `offset`; `bytes` is a whole report, so the range is always inside it.
fn take<const N: usize>(bytes: &[u8; REPORT_LEN], offset: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(offset..offset.saturating_add(N)) {
        out.copy_from_slice(src);
    }
    out
}

fn u32_at(bytes: &[u8; REPORT_LEN], offset: usize) -> u32 {
    u32::from_le_bytes(take(bytes, offset))
}

fn u64_at(bytes: &[u8; REPORT_LEN], offset: usize) -> u64 {
    u64::from_le_bytes(take(bytes, offset))
}

fn byte_at(bytes: &[u8; REPORT_LEN], offset: usize) -> u8 {
    bytes.get(offset).copied().unwrap_or(0)
}

/// Converts a 72-byte zero-extended little-endian scalar into 48 big-endian bytes.
fn scalar(raw: [u8; 72], name: &str) -> Result<[u8; 48], SnpError> {
    let (low, high) = raw.split_at(48);
    if high.iter().any(|&b| b != 0) {
        return Err(SnpError::Malformed(format!(
            "signature {name} has non-zero bytes above 384 bits"
        )));
    }
    let mut out = [0u8; 48];
    for (dst, src) in out.iter_mut().zip(low.iter().rev()) {
        *dst = *src;
    }
    Ok(out)
}

impl Report {
    /// Parses a report: 1184 bytes (alone, or inside the firmware's `MSG_REPORT_RSP` whose
    /// status is 0 and report size 1184), a known version, and a signature whose `R` and `S` fit
    /// in 384 bits. Bytes after the report (a larger response buffer) are counted, never read.
    /// No trust decision is made here.
    pub fn parse(input: &[u8]) -> Result<Self, SnpError> {
        // MSG_REPORT_RSP (SEV-SNP firmware ABI, "MSG_REPORT_RSP"): STATUS u32, REPORT_SIZE u32,
        // 24 reserved bytes, REPORT. No report starts with a zero VERSION, so this cannot be
        // mistaken for one.
        const RESPONSE_HEADER_LEN: usize = 0x20;
        let in_response = input.len() >= RESPONSE_HEADER_LEN + REPORT_LEN
            && input.get(..4) == Some(&[0; 4])
            && input.get(4..8) == Some(&(REPORT_LEN as u32).to_le_bytes()[..])
            && input.get(8..RESPONSE_HEADER_LEN).is_some_and(|r| r.iter().all(|&b| b == 0));
        let start = if in_response { RESPONSE_HEADER_LEN } else { 0 };
        let report =
            input.get(start..start + REPORT_LEN).ok_or(SnpError::ReportLength(input.len()))?;
        let trailing = input.len() - start - REPORT_LEN;
        let bytes: [u8; REPORT_LEN] =
            report.try_into().map_err(|_| SnpError::ReportLength(input.len()))?;
        let version = u32_at(&bytes, 0x00);
        if !VERSIONS.contains(&version) {
            return Err(SnpError::UnsupportedVersion(version));
        }
        let cpuid = (version >= 3)
            .then(|| (byte_at(&bytes, 0x188), byte_at(&bytes, 0x189), byte_at(&bytes, 0x18A)));
        let mit_vectors = (version >= 5).then(|| (u64_at(&bytes, 0x1F8), u64_at(&bytes, 0x200)));
        let sig_r = scalar(take(&bytes, SIGNED_LEN), "R")?;
        let sig_s = scalar(take(&bytes, SIGNED_LEN + 72), "S")?;
        Ok(Self {
            version,
            guest_svn: u32_at(&bytes, 0x04),
            policy: u64_at(&bytes, 0x08),
            family_id: take(&bytes, 0x10),
            image_id: take(&bytes, 0x20),
            vmpl: u32_at(&bytes, 0x30),
            signature_algo: u32_at(&bytes, 0x34),
            current_tcb: take(&bytes, 0x38),
            platform_info: u64_at(&bytes, 0x40),
            key_info: u32_at(&bytes, 0x48),
            report_data: take(&bytes, 0x50),
            measurement: take(&bytes, 0x90),
            host_data: take(&bytes, 0xC0),
            id_key_digest: take(&bytes, 0xE0),
            author_key_digest: take(&bytes, 0x110),
            report_id: take(&bytes, 0x140),
            report_id_ma: take(&bytes, 0x160),
            reported_tcb: take(&bytes, 0x180),
            cpuid,
            chip_id: take(&bytes, 0x1A0),
            committed_tcb: take(&bytes, 0x1E0),
            current_version: (
                byte_at(&bytes, 0x1E8),
                byte_at(&bytes, 0x1E9),
                byte_at(&bytes, 0x1EA),
            ),
            committed_version: (
                byte_at(&bytes, 0x1EC),
                byte_at(&bytes, 0x1ED),
                byte_at(&bytes, 0x1EE),
            ),
            launch_tcb: take(&bytes, 0x1F0),
            mit_vectors,
            sig_r,
            sig_s,
            bytes,
            in_response,
            trailing,
        })
    }

    /// The signed bytes `[0, 0x2A0)`.
    pub fn signed_bytes(&self) -> &[u8] {
        self.bytes.get(..SIGNED_LEN).unwrap_or(&[])
    }

    /// `r || s`, 96 bytes big-endian, as ECDSA verifiers take it.
    pub fn signature_r_s(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        let (r, s) = out.split_at_mut(48);
        r.copy_from_slice(&self.sig_r);
        s.copy_from_slice(&self.sig_s);
        out
    }

    /// `AUTHOR_KEY_EN`: the ID key is itself signed by an author key.
    pub fn author_key_en(&self) -> bool {
        self.key_info & 1 != 0
    }

    /// `MASK_CHIP_KEY`: the firmware did not sign the report (the signature is zero).
    pub fn mask_chip_key(&self) -> bool {
        self.key_info & 2 != 0
    }

    /// The raw `SIGNING_KEY` value: 0 VCEK, 1 VLEK, 7 none.
    pub fn signing_key_raw(&self) -> u8 {
        u8::try_from((self.key_info >> 2) & 7).unwrap_or(u8::MAX)
    }

    /// Which key signed the report, or why none can be used.
    pub fn signing_key(&self) -> Result<SigningKey, SnpError> {
        if self.mask_chip_key() {
            return Err(SnpError::Unsigned(
                "MASK_CHIP_KEY is set, so the firmware wrote no signature".into(),
            ));
        }
        match self.signing_key_raw() {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            7 => Err(SnpError::Unsigned("SIGNING_KEY is 7 (no key)".into())),
            other => Err(SnpError::UnknownSigningKey(other)),
        }
    }

    /// Whether `CHIP_ID` is all zero (masked by the host, or a VLEK-signed report).
    pub fn chip_id_masked(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }

    /// The product the report's CPUID fields name (version 3 and later), if known.
    pub fn cpuid_product(&self) -> Option<Product> {
        self.cpuid.and_then(|(family, model, _)| Product::from_cpuid(family, model))
    }

    /// Whether the policy's DEBUG bit (19) is set.
    pub fn debug(&self) -> bool {
        self.policy & (1 << 19) != 0
    }

    /// The guest policy, decoded.
    pub fn policy_json(&self) -> serde_json::Value {
        let bit = |n: u32| self.policy & (1u64 << n) != 0;
        serde_json::json!({
            "raw": self.policy,
            "abi_minor": self.policy & 0xFF,
            "abi_major": (self.policy >> 8) & 0xFF,
            "smt": bit(16),
            "migrate_ma": bit(18),
            "debug": bit(19),
            "single_socket": bit(20),
            "cxl_allow": bit(21),
            "mem_aes_256_xts": bit(22),
            "rapl_dis": bit(23),
            "ciphertext_hiding": bit(24),
            "page_swap_disable": bit(25),
        })
    }

    /// The platform info, decoded.
    pub fn platform_info_json(&self) -> serde_json::Value {
        let bit = |n: u32| self.platform_info & (1u64 << n) != 0;
        serde_json::json!({
            "raw": self.platform_info,
            "smt_en": bit(0),
            "tsme_en": bit(1),
            "ecc_en": bit(2),
            "rapl_dis": bit(3),
            "ciphertext_hiding_en": bit(4),
            "alias_check_complete": bit(5),
            "tio_en": bit(7),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcb_layouts_round_trip() {
        let milan = TcbVersion::decode([3, 0, 0, 0, 0, 0, 8, 115], false);
        assert_eq!(milan.to_string(), "bl 3 tee 0 snp 8 ucode 115");
        assert_eq!(TcbVersion::encode(None, 3, 0, 8, 115), milan.raw);
        let turin = TcbVersion::decode([1, 2, 3, 4, 0, 0, 0, 9], true);
        assert_eq!(turin.to_string(), "fmc 1 bl 2 tee 3 snp 4 ucode 9");
        assert_eq!(TcbVersion::encode(Some(1), 2, 3, 4, 9), turin.raw);
        assert_eq!(
            turin.to_json(),
            serde_json::json!({
                "fmc": 1, "bootloader": 2, "tee": 3, "snp": 4, "microcode": 9
            })
        );
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x19, 0xA0), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
        assert_eq!(Product::from_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_name("Venice"), None);
    }
}
