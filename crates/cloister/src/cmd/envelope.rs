//! `cloister keygen`, `seal` and `open`: envelope keys and sealed files.

use std::path::PathBuf;

use anyhow::Result;
use cloister::envelope::{self, CertificatePolicy};
use cloister::parties::{accepted_tees, parse_measurements};

#[derive(clap::Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the secret key (created with mode 0600; never overwritten).
    #[arg(long)]
    pub(crate) secret: PathBuf,
    /// Where to write the public key.
    #[arg(long)]
    pub(crate) public: PathBuf,
    /// Make a party signing key (ES256: a model owner's, a requester's) instead of an
    /// envelope key.
    #[arg(long, conflicts_with = "sim_platform")]
    pub(crate) signing: bool,
    /// Make a simulated TEE's platform key (development only) for `cloister serve worker
    /// --sim-platform-key`; the public key goes to `cloister instance create
    /// --sim-platform-key`.
    #[arg(long, conflicts_with = "tls_server")]
    pub(crate) sim_platform: bool,
    /// Make a TLS server certificate for the attestation service for this host name or IP
    /// address (repeat for several), issued by a fresh private CA whose key is discarded:
    /// --secret gets the server key, --public the certificate chain (`serve attestation
    /// --tls-cert`), --tls-ca the CA certificate clients trust (`--ca`). Valid 365 days.
    #[arg(long = "tls-server", requires = "tls_ca", conflicts_with = "signing")]
    pub(crate) tls_server: Vec<String>,
    /// With --tls-server: where to write the CA certificate.
    #[arg(long, requires = "tls_server")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// The suite of the key: `x25519` (default) or `sm` (ShangMi). An envelope key of `sm` is
    /// an SM2 key (SM2 key wrap, SM3, SM4-GCM; docs/formats/sealed-envelope.md §10); an
    /// envelope is sealed in the suite of its recipients' keys, and mixing suites is refused.
    /// With --signing, `sm` makes an SM2 party key (JWS `SM2SM3`, docs/formats/jws-sm2.md),
    /// what a ShangMi enclave (`serve worker --suite sm`) takes grants from; the default is
    /// ES256.
    #[arg(long, value_parser = ["x25519", "sm"], default_value = "x25519",
          conflicts_with_all = ["sim_platform", "tls_server"])]
    pub(crate) suite: String,
}

#[derive(clap::Args)]
pub(crate) struct SealArgs {
    /// A public key file, an enclave certificate chain (verified with --ca/--measurement), or a
    /// key-broker recipient: its text (`cloister-broker:kb_…`, what `cloister key register`
    /// prints) or a file holding it. Repeat for several.
    #[arg(long = "recipient", required = true, value_name = "FILE|BROKER-RECIPIENT")]
    pub(crate) recipients: Vec<String>,
    /// Input file, or - for standard input.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Output file, or - for standard output.
    #[arg(long)]
    pub(crate) output: PathBuf,
    /// Instance CA that must have issued enclave-certificate recipients.
    #[arg(long)]
    pub(crate) ca: Option<PathBuf>,
    /// Measurement (hex) accepted for enclave-certificate recipients; repeat for several.
    #[arg(long = "measurement")]
    pub(crate) measurements: Vec<String>,
    /// Accept enclave certificates from the simulated TEE (development only).
    #[arg(long)]
    pub(crate) accept_sim: bool,
    /// Accept enclaves whose evidence verified under a test root their attestation instance
    /// names (trust_anchor "test"; tests on fake hardware, development only).
    #[arg(long)]
    pub(crate) accept_test_root: bool,
}

#[derive(clap::Args)]
pub(crate) struct OpenArgs {
    /// The secret key file.
    #[arg(long)]
    pub(crate) secret: PathBuf,
    /// Input file, or - for standard input.
    #[arg(long)]
    pub(crate) input: PathBuf,
    /// Output file, or - for standard output. A file is written beside and renamed into place
    /// only once the whole envelope authenticated: nothing is left there if opening fails.
    /// Standard output (and a device or FIFO named here) gets each chunk only after it
    /// authenticated, as it streams; a truncated or altered envelope then ends with an error
    /// and a non-zero exit after the chunks that did authenticate.
    #[arg(long)]
    pub(crate) output: PathBuf,
}

pub(crate) fn keygen(args: KeygenArgs) -> Result<()> {
    let KeygenArgs { secret, public, signing, sim_platform, tls_server, tls_ca, suite } = args;
    if let Some(ca) = tls_ca {
        return cloister::serve::keygen_tls_server(&tls_server, &secret, &public, &ca);
    }
    if sim_platform {
        return cloister::serve_worker::keygen_sim_platform(&secret, &public);
    }
    if signing {
        let suite = if suite == "sm" {
            cloister_sign::SignatureSuite::Sm2
        } else {
            cloister_sign::SignatureSuite::Es256
        };
        return cloister::model::keygen_signing(&secret, &public, suite);
    }
    let suite =
        if suite == "sm" { cloister_seal::Suite::ShangMi } else { cloister_seal::Suite::X25519 };
    envelope::keygen(&secret, &public, suite)
}

pub(crate) fn seal(args: SealArgs) -> Result<()> {
    let SealArgs { recipients, input, output, ca, measurements, accept_sim, accept_test_root } =
        args;
    let measurements = parse_measurements(&measurements)?;
    let tees = accepted_tees(accept_sim);
    let policy = CertificatePolicy { ca, measurements, tees, accept_test_root };
    let keys = recipients
        .iter()
        .map(|path| envelope::read_recipient(path, &policy))
        .collect::<Result<Vec<_>>>()?;
    envelope::seal(&keys, &input, &output)
}

pub(crate) fn open(args: OpenArgs) -> Result<()> {
    let OpenArgs { secret, input, output } = args;
    let key = envelope::read_envelope_secret(&secret)?;
    envelope::open(&key, &input, &output)
}
