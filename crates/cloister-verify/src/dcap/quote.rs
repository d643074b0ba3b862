//! Bounds-checked parser of Intel DCAP quotes (SGX v3/v4, TDX v4/v5), written for untrusted input.
//!
//! Layout (little-endian): a 48-byte header; the report body (v5 first has a body type u16 and
//! a body size u32); a u32 length and the authentication data: the ECDSA-P256 quote signature
//! (`r || s`), the attestation public key (`x || y`), then the certification data. In v3 the QE
//! report, its signature, the QE authentication data and a type-5 certification data (the PCK
//! chain as PEM) follow directly; in v4/v5 a type-6 certification data wraps the same fields.
//! The authentication data's length ends the quote: bytes after it (quote buffers larger than
//! the quote, padding, test-suite framing) are not signed by anyone, so they are never read,
//! only counted ([`Quote::trailing`]), and the signed structure is what gets verified
//! ([`Quote::quote`]).

/// Intel's QE vendor id (939a7233-f79c-4ca9-940a-0db3957f0607).
pub(crate) const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];

/// TEE type of an SGX quote.
pub(crate) const TEE_TYPE_SGX: u32 = 0;
/// TEE type of a TDX quote.
pub(crate) const TEE_TYPE_TDX: u32 = 0x81;

const SGX_REPORT_LEN: usize = 384;
const TD10_REPORT_LEN: usize = 584;
const TD15_REPORT_LEN: usize = 648;
const ECDSA_P256_KEY_TYPE: u16 = 2;
const CERT_DATA_PCK_CHAIN: u16 = 5;
const CERT_DATA_QE_REPORT: u16 = 6;

/// The quote header.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub version: u16,
    pub attestation_key_type: u16,
    pub tee_type: u32,
    pub qe_svn: u16,
    pub pce_svn: u16,
    pub qe_vendor_id: [u8; 16],
    pub user_data: [u8; 20],
}

/// An SGX enclave report (the quoted enclave's, or the QE's).
#[derive(Clone, Debug)]
pub(crate) struct SgxReport {
    pub cpu_svn: [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: [u8; 16],
    pub attributes: [u8; 16],
    pub mr_enclave: [u8; 32],
    pub mr_signer: [u8; 32],
    pub config_id: [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: [u8; 16],
    pub report_data: [u8; 64],
}

/// A TD report body (TDX 1.0, or 1.5 with the two extra fields).
#[derive(Clone, Debug)]
pub(crate) struct TdReport {
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: [u8; 8],
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    /// TDX 1.5 (quote v5, body type 3): `TEE_TCB_SVN2` and `MRSERVICETD`.
    pub td15: Option<([u8; 16], [u8; 48])>,
}

/// The quoted report body.
#[derive(Clone, Debug)]
pub(crate) enum Body {
    Sgx(Box<SgxReport>),
    Td(Box<TdReport>),
}

/// A parsed quote, with the byte ranges the checks need.
#[derive(Clone, Debug)]
pub(crate) struct Quote<'a> {
    pub header: Header,
    /// v5 body type (1 SGX, 2 TDX 1.0, 3 TDX 1.5); `None` before v5.
    pub body_type: Option<u16>,
    pub body: Body,
    /// Header and body: what the attestation key signs.
    pub signed: &'a [u8],
    pub signature: &'a [u8],
    pub attestation_key: &'a [u8],
    /// The QE report as signed by the PCK key.
    pub qe_report_raw: &'a [u8],
    pub qe_report: SgxReport,
    pub qe_report_signature: &'a [u8],
    pub qe_auth_data: &'a [u8],
    /// The PCK certificate chain, PEM (trailing NUL bytes removed).
    pub pck_chain_pem: &'a [u8],
    /// The quote itself: header, body and authentication data, without what followed it.
    pub quote: &'a [u8],
    /// How many bytes followed the authentication data (never interpreted).
    pub trailing: usize,
}

/// A reader that never reads past its slice.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, pos: 0, what }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end =
            self.pos.checked_add(n).filter(|&end| end <= self.bytes.len()).ok_or_else(|| {
                format!(
                    "{} is truncated: {field} needs {n} bytes at offset {}, {} left",
                    self.what,
                    self.pos,
                    self.bytes.len().saturating_sub(self.pos)
                )
            })?;
        let out =
            self.bytes.get(self.pos..end).ok_or_else(|| format!("{} is truncated", self.what))?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N], String> {
        let slice = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u16(&mut self, field: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }
}

