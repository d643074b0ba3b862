//! AMD SEV-SNP launch digests (and the older SEV-ES and SEV launch digests), predicted from the
//! firmware, the direct-boot kernel/initrd/command line, the vCPUs and the VMM.
//!
//! [`launch_digest`] replays what the VMM asks the AMD-SP to measure, in QEMU's order:
//!
//! 1. the firmware image, page by page, mapped to end at 4 GiB (or a precomputed
//!    [`ovmf_hash`] standing for those updates);
//! 2. the SEV metadata sections from OVMF's footer table, in the order OVMF lists them: zero
//!    pages (`SNP_SEC_MEM`, `SVSM_CAA`), the secrets page, the CPUID page, and the
//!    `SNP_KERNEL_HASHES` page, which holds QEMU's hashes table when a kernel is given and is a
//!    zero page otherwise (EC2 measures the CPUID pages last, after the other sections);
//! 3. one VMSA page per vCPU: the boot processor at the reset vector, the others at the SEV-ES
//!    reset block's address.
//!
//! With Coconut SVSM ([`Svsm`]) the SVSM binary sits just below OVMF's variable store, which
//! sits below OVMF; both images are measured, then the SVSM's own metadata sections, then one
//! SVSM VMSA per vCPU.

mod gctx;
mod hashes;
mod ovmf;
mod vmsa;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256, Sha384};

use self::gctx::Gctx;
use self::ovmf::{FOUR_GIB, Image, ImageKind, PAGE, SVSM_INFO_GUID, SectionKind};
use crate::MeasureError;

/// The most vCPUs a launch digest is computed for (KVM's limit on x86).
pub const MAX_VCPUS: u32 = 4096;

/// `SEV_FEATURES` bit 0, `SNPActive`: the guest features of a plain SNP guest and the default.
pub const SNP_ACTIVE: u64 = 0x1;

/// Everything an SNP launch digest depends on. [`LaunchInputs::new`] sets the defaults: one
/// vCPU, no vCPU type, guest features [`SNP_ACTIVE`], QEMU, no kernel, no SVSM.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LaunchInputs<'a> {
    /// The firmware image (OVMF.fd), all of it.
    pub ovmf: &'a [u8],
    /// The launch digest right after the firmware pages, from [`ovmf_hash`]; when set, the
    /// firmware pages are not hashed again (the image is still read for its footer table).
    pub ovmf_hash: Option<[u8; 48]>,
    /// Measured direct boot: the kernel, initrd and command line QEMU hashes into OVMF.
    pub boot: Option<DirectBoot<'a>>,
    /// The number of vCPUs, 1 to [`MAX_VCPUS`].
    pub vcpus: u32,
    /// The guest CPU model; QEMU puts its CPUID signature in every VMSA, so QEMU needs it. EC2
    /// and GCE put a fixed value there and ignore it.
    pub vcpu_type: Option<VcpuType>,
    /// The VMSA's `SEV_FEATURES` (the "guest features"): 0x1 = SNPActive, 0x21 = SNPActive and
    /// DebugSwap (Linux 6.6 and later KVM), … Not used with [`Svsm`], whose VMSA is fixed.
    pub guest_features: u64,
    /// The VMM that builds the VMSAs.
    pub vmm: Vmm,
    /// Coconut SVSM mode.
    pub svsm: Option<Svsm<'a>>,
}

impl<'a> LaunchInputs<'a> {
    /// The inputs for `ovmf` with the defaults (see the type's documentation).
    pub fn new(ovmf: &'a [u8]) -> Self {
        Self {
            ovmf,
            ovmf_hash: None,
            boot: None,
            vcpus: 1,
            vcpu_type: None,
            guest_features: SNP_ACTIVE,
            vmm: Vmm::Qemu,
            svsm: None,
        }
    }
}

/// Measured direct boot (QEMU `-kernel`, `-initrd`, `-append`). A kernel that QEMU reads from
/// `/dev/null` is an empty slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectBoot<'a> {
    /// The kernel image.
    pub kernel: &'a [u8],
    /// The initrd; none is measured as empty bytes.
    pub initrd: Option<&'a [u8]>,
    /// The kernel command line, without the NUL QEMU adds; none is measured like an empty one.
    pub append: Option<&'a str>,
}

