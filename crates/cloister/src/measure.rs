//! `cloister measure`: the values a TEE will report for a build, computed from its inputs so a
//! policy can be written before deployment. Reads the files the flags name and hands the bytes
//! to `cloister-measure` (SEV-SNP launch digest, TDX RTMR replay, SGX MRENCLAVE and SIGSTRUCT);
//! `--tee sim` measures an executable as the simulated TEE does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use cloister_measure::{sgx, snp, tdx};

/// Everything `cloister measure` takes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MeasureArgs {
    /// With --tee sim: the executable (default: this one).
    pub file: Option<PathBuf>,
    /// The TEE whose value to compute: sim, snp, tdx or sgx.
    #[arg(long, default_value = "sim")]
    pub tee: String,
    /// Print every value as a JSON object under its field name (launch_digest, rtmr0..rtmr3,
    /// mrenclave, mrsigner, enclave_hash, measurement).
    #[arg(long)]
    pub json: bool,

    /// SEV-SNP: the firmware image (OVMF.fd).
    #[arg(long, help_heading = "SEV-SNP")]
    pub ovmf: Option<PathBuf>,
    /// SEV-SNP: the number of vCPUs (default 1).
    #[arg(long, help_heading = "SEV-SNP")]
    pub vcpus: Option<u32>,
    /// SEV-SNP: the guest CPU model as QEMU names it (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan,
    /// EPYC-Genoa, …) or a CPUID signature (0x…). Needed with --vmm qemu.
    #[arg(long, help_heading = "SEV-SNP")]
    pub vcpu_type: Option<String>,
    /// SEV-SNP: the VMSA's SEV_FEATURES (default 0x1, SNPActive; hosts on Linux 6.6+ KVM
    /// usually use 0x21, SNPActive and DebugSwap).
    #[arg(long, help_heading = "SEV-SNP")]
    pub guest_features: Option<String>,
    /// SEV-SNP: the kernel QEMU boots directly (measured through OVMF's kernel-hashes table).
    #[arg(long, help_heading = "SEV-SNP")]
    pub kernel: Option<PathBuf>,
    /// SEV-SNP: the initrd (with --kernel).
    #[arg(long, help_heading = "SEV-SNP")]
    pub initrd: Option<PathBuf>,
    /// SEV-SNP: the kernel command line (with --kernel).
    #[arg(long, help_heading = "SEV-SNP")]
    pub append: Option<String>,
    /// SEV-SNP: the VMM: qemu (default), ec2 or gce.
    #[arg(long, help_heading = "SEV-SNP")]
    pub vmm: Option<String>,
    /// SEV-SNP: the Coconut SVSM binary (with --vars-size).
    #[arg(long, help_heading = "SEV-SNP")]
    pub svsm: Option<PathBuf>,
    /// SEV-SNP: the size of OVMF's variable store in bytes (with --svsm).
    #[arg(long, help_heading = "SEV-SNP")]
    pub vars_size: Option<u64>,

    /// TDX: the CC event log (CCEL data, e.g. /sys/firmware/acpi/tables/data/CCEL) to replay
    /// RTMR0-3 from.
    #[arg(long, help_heading = "TDX")]
    pub event_log: Option<PathBuf>,

    /// SGX: the enclave's SGXS measurement stream (MRENCLAVE).
    #[arg(long, help_heading = "SGX")]
    pub sgxs: Option<PathBuf>,
    /// SGX: the enclave's SIGSTRUCT (Gramine's .sig): MRSIGNER, ENCLAVEHASH, product and SVN.
    #[arg(long, help_heading = "SGX")]
    pub sigstruct: Option<PathBuf>,
}

