//! AMD's certificates for SEV-SNP: the pinned roots (ARK), recognising ARK/ASK/ASVK/VCEK/VLEK
//! by subject name, the chain VCEK ← ASK ← ARK or VLEK ← ASVK ← ARK, and the VCEK/VLEK
//! extensions (TCB levels, hardware id, product name) that bind a key to a chip and a TCB.

use cloister_types::TeeKind;
use x509_cert::certificate::Raw;
use x509_cert::crl::CertificateList;

use super::SnpError;
use super::report::{Product, SigningKey, TcbVersion};
use crate::anchors::AnchorOrigin;
use crate::inputs::Inputs;
use crate::x509::{Cert, SignatureAlgorithm, rfc3339, verify_chain};

/// SHA-256 of AMD's `ARK-Milan` root certificate (self-signed, RSA-4096, RSASSA-PSS), as
/// served by AMD KDS at `/vcek/v1/Milan/cert_chain`.
pub const ARK_MILAN_SHA256: [u8; 32] = [
    0x69, 0xd0, 0x63, 0xb4, 0x53, 0x44, 0xd2, 0x6a, 0x2e, 0x94, 0xe1, 0xf4, 0x21, 0x0d, 0xe4, 0x9e,
    0xf5, 0x55, 0x30, 0x82, 0x87, 0xd4, 0xc1, 0x74, 0x44, 0x5c, 0x95, 0x63, 0x9a, 0x54, 0x0b, 0xcd,
];
/// SHA-256 of AMD's `ARK-Genoa` root certificate (self-signed, RSA-4096, RSASSA-PSS).
pub const ARK_GENOA_SHA256: [u8; 32] = [
    0x4c, 0x65, 0x98, 0xd1, 0x9c, 0x18, 0x71, 0x9c, 0x5d, 0xfd, 0x4a, 0x7d, 0x33, 0x5f, 0x67, 0x4e,
    0x5b, 0xfe, 0x1d, 0x8f, 0x80, 0x0c, 0xea, 0x2c, 0xf2, 0x70, 0xc1, 0x0d, 0x10, 0x3d, 0xb2, 0xf1,
];
/// SHA-256 of AMD's `ARK-Turin` root certificate (self-signed, RSA-4096, RSASSA-PSS).
pub const ARK_TURIN_SHA256: [u8; 32] = [
    0x1f, 0x08, 0x41, 0x61, 0xa4, 0x4b, 0xb6, 0xd9, 0x37, 0x78, 0xa9, 0x04, 0x87, 0x7d, 0x48, 0x19,
    0xca, 0xfa, 0x5d, 0x05, 0xef, 0x41, 0x93, 0xb2, 0xde, 0xd9, 0xdd, 0x9c, 0x73, 0xdd, 0x3f, 0x6a,
];

/// AMD's published certificates of each product, as AMD's key distribution service serves them
/// (`/vcek/v1/{product}/cert_chain` and `/vlek/v1/{product}/cert_chain`): the ASK, the ARK and
/// the ASVK. Carried so that a report with only its VCEK or VLEK verifies offline; a
/// certificate is used only if its SHA-256 is one of [`AMD_CERTIFICATE_SHA256`].
const AMD_CERTIFICATE_BUNDLES: [&[u8]; 3] = [
    include_bytes!("amd/milan.pem"),
    include_bytes!("amd/genoa.pem"),
    include_bytes!("amd/turin.pem"),
];

/// SHA-256 of each carried AMD certificate (hex): SEV-Milan, ARK-Milan, SEV-VLEK-Milan,
/// SEV-Genoa, ARK-Genoa, SEV-VLEK-Genoa, SEV-Turin, ARK-Turin, SEV-VLEK-Turin.
pub const AMD_CERTIFICATE_SHA256: [&str; 9] = [
    "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
];

/// The carried AMD certificates whose fingerprints are pinned, parsed once.
pub fn carried_amd_certificates() -> &'static [Cert] {
    static CARRIED: std::sync::LazyLock<Vec<Cert>> = std::sync::LazyLock::new(|| {
        AMD_CERTIFICATE_BUNDLES
            .iter()
            .filter_map(|bundle| Cert::parse_many(bundle).ok())
            .flatten()
            .filter(|cert| {
                AMD_CERTIFICATE_SHA256.contains(&hex::encode(cert.sha256_fingerprint()).as_str())
            })
            .collect()
    });
    &CARRIED
}

