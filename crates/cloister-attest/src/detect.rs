//! Choosing the attestation interface: [`open`] opens the one a [`HardwareTee`] names (`auto`
//! looks for each in turn: configfs-tsm first, since it covers TDX, SNP and CCA and yields TDX
//! quotes, then Gramine's `/dev/attestation`, `/dev/nsm`, `/dev/csv-guest`, `/dev/sev-guest`).
//! `/dev/tdx_guest` alone is reported, not used (see [`crate::TdxGuestDevice`]). The simulated
//! TEE is never among the choices: it is chosen by name only, by the caller.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cloister_types::TeeKind;

use crate::{
    AttestError, Attester, ConfigFsTsm, CsvGuestDevice, GramineAttestation, NsmDevice,
    SevGuestDevice, TdxGuestDevice,
};

/// Where [`open`] looks; [`Default`] is the real locations.
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

/// The hardware TEE a worker attests with, as `--tee` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareTee {
    /// Whichever interface this machine has; never the simulated TEE.
    Auto,
    /// Intel TDX, through configfs-tsm.
    Tdx,
    /// AMD SEV-SNP, through configfs-tsm or `/dev/sev-guest`.
    Snp,
    /// Intel SGX under Gramine (`/dev/attestation`, DCAP).
    Sgx,
    /// AWS Nitro Enclaves (`/dev/nsm`).
    Nitro,
    /// Hygon CSV (`/dev/csv-guest`).
    Csv,
    /// Arm CCA realms, through configfs-tsm.
    Cca,
}

impl HardwareTee {
    /// Every choice, in the order `--help` lists them.
    pub const ALL: [HardwareTee; 7] = [
        HardwareTee::Auto,
        HardwareTee::Tdx,
        HardwareTee::Snp,
        HardwareTee::Sgx,
        HardwareTee::Nitro,
        HardwareTee::Csv,
        HardwareTee::Cca,
    ];

    /// The name `--tee` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            HardwareTee::Auto => "auto",
            HardwareTee::Tdx => "tdx",
            HardwareTee::Snp => "snp",
            HardwareTee::Sgx => "sgx",
            HardwareTee::Nitro => "nitro",
            HardwareTee::Csv => "csv",
            HardwareTee::Cca => "cca",
        }
    }

    /// The TEE it names (`None` for [`HardwareTee::Auto`]).
    pub fn tee(self) -> Option<TeeKind> {
        match self {
            HardwareTee::Auto => None,
            HardwareTee::Tdx => Some(TeeKind::Tdx),
            HardwareTee::Snp => Some(TeeKind::Snp),
            HardwareTee::Sgx => Some(TeeKind::Sgx),
            HardwareTee::Nitro => Some(TeeKind::Nitro),
            HardwareTee::Csv => Some(TeeKind::Csv),
            HardwareTee::Cca => Some(TeeKind::Cca),
        }
    }
}

impl fmt::Display for HardwareTee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`HardwareTee`].
#[derive(Debug, thiserror::Error)]
#[error("unknown TEE {0:?}; expected one of auto, tdx, snp, sgx, nitro, csv, cca")]
pub struct UnknownTee(String);

impl FromStr for HardwareTee {
    type Err = UnknownTee;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == name).ok_or_else(|| UnknownTee(name.into()))
    }
}

/// Where each interface is and how it is driven.
#[derive(Clone, Debug, Default)]
pub struct BackendOptions {
    /// Where the interfaces are.
    pub paths: DetectPaths,
    /// configfs-tsm: use this existing report directory for every report instead of creating
    /// one under `paths.tsm_report` (only root may create them; a privileged setup step can
    /// create one and hand its files to the worker's user).
    pub tsm_report_dir: Option<PathBuf>,
    /// SEV-SNP: the VMPL reports are requested for (0 when `None`).
    pub snp_vmpl: Option<u32>,
    /// SEV-SNP over `/dev/sev-guest`: plain reports, without the host's certificate table.
    pub snp_without_certificates: bool,
    /// Hygon CSV: the HSK and CEK certificates (DER) sent with every report.
    pub csv_certificates: Vec<Vec<u8>>,
}

impl BackendOptions {
    /// The defaults, looking under `paths`.
    pub fn at(paths: DetectPaths) -> Self {
        Self { paths, ..Self::default() }
    }
}

/// The attester for this machine, looking at the real locations.
pub fn detect() -> Result<Box<dyn Attester>, AttestError> {
    detect_in(&DetectPaths::default())
}

/// The attester for the first interface found under `paths`; if none is usable, an error that
/// lists every place looked at and what was (not) there.
pub fn detect_in(paths: &DetectPaths) -> Result<Box<dyn Attester>, AttestError> {
    open(HardwareTee::Auto, &BackendOptions::at(paths.clone()))
}