impl<'a> DirectBoot<'a> {
    /// Direct boot from the three optional flags a user gives: `None` without a kernel, an
    /// error when an initrd or a command line comes without one (QEMU would not measure them).
    pub fn from_parts(
        kernel: Option<&'a [u8]>,
        initrd: Option<&'a [u8]>,
        append: Option<&'a str>,
    ) -> Result<Option<Self>, MeasureError> {
        match kernel {
            Some(kernel) => Ok(Some(Self { kernel, initrd, append })),
            None if initrd.is_some() => Err(MeasureError::BootPartWithoutKernel { part: "initrd" }),
            None if append.is_some() => {
                Err(MeasureError::BootPartWithoutKernel { part: "command line" })
            }
            None => Ok(None),
        }
    }
}

/// Coconut SVSM: the SVSM binary loaded below OVMF and its variable store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Svsm<'a> {
    /// The SVSM binary (svsm.bin).
    pub image: &'a [u8],
    /// The size of OVMF's variable store in bytes (QEMU's second flash device, e.g. 540672).
    pub ovmf_vars_size: u64,
}

/// The VMM that launches the guest: it decides some of the VMSA's reset values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Vmm {
    /// QEMU/KVM (the default).
    #[default]
    Qemu,
    /// Amazon EC2. The two reference projects disagree here: these are the values of
    /// virtee/sev-snp-measure after its commit 4a02bf0 ("Update the EC2 VMSA used to calculate
    /// the expected measurement", 2026-05-12); virtee/sev still computes the older values.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl Vmm {
    /// The names [`FromStr`] accepts (case does not matter).
    pub const NAMES: &'static [&'static str] = &["qemu", "ec2", "gce"];
}

impl FromStr for Vmm {
    type Err = MeasureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "qemu" => Ok(Self::Qemu),
            "ec2" => Ok(Self::Ec2),
            "gce" => Ok(Self::Gce),
            _ => Err(MeasureError::UnknownVmm { given: s.to_owned() }),
        }
    }
}

impl fmt::Display for Vmm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Qemu => "qemu",
            Self::Ec2 => "ec2",
            Self::Gce => "gce",
        })
    }
}

/// The guest CPU model, which fixes the CPUID signature (family, model, stepping) QEMU puts in
/// RDX at reset. The named models are QEMU's (`-cpu EPYC-v4` …); every version of a model has
/// the same signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VcpuType {
    /// `EPYC`, `EPYC-v1` … `EPYC-v4`, `EPYC-IBPB`: family 0x17, model 1, stepping 2 (Naples).
    Epyc,
    /// `EPYC-Rome`, `-v1` … `-v3`: family 0x17, model 0x31, stepping 0.
    EpycRome,
    /// `EPYC-Milan`, `-v1`, `-v2`: family 0x19, model 1, stepping 1.
    EpycMilan,
    /// `EPYC-Genoa`, `-v1`: family 0x19, model 0x11, stepping 0.
    EpycGenoa,
    /// `EPYC-Turin`: family 0x1a, model 0, stepping 0.
    EpycTurin,
    /// An explicit CPUID signature (CPUID leaf 1 EAX).
    Signature(u32),
}

impl VcpuType {
    /// The model names [`FromStr`] accepts (case does not matter); it also takes a signature
    /// written in hexadecimal with `0x`.
    pub const NAMES: &'static [&'static str] = &[
        "EPYC",
        "EPYC-v1",
        "EPYC-v2",
        "EPYC-IBPB",
        "EPYC-v3",
        "EPYC-v4",
        "EPYC-Rome",
        "EPYC-Rome-v1",
        "EPYC-Rome-v2",
        "EPYC-Rome-v3",
        "EPYC-Milan",
        "EPYC-Milan-v1",
        "EPYC-Milan-v2",
        "EPYC-Genoa",
        "EPYC-Genoa-v1",
        "EPYC-Turin",
    ];

    /// The type with the signature of `family`, `model` and `stepping` (AMD CPUID specification
    /// #25481, `CPUID Fn0000_0001_EAX`).
    pub const fn from_family_model_stepping(family: u32, model: u32, stepping: u32) -> Self {
        let (family_low, family_high) =
            if family > 0xf { (0xf, (family - 0xf) & 0xff) } else { (family, 0) };
        Self::Signature(
            (family_high << 20)
                | (((model >> 4) & 0xf) << 16)
                | (family_low << 8)
                | ((model & 0xf) << 4)
                | (stepping & 0xf),
        )
    }

    /// The CPUID signature.
    pub const fn signature(self) -> u32 {
        let fms = match self {
            Self::Epyc => (0x17, 1, 2),
            Self::EpycRome => (0x17, 0x31, 0),
            Self::EpycMilan => (0x19, 1, 1),
            Self::EpycGenoa => (0x19, 0x11, 0),
            Self::EpycTurin => (0x1a, 0, 0),
            Self::Signature(signature) => return signature,
        };
        match Self::from_family_model_stepping(fms.0, fms.1, fms.2) {
            Self::Signature(signature) => signature,
            _ => 0,
        }
    }
}

