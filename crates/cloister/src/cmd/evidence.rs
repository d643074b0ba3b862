//! `cloister evidence`: collect, export and verify TEE evidence.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Collect evidence from the TEE this command runs in (configfs-tsm, /dev/sev-guest,
    /// Gramine's /dev/attestation, /dev/nsm, the Hygon CSV guest device), bound to the given
    /// runtime data, and print it as unified evidence JSON.
    Collect {
        /// Runtime data JSON: {"nonce", "hpke_pk", "tls_spki_sha256", "receipt_pk"}; its
        /// SHA-512 becomes the evidence's report_data.
        #[arg(long)]
        runtime_data: PathBuf,
        /// Where to write the unified evidence (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Verify vendor evidence of one TEE and print its normalised claims as JSON.
    ///
    /// Checks the whole signature chain to the vendor root, the structure and the TCB, exactly
    /// as the attestation service does, but binds the evidence to nothing: use it to debug
    /// attestation, not to decide whom to trust. Files may be raw binary, hex or base64.
    Verify {
        /// sgx, tdx, snp, csv, cca, virtcca, nitro, nvidia, psa or android.
        #[arg(long, required_unless_present = "unified")]
        tee: Option<String>,
        /// The vendor evidence (quote, report, token, attestation document, SPDM transcript).
        #[arg(long, required_unless_present = "unified")]
        evidence: Option<PathBuf>,
        /// Unified evidence JSON instead (what `evidence collect` and the worker send): verified
        /// as the service does, report_data binding and additional (GPU) evidence included;
        /// prints the claims of every component. A Unified Attestation Report (UAR JSON) is
        /// read too: its evidence verified, and its stated results compared with the claims.
        #[arg(long, conflicts_with_all = ["tee", "evidence"])]
        unified: Option<PathBuf>,
        /// Collateral: a DCAP bundle, Intel PCS/PCCS responses, CRLs, NVIDIA RIMs. Repeatable.
        #[arg(long)]
        collateral: Vec<PathBuf>,
        /// Certificates: VCEK/VLEK/ASK/ARK, Hygon HRK/HSK/CEK, NVIDIA chains (PEM, DER or
        /// concatenated PEM). Repeatable.
        #[arg(long)]
        cert: Vec<PathBuf>,
        /// Extra trust anchors: root certificates, CCA platform keys (CPAK). Repeatable.
        #[arg(long)]
        trust_anchor: Vec<PathBuf>,
        /// Verification time (RFC 3339); defaults to now. Collateral and short-lived
        /// certificates are time-bound, so pin it when re-checking old evidence.
        #[arg(long)]
        at: Option<String>,
        /// With --unified and a Unified Attestation Report that states an appraisal: the issuing
        /// instance's JWKS, to check the report's EAR token (required for such a report).
        #[arg(long, requires = "unified")]
        jwks: Option<PathBuf>,
        /// Print one compact JSON line, also on failure (`{"error": "…"}`).
        #[arg(long)]
        json: bool,
    },
    /// Write an appraisal (the EAR token the service issued for unified evidence) as an IETF
    /// EAR or as a Unified Attestation Report (UAR JSON, the Ant Group / SecretFlow format).
    ///
    /// The token must verify with the issuing instance's JWKS and be the appraisal of the given
    /// evidence. A UAR carries the evidence and the results; `evidence verify --unified` reads
    /// it back. docs/attestation.md says which UAR fields are filled and how.
    Export {
        /// `ear` or `uar`.
        #[arg(long, value_parser = ["ear", "uar"])]
        format: String,
        /// The EAR token (compact JWS) the service returned for the evidence.
        #[arg(long)]
        ear: PathBuf,
        /// The issuing instance's JWKS (`GET /v1/instances/{id}/jwks.json`).
        #[arg(long)]
        jwks: PathBuf,
        /// The unified evidence the token appraised.
        #[arg(long)]
        evidence: PathBuf,
        /// Collateral to verify the evidence with (as `evidence verify`). Repeatable.
        #[arg(long)]
        collateral: Vec<PathBuf>,
        /// Certificates to verify the evidence with (as `evidence verify`). Repeatable.
        #[arg(long)]
        cert: Vec<PathBuf>,
        /// Extra trust anchors (a sim platform key for sim evidence). Repeatable.
        #[arg(long)]
        trust_anchor: Vec<PathBuf>,
        /// Verification time of the token and the evidence (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
        /// Where to write it (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub(crate) fn run(command: EvidenceCommand) -> Result<()> {
    match command {
        EvidenceCommand::Collect { runtime_data, output } => {
            let json = cloister::evidence::collect(&runtime_data)?;
            match output {
                Some(path) => std::fs::write(&path, json + "\n")
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{json}"),
            }
            Ok(())
        }
        EvidenceCommand::Export {
            format,
            ear,
            jwks,
            evidence,
            collateral,
            cert,
            trust_anchor,
            at,
            output,
        } => {
            let at_unix = match at {
                Some(text) => cloister::evidence::parse_time(&text)?,
                None => cloister_sign::unix_now() as i64,
            };
            let format = match format.as_str() {
                "uar" => cloister::evidence::ExportFormat::Uar,
                _ => cloister::evidence::ExportFormat::Ear,
            };
            let inputs = cloister::evidence::ExportInputs {
                collateral: &collateral,
                certs: &cert,
                trust_anchors: &trust_anchor,
            };
            let text =
                cloister::evidence::export(format, &ear, &jwks, &evidence, &inputs, at_unix)?;
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        EvidenceCommand::Verify {
            tee,
            evidence,
            unified,
            collateral,
            cert,
            trust_anchor,
            jwks,
            at,
            json,
        } => {
            let at_unix = match at {
                Some(text) => cloister::evidence::parse_time(&text)?,
                None => cloister_sign::unix_now() as i64,
            };
            let outcome = match (unified, tee, evidence) {
                (Some(path), _, _) => cloister::evidence::verify_unified(
                    &path,
                    &collateral,
                    &cert,
                    &trust_anchor,
                    jwks.as_deref(),
                    at_unix,
                )?,
                (None, Some(tee), Some(evidence)) => {
                    cloister::evidence::verify(&cloister::evidence::VerifyRequest {
                        tee: cloister::evidence::parse_tee(&tee)?,
                        evidence,
                        collateral,
                        certs: cert,
                        trust_anchors: trust_anchor,
                        at_unix,
                    })?
                }
                _ => anyhow::bail!("give --tee and --evidence, or --unified"),
            };
            match outcome {
                cloister::evidence::Outcome::Verified(claims) => {
                    if json {
                        println!("{claims}");
                    } else {
                        println!("{}", serde_json::to_string_pretty(&claims)?);
                    }
                    Ok(())
                }
                cloister::evidence::Outcome::Refused(reason) => {
                    if json {
                        println!("{}", serde_json::json!({ "error": reason }));
                    }
                    eprintln!("{reason}");
                    std::process::exit(1);
                }
            }
        }
    }
}