/// What was computed: field name → value, in the order printed.
type Values = Vec<(&'static str, serde_json::Value)>;

/// Runs `cloister measure`, printing the values (one `field: value` line each, or one JSON
/// object with `--json`; `--tee sim` without `--json` prints the bare hex, as scripts read it).
pub fn run(args: &MeasureArgs) -> Result<()> {
    if !["sim", "snp", "tdx", "sgx"].contains(&args.tee.as_str()) {
        bail!("unknown --tee {:?}; expected one of sim, snp, tdx, sgx", args.tee);
    }
    refuse_foreign_flags(args)?;
    let values = match args.tee.as_str() {
        "sim" => {
            let file = match &args.file {
                Some(file) => file.clone(),
                None => std::env::current_exe()?,
            };
            let measurement = hex::encode(cloister_attest::measure_file(&file)?);
            if !args.json {
                println!("{measurement}");
                return Ok(());
            }
            vec![("measurement", measurement.into())]
        }
        "snp" => snp_values(args)?,
        "tdx" => tdx_values(args)?,
        _ => sgx_values(args)?,
    };
    if args.json {
        let mut object: BTreeMap<&str, serde_json::Value> = values.into_iter().collect();
        object.insert("tee", args.tee.clone().into());
        println!("{}", serde_json::to_string_pretty(&object)?);
    } else {
        for (field, value) in values {
            match value {
                serde_json::Value::String(text) => println!("{field}: {text}"),
                other => println!("{field}: {other}"),
            }
        }
    }
    Ok(())
}

/// Each TEE's flags are refused with another `--tee`, rather than silently ignored.
fn refuse_foreign_flags(args: &MeasureArgs) -> Result<()> {
    let given = [
        ("--ovmf", args.ovmf.is_some(), "snp"),
        ("--vcpus", args.vcpus.is_some(), "snp"),
        ("--guest-features", args.guest_features.is_some(), "snp"),
        ("--vmm", args.vmm.is_some(), "snp"),
        ("--vcpu-type", args.vcpu_type.is_some(), "snp"),
        ("--kernel", args.kernel.is_some(), "snp"),
        ("--initrd", args.initrd.is_some(), "snp"),
        ("--append", args.append.is_some(), "snp"),
        ("--svsm", args.svsm.is_some(), "snp"),
        ("--vars-size", args.vars_size.is_some(), "snp"),
        ("--event-log", args.event_log.is_some(), "tdx"),
        ("--sgxs", args.sgxs.is_some(), "sgx"),
        ("--sigstruct", args.sigstruct.is_some(), "sgx"),
        ("FILE", args.file.is_some(), "sim"),
    ];
    for (flag, present, tee) in given {
        if present && args.tee != tee {
            bail!("{flag} applies to --tee {tee}, not --tee {}", args.tee);
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn snp_values(args: &MeasureArgs) -> Result<Values> {
    let ovmf = read(args.ovmf.as_deref().context("--tee snp needs --ovmf FILE")?)?;
    let kernel = args.kernel.as_deref().map(read).transpose()?;
    let initrd = args.initrd.as_deref().map(read).transpose()?;
    let svsm = args.svsm.as_deref().map(read).transpose()?;
    let mut inputs = snp::LaunchInputs::new(&ovmf);
    inputs.boot =
        snp::DirectBoot::from_parts(kernel.as_deref(), initrd.as_deref(), args.append.as_deref())?;
    if let Some(vcpus) = args.vcpus {
        inputs.vcpus = vcpus;
    }
    inputs.vcpu_type = args.vcpu_type.as_deref().map(str::parse).transpose()?;
    if let Some(features) = &args.guest_features {
        inputs.guest_features =
            parse_number(features).with_context(|| format!("--guest-features {features:?}"))?;
    }
    if let Some(vmm) = &args.vmm {
        inputs.vmm = vmm.parse()?;
    }
    inputs.svsm = match (&svsm, args.vars_size) {
        (Some(image), Some(ovmf_vars_size)) => Some(snp::Svsm { image, ovmf_vars_size }),
        (None, None) => None,
        (Some(_), None) => bail!("--svsm needs --vars-size (the size of OVMF's variable store)"),
        (None, Some(_)) => bail!("--vars-size applies only with --svsm"),
    };
    let digest = snp::launch_digest(&inputs)?;
    Ok(vec![("launch_digest", hex::encode(digest).into())])
}

fn tdx_values(args: &MeasureArgs) -> Result<Values> {
    let log = read(args.event_log.as_deref().context("--tee tdx needs --event-log FILE")?)?;
    let replay = tdx::replay(&log)?;
    let mut values: Values = ["rtmr0", "rtmr1", "rtmr2", "rtmr3"]
        .into_iter()
        .zip(replay.rtmr)
        .map(|(field, value)| (field, hex::encode(value).into()))
        .collect();
    values.push(("events", replay.events.len().into()));
    Ok(values)
}

fn sgx_values(args: &MeasureArgs) -> Result<Values> {
    if args.sgxs.is_none() && args.sigstruct.is_none() {
        bail!("--tee sgx needs --sgxs FILE (MRENCLAVE) or --sigstruct FILE (MRSIGNER), or both");
    }
    let mut values = Values::new();
    let mrenclave = args.sgxs.as_deref().map(read).transpose()?;
    let mrenclave = mrenclave.as_deref().map(sgx::mrenclave_from_sgxs).transpose()?;
    if let Some(mrenclave) = mrenclave {
        values.push(("mrenclave", hex::encode(mrenclave).into()));
    }
    if let Some(path) = &args.sigstruct {
        let sigstruct = sgx::Sigstruct::parse(&read(path)?)?;
        values.push(("mrsigner", hex::encode(sigstruct.mrsigner()).into()));
        values.push(("enclave_hash", hex::encode(sigstruct.enclave_hash).into()));
        values.push(("isv_prod_id", sigstruct.isv_prod_id.into()));
        values.push(("isv_svn", sigstruct.isv_svn.into()));
        values.push(("debug_allowed", sigstruct.allows_debug().into()));
        let signature = match sigstruct.verify_signature() {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID: {e}"),
        };
        values.push(("signature", signature.into()));
        if let Some(mrenclave) = mrenclave {
            values.push((
                "enclave_hash_matches_mrenclave",
                (mrenclave == sigstruct.enclave_hash).into(),
            ));
        }
    }
    Ok(values)
}

/// A number in decimal or `0x` hexadecimal.
fn parse_number(text: &str) -> Result<u64> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.context("not a number (decimal, or hexadecimal with 0x)")
}