impl FromStr for VcpuType {
    type Err = MeasureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || MeasureError::UnknownVcpuType { given: s.to_owned() };
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            return u32::from_str_radix(hex, 16).map(Self::Signature).map_err(|_| unknown());
        }
        let name = Self::NAMES.iter().find(|n| n.eq_ignore_ascii_case(s)).ok_or_else(unknown)?;
        let lower = name.to_ascii_lowercase();
        Ok(if lower.starts_with("epyc-rome") {
            Self::EpycRome
        } else if lower.starts_with("epyc-milan") {
            Self::EpycMilan
        } else if lower.starts_with("epyc-genoa") {
            Self::EpycGenoa
        } else if lower.starts_with("epyc-turin") {
            Self::EpycTurin
        } else {
            Self::Epyc
        })
    }
}

impl fmt::Display for VcpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Epyc => f.write_str("EPYC"),
            Self::EpycRome => f.write_str("EPYC-Rome"),
            Self::EpycMilan => f.write_str("EPYC-Milan"),
            Self::EpycGenoa => f.write_str("EPYC-Genoa"),
            Self::EpycTurin => f.write_str("EPYC-Turin"),
            Self::Signature(signature) => write!(f, "{signature:#010x}"),
        }
    }
}

/// The SEV-SNP launch digest (the attestation report's `MEASUREMENT`) for `inputs`.
pub fn launch_digest(inputs: &LaunchInputs<'_>) -> Result<[u8; 48], MeasureError> {
    check_vcpus(inputs.vcpus)?;
    if let Some(svsm) = &inputs.svsm {
        return svsm_launch_digest(inputs, svsm);
    }
    let ovmf = Image::parse(ImageKind::Ovmf, inputs.ovmf, FOUR_GIB)?;
    let hashes_page = match &inputs.boot {
        None => None,
        Some(boot) => {
            if !ovmf.has_section(SectionKind::KernelHashes) {
                return Err(MeasureError::KernelHashesUnsupported { mode: "SNP" });
            }
            let gpa = ovmf.sev_hash_table_gpa()?.ok_or(MeasureError::MissingFirmwareEntry {
                image: "OVMF",
                entry: "SEV hash table",
                guid: ovmf::SEV_HASH_TABLE_RV_GUID.to_string(),
            })?;
            Some(hashes::page(boot, gpa)?)
        }
    };
    let ap_eip = ovmf.sev_es_reset_eip()?;
    let signature = vmsa_signature(inputs.vmm, inputs.vcpu_type)?;

    let mut gctx = firmware_gctx(inputs.ovmf_hash, &ovmf);
    update_sections(&mut gctx, &ovmf, hashes_page.as_deref(), inputs.vmm);
    let features = inputs.guest_features;
    let bsp = sha384(&vmsa::reset_vmsa(vmsa::BSP_EIP, features, signature, inputs.vmm));
    let ap = sha384(&vmsa::reset_vmsa(ap_eip, features, signature, inputs.vmm));
    for i in 0..inputs.vcpus {
        gctx.vmsa_page(if i == 0 { &bsp } else { &ap });
    }
    Ok(gctx.digest())
}

/// The SNP launch digest after the firmware's pages alone (sev-snp-measure's "OVMF hash"), to
/// be given as [`LaunchInputs::ovmf_hash`] instead of hashing a large firmware every time.
pub fn ovmf_hash(ovmf: &[u8]) -> Result<[u8; 48], MeasureError> {
    let gpa = ovmf::place(ImageKind::Ovmf, ovmf, FOUR_GIB)?;
    let mut gctx = Gctx::new();
    gctx.normal_pages(gpa, ovmf);
    Ok(gctx.digest())
}