/// The built-in pinned root fingerprint of `product`'s ARK.
pub fn pinned_ark_sha256(product: Product) -> [u8; 32] {
    match product {
        Product::Milan => ARK_MILAN_SHA256,
        Product::Genoa => ARK_GENOA_SHA256,
        Product::Turin => ARK_TURIN_SHA256,
    }
}

/// Certificate extension OIDs AMD puts in VCEK and VLEK certificates.
mod oid {
    pub(super) const STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
    pub(super) const PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
    pub(super) const BOOTLOADER: &str = "1.3.6.1.4.1.3704.1.3.1";
    pub(super) const TEE: &str = "1.3.6.1.4.1.3704.1.3.2";
    pub(super) const SNP: &str = "1.3.6.1.4.1.3704.1.3.3";
    pub(super) const MICROCODE: &str = "1.3.6.1.4.1.3704.1.3.8";
    pub(super) const FMC: &str = "1.3.6.1.4.1.3704.1.3.9";
    pub(super) const HW_ID: &str = "1.3.6.1.4.1.3704.1.4";
    pub(super) const CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";
}

/// What a VCEK or VLEK certificate says about the key: the TCB it was derived for, the chip
/// (VCEK) or the cloud provider (VLEK), and the product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsementKeyInfo {
    /// The extension structure version (`1.3.6.1.4.1.3704.1.1`).
    pub struct_version: Option<u64>,
    /// The product name (`1.3.6.1.4.1.3704.1.2`), e.g. `Milan-B0`.
    pub product_name: Option<String>,
    /// FMC SPL (`.3.9`, Turin only).
    pub fmc: Option<u8>,
    /// Boot loader SPL (`.3.1`).
    pub bootloader: u8,
    /// TEE SPL (`.3.2`).
    pub tee: u8,
    /// SNP SPL (`.3.3`).
    pub snp: u8,
    /// Microcode SPL (`.3.8`).
    pub microcode: u8,
    /// The chip's hardware id (`.4`, VCEK only): 64 bytes, 8 on Turin.
    pub hw_id: Option<Vec<u8>>,
    /// The cloud provider's name (`.5`, VLEK only).
    pub csp_id: Option<String>,
}

impl EndorsementKeyInfo {
    /// Reads the AMD extensions of a VCEK or VLEK certificate. The SPL extensions are DER
    /// INTEGERs 0–255; the hardware id is the raw 64 (or 8) bytes, or those bytes inside a DER
    /// OCTET STRING (both encodings exist).
    pub fn from_cert(cert: &Cert) -> Result<Self, SnpError> {
        let who = cert.subject_cn();
        let spl = |oid: &str, name: &str| -> Result<Option<u8>, SnpError> {
            cert.extension(oid)
                .map(|value| {
                    der_small_uint(value).and_then(|v| u8::try_from(v).ok()).ok_or_else(|| {
                        SnpError::BadExtension(format!(
                            "{who} extension {oid} ({name} SPL) is not a DER INTEGER 0 to 255"
                        ))
                    })
                })
                .transpose()
        };
        let required = |oid: &str, name: &str| -> Result<u8, SnpError> {
            spl(oid, name)?.ok_or_else(|| {
                SnpError::BadExtension(format!(
                    "{who} certificate has no {name} SPL extension {oid}"
                ))
            })
        };
        let struct_version = cert.extension(oid::STRUCT_VERSION).and_then(der_small_uint);
        let product_name = cert.extension(oid::PRODUCT_NAME).and_then(der_ia5_string);
        let hw_id = cert
            .extension(oid::HW_ID)
            .map(|value| {
                hw_id(value).ok_or_else(|| {
                    SnpError::BadExtension(format!(
                        "{who} extension {} (hwID) is not 64 or 8 bytes",
                        oid::HW_ID
                    ))
                })
            })
            .transpose()?;
        let csp_id = cert.extension(oid::CSP_ID).and_then(der_ia5_string);
        Ok(Self {
            struct_version,
            product_name,
            fmc: spl(oid::FMC, "FMC")?,
            bootloader: required(oid::BOOTLOADER, "boot loader")?,
            tee: required(oid::TEE, "TEE")?,
            snp: required(oid::SNP, "SNP")?,
            microcode: required(oid::MICROCODE, "microcode")?,
            hw_id,
            csp_id,
        })
    }