/// Why a quote could not be parsed.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Structurally broken (truncated, lengths that do not add up).
    Malformed(String),
    /// Well-formed but of a kind this verifier does not handle.
    Unsupported(String),
}

impl From<String> for ParseError {
    fn from(value: String) -> Self {
        Self::Malformed(value)
    }
}

fn parse_header(r: &mut Reader<'_>) -> Result<Header, ParseError> {
    Ok(Header {
        version: r.u16("version")?,
        attestation_key_type: r.u16("attestation key type")?,
        tee_type: r.u32("TEE type")?,
        qe_svn: r.u16("QE SVN")?,
        pce_svn: r.u16("PCE SVN")?,
        qe_vendor_id: r.array("QE vendor id")?,
        user_data: r.array("user data")?,
    })
}

/// Parses a 384-byte SGX report.
pub(crate) fn parse_sgx_report(bytes: &[u8]) -> Result<SgxReport, String> {
    if bytes.len() != SGX_REPORT_LEN {
        return Err(format!("SGX report is {} bytes, not {SGX_REPORT_LEN}", bytes.len()));
    }
    let mut r = Reader::new(bytes, "SGX report");
    let cpu_svn = r.array("CPUSVN")?;
    let misc_select = r.u32("MISCSELECT")?;
    r.take(12, "reserved")?;
    let isv_ext_prod_id = r.array("ISVEXTPRODID")?;
    let attributes = r.array("ATTRIBUTES")?;
    let mr_enclave = r.array("MRENCLAVE")?;
    r.take(32, "reserved")?;
    let mr_signer = r.array("MRSIGNER")?;
    r.take(32, "reserved")?;
    let config_id = r.array("CONFIGID")?;
    let isv_prod_id = r.u16("ISVPRODID")?;
    let isv_svn = r.u16("ISVSVN")?;
    let config_svn = r.u16("CONFIGSVN")?;
    r.take(42, "reserved")?;
    let isv_family_id = r.array("ISVFAMILYID")?;
    let report_data = r.array("REPORTDATA")?;
    Ok(SgxReport {
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
    })
}

fn parse_td_report(bytes: &[u8], td15: bool) -> Result<TdReport, String> {
    let mut r = Reader::new(bytes, "TD report");
    let mut report = TdReport {
        tee_tcb_svn: r.array("TEE_TCB_SVN")?,
        mr_seam: r.array("MRSEAM")?,
        mr_signer_seam: r.array("MRSIGNERSEAM")?,
        seam_attributes: r.array("SEAMATTRIBUTES")?,
        td_attributes: r.array("TDATTRIBUTES")?,
        xfam: r.array("XFAM")?,
        mr_td: r.array("MRTD")?,
        mr_config_id: r.array("MRCONFIGID")?,
        mr_owner: r.array("MROWNER")?,
        mr_owner_config: r.array("MROWNERCONFIG")?,
        rtmr: [r.array("RTMR0")?, r.array("RTMR1")?, r.array("RTMR2")?, r.array("RTMR3")?],
        report_data: r.array("REPORTDATA")?,
        td15: None,
    };
    if td15 {
        report.td15 = Some((r.array("TEE_TCB_SVN2")?, r.array("MRSERVICETD")?));
    }
    if !r.rest().is_empty() {
        return Err(format!("TD report has {} unexpected bytes", r.rest().len()));
    }
    Ok(report)
}