/// The SEV-ES launch digest (SHA-256): the firmware, QEMU's hashes table when a kernel is
/// given, then one VMSA page per vCPU with no SEV features.
pub fn sev_es_launch_digest(
    ovmf: &[u8],
    boot: Option<&DirectBoot<'_>>,
    vcpus: u32,
    vcpu_type: Option<VcpuType>,
    vmm: Vmm,
) -> Result<[u8; 32], MeasureError> {
    check_vcpus(vcpus)?;
    let image = Image::parse(ImageKind::Ovmf, ovmf, FOUR_GIB)?;
    let table = sev_hashes_table(&image, boot, "SEV-ES")?;
    let ap_eip = image.sev_es_reset_eip()?;
    let signature = vmsa_signature(vmm, vcpu_type)?;
    let mut hash = Sha256::new();
    hash.update(ovmf);
    if let Some(table) = table {
        hash.update(table);
    }
    let bsp = vmsa::reset_vmsa(vmsa::BSP_EIP, 0, signature, vmm);
    let ap = vmsa::reset_vmsa(ap_eip, 0, signature, vmm);
    for i in 0..vcpus {
        hash.update(if i == 0 { bsp.as_slice() } else { ap.as_slice() });
    }
    Ok(hash.finalize().into())
}

/// The plain SEV launch digest (SHA-256): the firmware, then QEMU's hashes table when a kernel
/// is given.
pub fn sev_launch_digest(
    ovmf: &[u8],
    boot: Option<&DirectBoot<'_>>,
) -> Result<[u8; 32], MeasureError> {
    let mut hash = Sha256::new();
    if let Some(boot) = boot {
        let image = Image::parse(ImageKind::Ovmf, ovmf, FOUR_GIB)?;
        let table = sev_hashes_table(&image, Some(boot), "SEV")?;
        hash.update(ovmf);
        if let Some(table) = table {
            hash.update(table);
        }
    } else {
        ovmf::place(ImageKind::Ovmf, ovmf, FOUR_GIB)?;
        hash.update(ovmf);
    }
    Ok(hash.finalize().into())
}

fn sha384(page: &[u8; 4096]) -> [u8; 48] {
    Sha384::digest(page).into()
}

fn check_vcpus(vcpus: u32) -> Result<(), MeasureError> {
    if (1..=MAX_VCPUS).contains(&vcpus) { Ok(()) } else { Err(MeasureError::VcpuCount { vcpus }) }
}

/// What RDX holds: QEMU needs the vCPU type's signature, EC2 and GCE do not use it.
fn vmsa_signature(vmm: Vmm, vcpu_type: Option<VcpuType>) -> Result<u32, MeasureError> {
    match (vmm, vcpu_type) {
        (_, Some(t)) => Ok(t.signature()),
        (Vmm::Qemu, None) => Err(MeasureError::VcpuTypeRequired),
        (Vmm::Ec2 | Vmm::Gce, None) => Ok(0),
    }
}

fn firmware_gctx(seed: Option<[u8; 48]>, image: &Image<'_>) -> Gctx {
    match seed {
        Some(seed) => Gctx::seeded(seed),
        None => {
            let mut gctx = Gctx::new();
            gctx.normal_pages(image.gpa(), image.data());
            gctx
        }
    }
}

/// Measures the image's metadata sections, as QEMU (or EC2) launch-updates them.
fn update_sections(gctx: &mut Gctx, image: &Image<'_>, hashes_page: Option<&[u8; 4096]>, vmm: Vmm) {
    for s in image.sections() {
        match s.kind {
            // GCE leaves the SEC memory unmeasured rather than measuring it as zero pages.
            SectionKind::SecMem if vmm == Vmm::Gce => gctx.unmeasured_pages(s.gpa, s.size),
            SectionKind::SecMem | SectionKind::SvsmCaa => gctx.zero_pages(s.gpa, s.size),
            SectionKind::Secrets => gctx.secrets_page(s.gpa),
            SectionKind::Cpuid if vmm == Vmm::Ec2 => {}
            SectionKind::Cpuid => gctx.cpuid_page(s.gpa),
            SectionKind::KernelHashes => match hashes_page {
                Some(page) => gctx.normal_pages(s.gpa, page),
                None => gctx.zero_pages(s.gpa, s.size),
            },
        }
    }
    if vmm == Vmm::Ec2 {
        for s in image.sections().iter().filter(|s| s.kind == SectionKind::Cpuid) {
            gctx.cpuid_page(s.gpa);
        }
    }
}

