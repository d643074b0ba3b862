//! The simulated TEE attester: a software platform key signs reports about this process.
//!
//! Development only. The "platform key" lives in a file (it models the fused key of real
//! hardware), nothing isolates the process, and everything produced says `sim`: the evidence's
//! `tee` is `sim` and the verifier's claims carry a warning. Production policies reject it.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cloister_types::sim::{SIM_REPORT_FORMAT, SimEvidence, SimPlatformPublicKey, SimReport};
use cloister_types::{Base64Url, Hex, RuntimeData, TeeKind, UnifiedEvidence};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use sha2::{Digest as _, Sha384};
use zeroize::Zeroizing;

use crate::{AttestError, Attester};

/// The simulated platform's signing key (ECDSA P-256). Zeroized on drop; `Debug` shows only the
/// public key.
pub struct SimPlatformKey(SigningKey);

impl SimPlatformKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self(SigningKey::generate())
    }

    /// The public key verifiers list as a trust anchor.
    pub fn public_key(&self) -> SimPlatformPublicKey {
        SimPlatformPublicKey::from_verifying_key(*self.0.verifying_key())
    }

    /// The key as PKCS#8 PEM (secret; zeroized when dropped).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, AttestError> {
        self.0.to_pkcs8_pem(LineEnding::LF).map_err(AttestError::KeyEncode)
    }

    /// Parses a PKCS#8 PEM P-256 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, AttestError> {
        SigningKey::from_pkcs8_pem(pem).map(Self).map_err(AttestError::KeyDecode)
    }

    /// Loads the key at `path`, or creates it there (mode 0600 on unix, parent directories
    /// included) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AttestError> {
        match fs::read_to_string(path) {
            Ok(pem) => return Self::from_pkcs8_pem(&Zeroizing::new(pem)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error("reading", path, source)),
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_error("creating directory", parent, e))?;
        }
        let key = Self::generate();
        let pem = key.to_pkcs8_pem()?;
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(pem.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error("writing", path, e))?;
                Ok(key)
            }
            // Another process created it first: use that one, so every process agrees.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let pem = fs::read_to_string(path).map_err(|e| io_error("reading", path, e))?;
                Self::from_pkcs8_pem(&Zeroizing::new(pem))
            }
            Err(e) => Err(io_error("creating", path, e)),
        }
    }
}

impl fmt::Debug for SimPlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPlatformKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Attester of the simulated TEE: signs a [`SimReport`] with its [`SimPlatformKey`].
#[derive(Debug)]
pub struct SimAttester {
    platform_key: SimPlatformKey,
    measurement: [u8; 48],
}

impl SimAttester {
    /// An attester that reports `measurement` (a SHA-384 digest) as the code's identity.
    pub fn new(platform_key: SimPlatformKey, measurement: [u8; 48]) -> Self {
        Self { platform_key, measurement }
    }

    /// An attester whose measurement is the SHA-384 of the running executable.
    pub fn for_current_executable(platform_key: SimPlatformKey) -> Result<Self, AttestError> {
        let exe = std::env::current_exe()
            .map_err(|e| io_error("locating the current executable", Path::new("<exe>"), e))?;
        Ok(Self::new(platform_key, measure_file(&exe)?))
    }

    /// The measurement this attester reports.
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// The public key of the platform key that signs the reports.
    pub fn platform_public_key(&self) -> SimPlatformPublicKey {
        self.platform_key.public_key()
    }
}

impl Attester for SimAttester {
    fn tee(&self) -> TeeKind {
        TeeKind::Sim
    }

    fn attest(&self, runtime_data: &RuntimeData) -> Result<UnifiedEvidence, AttestError> {
        let report_data = runtime_data.report_data().map_err(AttestError::RuntimeData)?;
        let issued_at =
            SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| AttestError::Clock)?.as_secs();
        let report = SimReport {
            format: SIM_REPORT_FORMAT.to_owned(),
            measurement: Hex(self.measurement.to_vec()),
            report_data: report_data.to_hex(),
            debug: false,
            svn: 1,
            platform_key: self.platform_key.public_key().to_text(),
            issued_at: i64::try_from(issued_at).map_err(|_| AttestError::Clock)?,
        };
        let report_bytes = report.to_bytes().map_err(AttestError::Encode)?;
        let signature: Signature =
            self.platform_key.0.try_sign(&report_bytes).map_err(|_| AttestError::Sign)?;
        let evidence = SimEvidence {
            report: Base64Url(report_bytes),
            signature: Base64Url(signature.to_bytes().to_vec()),
        };
        Ok(UnifiedEvidence {
            version: cloister_types::evidence::UNIFIED_EVIDENCE_VERSION,
            tee: TeeKind::Sim,
            evidence: Base64Url(evidence.to_bytes().map_err(AttestError::Encode)?),
            runtime_data: runtime_data.clone(),
            collateral: Default::default(),
            additional_evidence: Default::default(),
        })
    }
}

/// SHA-384 of a file's contents, read in a streaming fashion.
pub fn measure_file(path: &Path) -> Result<[u8; 48], AttestError> {
    let mut file = fs::File::open(path).map_err(|e| io_error("opening", path, e))?;
    let mut hasher = Sha384::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error("reading", path, e)),
        }
    }
    Ok(hasher.finalize().into())
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> AttestError {
    AttestError::Io { action, path: path.to_path_buf(), source }
}