/// Opens the interface `choice` names, configured by `options`. When it is not there (or, for
/// `auto`, none is), the error lists every place looked at and what was (not) there; it never
/// falls back to another TEE, and never to the simulated one.
pub fn open(
    choice: HardwareTee,
    options: &BackendOptions,
) -> Result<Box<dyn Attester>, AttestError> {
    let mut looked_for = Vec::new();
    let probes: &[Probe] = match choice {
        HardwareTee::Auto => {
            &[Probe::Tsm(None), Probe::Gramine, Probe::Nsm, Probe::Csv, Probe::SevGuest]
        }
        HardwareTee::Tdx => &[Probe::Tsm(Some(TeeKind::Tdx))],
        HardwareTee::Snp => &[Probe::Tsm(Some(TeeKind::Snp)), Probe::SevGuest],
        HardwareTee::Cca => &[Probe::Tsm(Some(TeeKind::Cca))],
        HardwareTee::Sgx => &[Probe::Gramine],
        HardwareTee::Nitro => &[Probe::Nsm],
        HardwareTee::Csv => &[Probe::Csv],
    };
    for probe in probes {
        match probe.open(options) {
            Ok(attester) => return Ok(attester),
            Err(line) => looked_for.push(line),
        }
    }
    if matches!(choice, HardwareTee::Auto | HardwareTee::Tdx) {
        looked_for.push(tdx_guest_line(&options.paths));
    }
    Err(AttestError::NoTee { wanted: choice.tee(), looked_for })
}

/// One place an interface may be.
#[derive(Clone, Copy)]
enum Probe {
    /// configfs-tsm, for any provider or for the one of this TEE.
    Tsm(Option<TeeKind>),
    Gramine,
    Nsm,
    Csv,
    SevGuest,
}

impl Probe {
    /// The attester, or the line saying what was found instead.
    fn open(self, options: &BackendOptions) -> Result<Box<dyn Attester>, String> {
        let paths = &options.paths;
        match self {
            Probe::Tsm(wanted) => {
                let tsm = open_tsm(options)?;
                if let Some(wanted) = wanted
                    && tsm.tee() != wanted
                {
                    return Err(format!(
                        "{} (configfs-tsm): present, but its provider is {} ({}), not {wanted}",
                        tsm.root().display(),
                        tsm.provider(),
                        tsm.tee()
                    ));
                }
                Ok(match (tsm.tee(), options.snp_vmpl) {
                    (TeeKind::Snp, Some(vmpl)) => Box::new(tsm.with_privlevel(vmpl)),
                    _ => Box::new(tsm),
                })
            }
            Probe::Gramine => {
                let dir = &paths.attestation_dir;
                if !dir.join("attestation_type").exists() {
                    return Err(format!(
                        "{} (Gramine SGX): no attestation_type file",
                        dir.display()
                    ));
                }
                let gramine = GramineAttestation::new(dir);
                match gramine.check_type() {
                    Ok(()) => Ok(Box::new(gramine)),
                    Err(e) => {
                        Err(format!("{} (Gramine SGX): present but unusable: {e}", dir.display()))
                    }
                }
            }
            Probe::Nsm => present(&paths.nsm, "AWS Nitro Enclaves")
                .map(|()| Box::new(NsmDevice::new(&paths.nsm)) as Box<dyn Attester>),
            Probe::Csv => present(&paths.csv_guest, "Hygon CSV").map(|()| {
                Box::new(
                    CsvGuestDevice::new(&paths.csv_guest)
                        .with_certificates(options.csv_certificates.clone()),
                ) as Box<dyn Attester>
            }),
            Probe::SevGuest => present(&paths.sev_guest, "SEV-SNP").map(|()| {
                let mut device =
                    SevGuestDevice::new(&paths.sev_guest).with_vmpl(options.snp_vmpl.unwrap_or(0));
                if options.snp_without_certificates {
                    device = device.without_certificates();
                }
                Box::new(device) as Box<dyn Attester>
            }),
        }
    }
}

/// configfs-tsm at the configured report directory or root.
fn open_tsm(options: &BackendOptions) -> Result<ConfigFsTsm, String> {
    if let Some(dir) = &options.tsm_report_dir {
        return ConfigFsTsm::with_report_dir(dir).map_err(|e| {
            format!("{} (configfs-tsm report directory): unusable: {e}", dir.display())
        });
    }
    let root = &options.paths.tsm_report;
    if !root.is_dir() {
        return Err(format!(
            "{} (configfs-tsm: TDX, SEV-SNP, CCA; Linux >= 6.7): not present",
            root.display()
        ));
    }
    ConfigFsTsm::probe(root)
        .map_err(|e| format!("{} (configfs-tsm): present but unusable: {e}", root.display()))
}

fn present(path: &std::path::Path, what: &str) -> Result<(), String> {
    if path.exists() { Ok(()) } else { Err(format!("{} ({what}): not present", path.display())) }
}

fn tdx_guest_line(paths: &DetectPaths) -> String {
    if paths.tdx_guest.exists() {
        format!(
            "{} (TDX): present, but it only gives a TDREPORT, which cannot be verified \
             remotely; a TDX quote needs configfs-tsm (Linux >= 6.7) and the host's QGS",
            paths.tdx_guest.display()
        )
    } else {
        format!("{} (TDX): not present", paths.tdx_guest.display())
    }
}