    /// The certificate's TCB in the layout of `product`.
    pub fn tcb(&self, product: Product) -> TcbVersion {
        let fmc = if product.has_fmc() { Some(self.fmc.unwrap_or(0)) } else { None };
        TcbVersion::decode(
            TcbVersion::encode(fmc, self.bootloader, self.tee, self.snp, self.microcode),
            product.has_fmc(),
        )
    }
}

/// Reads a DER INTEGER of up to 8 content bytes that is not negative.
fn der_small_uint(value: &[u8]) -> Option<u64> {
    let (&tag, rest) = value.split_first()?;
    let (&len, content) = rest.split_first()?;
    if tag != 0x02 || usize::from(len) != content.len() || content.is_empty() || content.len() > 9 {
        return None;
    }
    if content.first().is_some_and(|&b| b & 0x80 != 0) {
        return None;
    }
    let mut out: u64 = 0;
    for &b in content {
        out = out.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some(out)
}

/// Reads a short DER IA5String or UTF8String.
fn der_ia5_string(value: &[u8]) -> Option<String> {
    let (&tag, rest) = value.split_first()?;
    let (&len, content) = rest.split_first()?;
    if !matches!(tag, 0x16 | 0x0C) || usize::from(len) != content.len() {
        return None;
    }
    String::from_utf8(content.to_vec()).ok()
}

/// The hwID extension value: the raw bytes, or a DER OCTET STRING around them.
fn hw_id(value: &[u8]) -> Option<Vec<u8>> {
    if matches!(value.len(), 64 | 8) {
        return Some(value.to_vec());
    }
    match value {
        [0x04, len, content @ ..]
            if usize::from(*len) == content.len() && matches!(content.len(), 64 | 8) =>
        {
            Some(content.to_vec())
        }
        _ => None,
    }
}

/// The role of an AMD certificate, from its subject CN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Ark(Product),
    Ask(Product),
    Asvk(Product),
    Vcek,
    Vlek,
}

fn role(cert: &Cert) -> Option<Role> {
    let cn = cert.subject_cn();
    match cn.as_str() {
        "SEV-VCEK" => return Some(Role::Vcek),
        "SEV-VLEK" => return Some(Role::Vlek),
        _ => {}
    }
    if let Some(name) = cn.strip_prefix("ARK-") {
        return Product::from_name(name).filter(|p| p.name() == name).map(Role::Ark);
    }
    if let Some(name) = cn.strip_prefix("SEV-VLEK-") {
        return Product::from_name(name).filter(|p| p.name() == name).map(Role::Asvk);
    }
    if let Some(name) = cn.strip_prefix("SEV-") {
        return Product::from_name(name).filter(|p| p.name() == name).map(Role::Ask);
    }
    None
}

/// Every AMD certificate available to this verification, sorted by role.
pub struct Certificates {
    leaves: Vec<(Cert, SigningKey)>,
    intermediates: Vec<(Cert, Product, SigningKey)>,
    arks: Vec<(Cert, Product)>,
    extra_roots: Vec<[u8; 32]>,
    test_roots: Vec<[u8; 32]>,
    crls: Vec<Crl>,
    /// The products of the ARKs and intermediates given (not the carried ones).
    given_products: Vec<Product>,
}

/// A verified chain: the signing key's certificate, the product, and what it says.
pub struct VerifiedKey {
    /// The VCEK or VLEK certificate.
    pub leaf: Cert,
    /// The product of the chain (from the ASK/ASVK and ARK names).
    pub product: Product,
    /// The leaf's AMD extensions.
    pub info: EndorsementKeyInfo,
    /// Whether a CRL of the chain's ARK was among the documents (and so was checked).
    pub crl_checked: bool,
    /// Where the chain's ARK comes from: AMD's pinned root, a root of the instance, or a test
    /// root of the instance.
    pub origin: AnchorOrigin,
}