/// The hashes table SEV and SEV-ES append after the firmware, or `None` without a kernel.
fn sev_hashes_table(
    image: &Image<'_>,
    boot: Option<&DirectBoot<'_>>,
    mode: &'static str,
) -> Result<Option<[u8; hashes::PADDED_LEN]>, MeasureError> {
    let Some(boot) = boot else { return Ok(None) };
    if image.sev_hash_table_gpa()?.is_none() {
        return Err(MeasureError::KernelHashesUnsupported { mode });
    }
    Ok(Some(hashes::table(boot)))
}

fn svsm_launch_digest(
    inputs: &LaunchInputs<'_>,
    svsm: &Svsm<'_>,
) -> Result<[u8; 48], MeasureError> {
    if inputs.boot.is_some() {
        return Err(MeasureError::SvsmUnsupported { what: "measured direct boot (a kernel)" });
    }
    if inputs.vmm != Vmm::Qemu {
        return Err(MeasureError::SvsmUnsupported { what: "a VMM other than QEMU" });
    }
    let signature = vmsa_signature(inputs.vmm, inputs.vcpu_type)?;
    let ovmf_gpa = ovmf::place(ImageKind::Ovmf, inputs.ovmf, FOUR_GIB)?;
    let vars_size = svsm.ovmf_vars_size;
    let svsm_end = ovmf_gpa
        .checked_sub(vars_size)
        .filter(|_| vars_size.is_multiple_of(PAGE))
        .ok_or(MeasureError::OvmfVarsSize { size: vars_size })?;
    let image = Image::parse(ImageKind::Svsm, svsm.image, svsm_end)?;
    let eip = image.gpa() + u64::from(image.required_u32(SVSM_INFO_GUID, "SVSM information")?);

    let mut gctx = match inputs.ovmf_hash {
        Some(seed) => Gctx::seeded(seed),
        None => {
            let mut gctx = Gctx::new();
            gctx.normal_pages(ovmf_gpa, inputs.ovmf);
            gctx
        }
    };
    gctx.normal_pages(image.gpa(), image.data());
    update_sections(&mut gctx, &image, None, Vmm::Qemu);
    let vmsa = sha384(&vmsa::svsm_vmsa(eip, signature));
    for _ in 0..inputs.vcpus {
        gctx.vmsa_page(&vmsa);
    }
    Ok(gctx.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_signatures() {
        assert_eq!(VcpuType::Epyc.signature(), 0x0080_0f12);
        assert_eq!(VcpuType::EpycRome.signature(), 0x0083_0f10);
        assert_eq!(VcpuType::EpycMilan.signature(), 0x00a0_0f11);
        assert_eq!(VcpuType::EpycGenoa.signature(), 0x00a1_0f10);
        assert_eq!(VcpuType::EpycTurin.signature(), 0x00b0_0f00);
        assert_eq!(VcpuType::from_family_model_stepping(6, 0x55, 7).signature(), 0x0005_0657);
    }

    #[test]
    fn names_parse() {
        for name in VcpuType::NAMES {
            let t: VcpuType = name.parse().unwrap();
            assert!(name.starts_with(&t.to_string()), "{name} → {t}");
        }
        assert_eq!("epyc-milan-v2".parse::<VcpuType>().unwrap(), VcpuType::EpycMilan);
        assert_eq!("0x800f12".parse::<VcpuType>().unwrap(), VcpuType::Signature(0x80_0f12));
        let err = "EPYC-Zen9".parse::<VcpuType>().unwrap_err().to_string();
        assert!(err.contains("EPYC-Zen9") && err.contains("EPYC-Genoa-v1"), "{err}");
        assert!("0xZZ".parse::<VcpuType>().is_err());
        assert_eq!("EC2".parse::<Vmm>().unwrap(), Vmm::Ec2);
        assert_eq!(Vmm::Gce.to_string().parse::<Vmm>().unwrap(), Vmm::Gce);
        let err = "kvm".parse::<Vmm>().unwrap_err().to_string();
        assert!(err.contains("kvm") && err.contains("qemu, ec2, gce"), "{err}");
    }

    #[test]
    fn direct_boot_needs_a_kernel() {
        assert_eq!(DirectBoot::from_parts(None, None, None).unwrap(), None);
        let err = DirectBoot::from_parts(None, Some(b""), None).unwrap_err();
        assert!(err.to_string().contains("initrd"), "{err}");
        let err = DirectBoot::from_parts(None, None, Some("quiet")).unwrap_err();
        assert!(err.to_string().contains("command line"), "{err}");
        let boot = DirectBoot::from_parts(Some(b"k"), None, Some("quiet")).unwrap().unwrap();
        assert_eq!(boot.append, Some("quiet"));
    }
}
