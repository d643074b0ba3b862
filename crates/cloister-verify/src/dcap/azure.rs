//! Azure TDX confidential VM evidence: an HCL report holding a TD report, the TD quote of that
//! TD report, and a vTPM quote signed by the attestation key of the HCL variable data.
//!
//! Evidence is trustee's Azure TDX vTPM JSON (`{"version", "hcl_report", "td_quote",
//! "tpm_quote"}`), recognised by content. The HCL report and TPM quote formats and checks are
//! shared with the SNP variant ([`crate::snp::azure`]). Checks, all mandatory, in this order:
//! 1. the TD quote verifies as any TDX quote (signatures, QE binding, PCK chain to the Intel
//!    root, and the TCB appraisal when collateral for its FMSPC is given; else `unknown`);
//! 2. the HCL report names a TDX hardware report (type 4) and SHA-256;
//! 3. SHA-256 of the HCL variable data equals the first 32 bytes of the **TD quote's**
//!    `report_data` and the rest is zero (the TD report inside the HCL report is only
//!    MAC-protected, so the signed quote is what binds the variable data);
//! 4. the vTPM quote verifies with the `HCLAkPub` key of the variable data and its PCR digest
//!    matches the PCR values given.
//!
//! As for SNP, `report_data` of the claims is the vTPM quote's `extraData` (the caller's nonce),
//! the only value an Azure guest can choose; the TD quote's own report data is kept as
//! `tdx.azure.td_quote_report_data`, beside the HCL/TPM fields under `tdx.azure`.

use cloister_types::{Claims, Hex};

use super::{DcapError, DcapTee};
use crate::inputs::Inputs;
use crate::snp::azure::{self, AzureError, HCL_TYPE_TDX};

fn err(source: AzureError) -> DcapError {
    DcapError::Azure { tee: DcapTee::Tdx, source }
}

/// Whether the TDX driver should read `evidence` as Azure vTPM evidence.
pub(super) fn looks_like_azure(evidence: &[u8]) -> bool {
    azure::looks_like_azure(evidence)
}

/// The TD quote inside Azure TDX evidence, for collateral lookups.
pub(super) fn td_quote(evidence: &[u8]) -> Option<Vec<u8>> {
    azure::parse(evidence).ok().and_then(|e| e.td_quote)
}

/// Verifies Azure TDX vTPM evidence (see the module documentation) and returns the TD quote's
/// claims with `report_data` the vTPM quote's `extraData` and `tdx.azure` added.
pub(super) fn verify(evidence: &[u8], inputs: &Inputs<'_>) -> Result<Claims, DcapError> {
    let parsed = azure::parse(evidence).map_err(err)?;
    if parsed.vcek.is_some() {
        return Err(err(AzureError::Malformed("a VCEK belongs to SNP evidence, not TDX".into())));
    }
    let td_quote = parsed
        .td_quote
        .as_deref()
        .ok_or_else(|| err(AzureError::Malformed("Azure TDX evidence has no td_quote".into())))?;
    parsed.hcl.expect_type(HCL_TYPE_TDX).map_err(err)?;
    let mut claims = super::verify(DcapTee::Tdx, td_quote, inputs)?;
    parsed.hcl.check_binding("TD quote", &claims.report_data.0).map_err(err)?;
    let verified = parsed.quote.verify(&parsed.hcl).map_err(err)?;
    let quote_report_data =
        std::mem::replace(&mut claims.report_data, Hex(verified.attest.extra_data.clone()));
    if let Some(serde_json::Value::Object(map)) = claims.vendor.get_mut("tdx") {
        let mut az = azure::vendor_json(&parsed.hcl, &parsed.quote, &verified);
        if let serde_json::Value::Object(az_map) = &mut az {
            az_map.insert("td_quote_report_data".into(), hex::encode(&quote_report_data.0).into());
        }
        map.insert("azure".to_owned(), az);
    }
    Ok(claims)
}