impl Certificates {
    /// Collects the X.509 certificates of the collateral, of `carried` (certificates that came
    /// inside the evidence), of the instance's extra SNP anchors and test roots, and AMD's
    /// published ASKs, ARKs and ASVKs ([`carried_amd_certificates`], after the others: an
    /// intermediate given with the evidence is tried first). Blobs that
    /// are not X.509 or not AMD certificates are not used (they may belong to another TEE); a
    /// check that needs a certificate fails later, naming it. An extra anchor or test root that
    /// is not a certificate is an error: it was meant to be trusted, so it is not silently
    /// ignored.
    pub fn collect(inputs: &Inputs<'_>, carried: &[Vec<u8>]) -> Result<Self, SnpError> {
        let mut out = Self {
            leaves: Vec::new(),
            intermediates: Vec::new(),
            arks: Vec::new(),
            extra_roots: Vec::new(),
            test_roots: Vec::new(),
            crls: inputs.collateral.documents.iter().flat_map(|doc| Crl::parse_all(doc)).collect(),
            given_products: Vec::new(),
        };
        let lists = [
            ("trust anchor", inputs.anchors.roots(TeeKind::Snp)),
            ("test root", inputs.anchors.test_roots(TeeKind::Snp)),
        ];
        let mut anchor_certs = Vec::new();
        for (list, anchors) in lists {
            for (index, anchor) in anchors.iter().enumerate() {
                let parsed = Cert::parse_many(anchor).map_err(|e| SnpError::Anchor {
                    list,
                    index,
                    reason: e.to_string(),
                })?;
                for cert in parsed {
                    let fingerprints = match list {
                        "test root" => &mut out.test_roots,
                        _ => &mut out.extra_roots,
                    };
                    fingerprints.push(cert.sha256_fingerprint());
                    anchor_certs.push(cert);
                }
            }
        }
        let given = inputs.collateral.certificates.iter().chain(carried.iter());
        let parsed: Vec<Cert> =
            given.filter_map(|der| Cert::from_der(der).ok()).chain(anchor_certs).collect();
        out.given_products = parsed
            .iter()
            .filter_map(|cert| match role(cert) {
                Some(Role::Ark(p) | Role::Ask(p) | Role::Asvk(p)) => Some(p),
                _ => None,
            })
            .collect();
        for cert in parsed.into_iter().chain(carried_amd_certificates().iter().cloned()) {
            match role(&cert) {
                Some(Role::Vcek) => out.leaves.push((cert, SigningKey::Vcek)),
                Some(Role::Vlek) => out.leaves.push((cert, SigningKey::Vlek)),
                Some(Role::Ask(p)) => out.intermediates.push((cert, p, SigningKey::Vcek)),
                Some(Role::Asvk(p)) => out.intermediates.push((cert, p, SigningKey::Vlek)),
                Some(Role::Ark(p)) if !out.arks.iter().any(|(c, _)| c.der() == cert.der()) => {
                    out.arks.push((cert, p));
                }
                Some(Role::Ark(_)) | None => {}
            }
        }
        Ok(out)
    }

    /// The VCEK or VLEK certificates given.
    pub fn leaves(&self, kind: SigningKey) -> impl Iterator<Item = &Cert> {
        self.leaves.iter().filter(move |(_, k)| *k == kind).map(|(c, _)| c)
    }

    /// The product of the ARKs and intermediates given (not the carried ones), when they all
    /// agree (for messages).
    pub fn only_product(&self) -> Option<Product> {
        let mut products = self.given_products.iter().copied();
        let first = products.next()?;
        products.all(|p| p == first).then_some(first)
    }

    /// Whether `fingerprint` is a trusted root for `product`: AMD's pinned ARK of that product,
    /// or an extra SNP anchor or test root of the instance.
    pub fn is_trusted_root(&self, product: Product, fingerprint: &[u8; 32]) -> bool {
        self.origin(product, fingerprint).is_some()
    }

