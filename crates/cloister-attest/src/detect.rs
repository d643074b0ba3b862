//! Finding the attestation interface of the machine: configfs-tsm first (it covers TDX, SNP and
//! CCA and yields TDX quotes), then Gramine's `/dev/attestation`, `/dev/nsm`, `/dev/csv-guest`,
//! `/dev/sev-guest`. `/dev/tdx_guest` alone is reported, not used (see [`crate::TdxGuestDevice`]).

use std::path::PathBuf;

use crate::{
    AttestError, Attester, ConfigFsTsm, CsvGuestDevice, GramineAttestation, NsmDevice,
    SevGuestDevice, TdxGuestDevice,
};

/// Where [`detect_in`] looks; [`Default`] is the real locations.
#[derive(Clone, Debug)]
pub struct DetectPaths {
    /// configfs-tsm's report directory.
    pub tsm_report: PathBuf,
    /// Gramine's attestation directory.
    pub attestation_dir: PathBuf,
    /// The Nitro Secure Module.
    pub nsm: PathBuf,
    /// The Hygon CSV guest device.
    pub csv_guest: PathBuf,
    /// The SEV-SNP guest device.
    pub sev_guest: PathBuf,
    /// The TDX guest device.
    pub tdx_guest: PathBuf,
}

impl Default for DetectPaths {
    fn default() -> Self {
        Self {
            tsm_report: ConfigFsTsm::DEFAULT_ROOT.into(),
            attestation_dir: GramineAttestation::DEFAULT_DIR.into(),
            nsm: NsmDevice::DEFAULT_PATH.into(),
            csv_guest: CsvGuestDevice::DEFAULT_PATH.into(),
            sev_guest: SevGuestDevice::DEFAULT_PATH.into(),
            tdx_guest: TdxGuestDevice::DEFAULT_PATH.into(),
        }
    }
}

/// The attester for this machine, looking at the real locations.
pub fn detect() -> Result<Box<dyn Attester>, AttestError> {
    detect_in(&DetectPaths::default())
}

/// The attester for the first interface found under `paths`; if none is usable, an error that
/// lists every place looked at and what was (not) there.
pub fn detect_in(paths: &DetectPaths) -> Result<Box<dyn Attester>, AttestError> {
    let mut looked_for = Vec::new();

    if paths.tsm_report.is_dir() {
        match ConfigFsTsm::probe(&paths.tsm_report) {
            Ok(tsm) => return Ok(Box::new(tsm)),
            Err(e) => looked_for.push(format!(
                "{} (configfs-tsm): present but unusable: {e}",
                paths.tsm_report.display()
            )),
        }
    } else {
        looked_for.push(format!(
            "{} (configfs-tsm: TDX, SEV-SNP, CCA; Linux >= 6.7): not present",
            paths.tsm_report.display()
        ));
    }

    if paths.attestation_dir.join("attestation_type").exists() {
        let gramine = GramineAttestation::new(&paths.attestation_dir);
        match gramine.check_type() {
            Ok(()) => return Ok(Box::new(gramine)),
            Err(e) => looked_for.push(format!(
                "{} (Gramine SGX): present but unusable: {e}",
                paths.attestation_dir.display()
            )),
        }
    } else {
        looked_for.push(format!(
            "{} (Gramine SGX): no attestation_type file",
            paths.attestation_dir.display()
        ));
    }

    if paths.nsm.exists() {
        return Ok(Box::new(NsmDevice::new(&paths.nsm)));
    }
    looked_for.push(format!("{} (AWS Nitro Enclaves): not present", paths.nsm.display()));

    if paths.csv_guest.exists() {
        return Ok(Box::new(CsvGuestDevice::new(&paths.csv_guest)));
    }
    looked_for.push(format!("{} (Hygon CSV): not present", paths.csv_guest.display()));

    if paths.sev_guest.exists() {
        return Ok(Box::new(SevGuestDevice::new(&paths.sev_guest)));
    }
    looked_for.push(format!("{} (SEV-SNP): not present", paths.sev_guest.display()));

    if paths.tdx_guest.exists() {
        looked_for.push(format!(
            "{} (TDX): present, but it only gives a TDREPORT, which cannot be verified \
             remotely; a TDX quote needs configfs-tsm (Linux >= 6.7) and the host's QGS",
            paths.tdx_guest.display()
        ));
    } else {
        looked_for.push(format!("{} (TDX): not present", paths.tdx_guest.display()));
    }

    Err(AttestError::NoTee { looked_for })
}