/// Parses a DCAP quote. Checks structure only: no signature, key or certificate.
pub(crate) fn parse(bytes: &[u8]) -> Result<Quote<'_>, ParseError> {
    let mut r = Reader::new(bytes, "quote");
    let header = parse_header(&mut r)?;
    if header.attestation_key_type != ECDSA_P256_KEY_TYPE {
        return Err(ParseError::Unsupported(format!(
            "attestation key type {} (only 2, ECDSA P-256, is supported)",
            header.attestation_key_type
        )));
    }
    let (body_type, body_len) = match (header.version, header.tee_type) {
        (3 | 4, TEE_TYPE_SGX) => (None, SGX_REPORT_LEN),
        (4, TEE_TYPE_TDX) => (None, TD10_REPORT_LEN),
        (5, TEE_TYPE_SGX | TEE_TYPE_TDX) => {
            let body_type = r.u16("body type")?;
            let body_size = r.u32("body size")?;
            let expected = match (body_type, header.tee_type) {
                (1, TEE_TYPE_SGX) => SGX_REPORT_LEN,
                (2, TEE_TYPE_TDX) => TD10_REPORT_LEN,
                (3, TEE_TYPE_TDX) => TD15_REPORT_LEN,
                (other, tee) => {
                    return Err(ParseError::Unsupported(format!(
                        "quote v5 body type {other} with TEE type {tee:#x}"
                    )));
                }
            };
            if usize::try_from(body_size).ok() != Some(expected) {
                return Err(ParseError::Malformed(format!(
                    "quote v5 body type {body_type} has size {body_size}, expected {expected}"
                )));
            }
            (Some(body_type), expected)
        }
        (version, tee) => {
            return Err(ParseError::Unsupported(format!(
                "quote version {version} with TEE type {tee:#x}"
            )));
        }
    };
    let body_bytes = r.take(body_len, "report body")?;
    let signed = bytes.get(..r.pos).ok_or_else(|| "quote is truncated".to_owned())?;
    let body = if header.tee_type == TEE_TYPE_SGX {
        Body::Sgx(Box::new(parse_sgx_report(body_bytes)?))
    } else {
        Body::Td(Box::new(parse_td_report(body_bytes, body_len == TD15_REPORT_LEN)?))
    };
    let auth_len = usize::try_from(r.u32("authentication data size")?)
        .map_err(|_| "authentication data size does not fit".to_owned())?;
    let auth = r.take(auth_len, "authentication data")?;
    let trailing = r.rest().len();
    let quote = bytes.get(..r.pos).ok_or_else(|| "quote is truncated".to_owned())?;

    let mut a = Reader::new(auth, "authentication data");
    let signature = a.take(64, "quote signature")?;
    let attestation_key = a.take(64, "attestation key")?;
    let qe = if header.version == 3 {
        let qe = parse_qe_certification(&mut a)?;
        if !a.rest().is_empty() {
            return Err(ParseError::Malformed(format!(
                "{} bytes follow the certification data",
                a.rest().len()
            )));
        }
        qe
    } else {
        let cert_type = a.u16("certification data type")?;
        let size = usize::try_from(a.u32("certification data size")?)
            .map_err(|_| "certification data size does not fit".to_owned())?;
        let data = a.take(size, "certification data")?;
        if !a.rest().is_empty() {
            return Err(ParseError::Malformed(format!(
                "{} bytes follow the certification data",
                a.rest().len()
            )));
        }
        if cert_type != CERT_DATA_QE_REPORT {
            return Err(ParseError::Unsupported(format!(
                "certification data type {cert_type} (a v{} quote needs type 6, QE report \
                 certification data)",
                header.version
            )));
        }
        let mut inner = Reader::new(data, "QE report certification data");
        let qe = parse_qe_certification(&mut inner)?;
        if !inner.rest().is_empty() {
            return Err(ParseError::Malformed(format!(
                "{} bytes follow the QE report certification data",
                inner.rest().len()
            )));
        }
        qe
    };
    Ok(Quote {
        header,
        body_type,
        body,
        signed,
        signature,
        attestation_key,
        qe_report_raw: qe.report_raw,
        qe_report: qe.report,
        qe_report_signature: qe.signature,
        qe_auth_data: qe.auth_data,
        pck_chain_pem: qe.pck_chain,
        quote,
        trailing,
    })
}

struct QeCertification<'a> {
    report_raw: &'a [u8],
    report: SgxReport,
    signature: &'a [u8],
    auth_data: &'a [u8],
    pck_chain: &'a [u8],
}

fn parse_qe_certification<'a>(r: &mut Reader<'a>) -> Result<QeCertification<'a>, ParseError> {
    let report_raw = r.take(SGX_REPORT_LEN, "QE report")?;
    let report = parse_sgx_report(report_raw)?;
    let signature = r.take(64, "QE report signature")?;
    let auth_len = usize::from(r.u16("QE authentication data size")?);
    let auth_data = r.take(auth_len, "QE authentication data")?;
    let cert_type = r.u16("PCK certification data type")?;
    let size = usize::try_from(r.u32("PCK certification data size")?)
        .map_err(|_| "PCK certification data size does not fit".to_owned())?;
    let data = r.take(size, "PCK certification data")?;
    if cert_type != CERT_DATA_PCK_CHAIN {
        return Err(ParseError::Unsupported(format!(
            "PCK certification data type {cert_type} (only type 5, the PCK certificate chain, is \
             supported)"
        )));
    }
    let end = data.iter().rposition(|&b| b != 0).map_or(0, |i| i.saturating_add(1));
    let pck_chain = data.get(..end).unwrap_or_default();
    Ok(QeCertification { report_raw, report, signature, auth_data, pck_chain })
}