    /// Where the root with `fingerprint` comes from, if it is trusted for `product`: a test
    /// root first (the conservative answer when a root is in several lists), then AMD's pin.
    fn origin(&self, product: Product, fingerprint: &[u8; 32]) -> Option<AnchorOrigin> {
        if self.test_roots.contains(fingerprint) {
            Some(AnchorOrigin::Test)
        } else if pinned_ark_sha256(product) == *fingerprint {
            Some(AnchorOrigin::Vendor)
        } else if self.extra_roots.contains(fingerprint) {
            Some(AnchorOrigin::Instance)
        } else {
            None
        }
    }

    /// Checks `leaf` ← intermediate (ASK for a VCEK, ASVK for a VLEK) ← ARK at `now_unix`,
    /// the ARK pinned for its product, and that the product names agree.
    pub fn verify_leaf(
        &self,
        leaf: &Cert,
        kind: SigningKey,
        now_unix: i64,
    ) -> Result<VerifiedKey, SnpError> {
        let issuer_cn = leaf.issuer_cn();
        let candidates: Vec<&(Cert, Product, SigningKey)> = self
            .intermediates
            .iter()
            .filter(|(c, _, k)| {
                *k == kind
                    && c.parsed().tbs_certificate().subject()
                        == leaf.parsed().tbs_certificate().issuer()
            })
            .collect();
        let Some((intermediate, product, _)) = candidates.first().copied() else {
            return Err(SnpError::MissingIssuer {
                leaf: kind.upper(),
                issuer: issuer_cn,
                role: match kind {
                    SigningKey::Vcek => "ASK",
                    SigningKey::Vlek => "ASVK",
                },
            });
        };
        let product = *product;
        let ark = self
            .arks
            .iter()
            .filter(|(_, p)| *p == product)
            .find(|(c, _)| {
                c.parsed().tbs_certificate().subject()
                    == intermediate.parsed().tbs_certificate().issuer()
            })
            .map(|(c, _)| c)
            .ok_or(SnpError::MissingArk(product.name()))?;
        let fingerprint = ark.sha256_fingerprint();
        let Some(origin) = self.origin(product, &fingerprint) else {
            return Err(SnpError::UntrustedArk {
                subject: ark.subject_cn(),
                fingerprint: hex::encode(fingerprint),
            });
        };
        let chain = [leaf.clone(), intermediate.clone(), ark.clone()];
        verify_chain(&chain, &[fingerprint], now_unix).map_err(SnpError::Chain)?;
        let info = EndorsementKeyInfo::from_cert(leaf)?;
        if let Some(name) = &info.product_name {
            match Product::from_name(name) {
                Some(p) if p == product => {}
                _ => {
                    return Err(SnpError::ProductMismatch(format!(
                        "the {} names product {name:?} but its chain is {}'s",
                        kind.upper(),
                        product.name()
                    )));
                }
            }
        }
        if product.has_fmc() != info.fmc.is_some() {
            return Err(SnpError::ProductMismatch(format!(
                "the {} {} an FMC SPL extension, which {} certificates {}",
                kind.upper(),
                if info.fmc.is_some() { "has" } else { "lacks" },
                product.name(),
                if product.has_fmc() { "carry" } else { "do not carry" }
            )));
        }
        let crl_checked = check_crls(&self.crls, ark, intermediate, product, now_unix)?;
        Ok(VerifiedKey { leaf: leaf.clone(), product, info, crl_checked, origin })
    }
}

/// A certificate revocation list as AMD KDS serves it (`/vcek/v1/{product}/crl`): signed by the
/// product's ARK, listing revoked ASK/ASVK certificates.
struct Crl {
    der: Vec<u8>,
    parsed: CertificateList<Raw>,
}

impl Crl {
    /// The CRLs in a document: DER, or PEM `X509 CRL` blocks. Anything else is not a CRL and
    /// yields none (documents of other kinds share the collateral).
    fn parse_all(doc: &[u8]) -> Vec<Crl> {
        use base64::Engine as _;
        const BEGIN: &str = "-----BEGIN X509 CRL-----";
        const END: &str = "-----END X509 CRL-----";
        let Ok(text) = std::str::from_utf8(doc) else {
            return Crl::from_der(doc).into_iter().collect();
        };
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let block = rest.get(start..).unwrap_or_default();
            let Some(end) = block.find(END) else { break };
            let body: String = block
                .get(BEGIN.len()..end)
                .unwrap_or_default()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body)
                && let Some(crl) = Crl::from_der(&der)
            {
                out.push(crl);
            }
            rest = block.get(end.saturating_add(END.len())..).unwrap_or_default();
        }
        out
    }

    fn from_der(der: &[u8]) -> Option<Crl> {
        use der::Decode as _;
        let parsed = CertificateList::<Raw>::from_der(der).ok()?;
        Some(Crl { der: der.to_vec(), parsed })
    }

    /// The to-be-signed bytes as received.
    fn tbs(&self) -> Option<&[u8]> {
        use der::{Decode as _, Reader as _};
        let mut reader = der::SliceReader::new(&self.der).ok()?;
        der::Header::decode(&mut reader).ok()?;
        let start = usize::try_from(reader.position()).ok()?;
        let inner = der::Header::decode(&mut reader).ok()?;
        let body = usize::try_from(inner.length()).ok()?;
        let end = usize::try_from(reader.position()).ok()?.checked_add(body)?;
        self.der.get(start..end)
    }
}

/// Checks every CRL the ARK issued: its signature, that it is current at `now_unix`, and that
/// it does not list `intermediate`. Returns whether any was checked.
fn check_crls(
    crls: &[Crl],
    ark: &Cert,
    intermediate: &Cert,
    product: Product,
    now_unix: i64,
) -> Result<bool, SnpError> {
    let name = format!("ARK-{} CRL", product.name());
    let fetch =
        format!("fetch a current one from https://kdsintf.amd.com/vcek/v1/{}/crl", product.name());
    let mut checked = false;
    for crl in crls
        .iter()
        .filter(|c| c.parsed.tbs_cert_list.issuer == *ark.parsed().tbs_certificate().subject())
    {
        let alg = &crl.parsed.signature_algorithm;
        let params =
            alg.parameters.as_ref().and_then(|p| der::Encode::to_der(p).ok()).unwrap_or_default();
        let algorithm =
            SignatureAlgorithm::from_oid(&alg.oid.to_string(), &params).ok_or_else(|| {
                SnpError::Crl(format!(
                    "the {name} uses an unsupported signature algorithm {}",
                    alg.oid
                ))
            })?;
        let key = ark.public_key().map_err(SnpError::Chain)?;
        let signature = crl.parsed.signature.raw_bytes();
        let tbs = crl.tbs().ok_or_else(|| SnpError::Crl(format!("the {name} is malformed")))?;
        key.verify(algorithm, tbs, signature).map_err(|_| {
            SnpError::Crl(format!("the {name}'s signature does not verify with the ARK"))
        })?;
        let tbs_list = &crl.parsed.tbs_cert_list;
        let this_update = unix(tbs_list.this_update.to_unix_duration());
        if now_unix < this_update {
            return Err(SnpError::Crl(format!(
                "the {name} is not valid before {}",
                rfc3339(this_update)
            )));
        }
        let next_update = tbs_list
            .next_update
            .map(|t| unix(t.to_unix_duration()))
            .ok_or_else(|| SnpError::Crl(format!("the {name} has no nextUpdate")))?;
        if now_unix > next_update {
            return Err(SnpError::Crl(format!(
                "the {name} expired at {} ({fetch})",
                rfc3339(next_update)
            )));
        }
        let serial = intermediate.parsed().tbs_certificate().serial_number().as_bytes();
        let revoked = tbs_list
            .revoked_certificates
            .iter()
            .flatten()
            .any(|r| r.serial_number.as_bytes() == serial);
        if revoked {
            return Err(SnpError::Revoked { subject: intermediate.subject_cn(), crl: name });
        }
        checked = true;
    }
    Ok(checked)
}

fn unix(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
