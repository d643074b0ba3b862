//! The initial VMSA pages (each vCPU's saved register state) that SEV-ES and SEV-SNP launches
//! measure.
//!
//! The layout is the SEV-ES save area of AMD's APM volume 2, table B-4 (Linux
//! `struct sev_es_save_area`); only the fields a VMM sets at reset are written, every other byte
//! of the 4 KiB page is zero. The reset values are those of KVM/QEMU's x86 reset state; EC2 and
//! GCE differ in a few fields, as measured on those clouds by the `sev-snp-measure` project.

use super::Vmm;

/// The boot processor starts at the x86 reset vector.
pub(crate) const BSP_EIP: u32 = 0xFFFF_FFF0;
const VMSA_SIZE: usize = 4096;

// Field offsets in the save area.
const ES: usize = 0x000;
const CS: usize = 0x010;
const SS: usize = 0x020;
const DS: usize = 0x030;
const FS: usize = 0x040;
const GS: usize = 0x050;
const GDTR: usize = 0x060;
const LDTR: usize = 0x070;
const IDTR: usize = 0x080;
const TR: usize = 0x090;
const EFER: usize = 0x0D0;
const CR4: usize = 0x148;
const CR0: usize = 0x158;
const DR7: usize = 0x160;
const DR6: usize = 0x168;
const RFLAGS: usize = 0x170;
const RIP: usize = 0x178;
const G_PAT: usize = 0x268;
const RDX: usize = 0x310;
const SEV_FEATURES: usize = 0x3B0;
const XCR0: usize = 0x3E8;
const MXCSR: usize = 0x408;
const X87_FCW: usize = 0x410;

/// The default PAT MSR value (APM volume 2, section A.3).
const DEFAULT_PAT: u64 = 0x0007_0406_0007_0406;
/// `EFER.SVME`, which KVM sets.
const EFER_SVME: u64 = 0x1000;
/// `CR4.MCE`, which KVM sets.
const CR4_MCE: u64 = 0x40;

/// A VMSA page.
pub(crate) type VmsaPage = Box<[u8; VMSA_SIZE]>;

/// A VMSA page under construction.
struct Page(VmsaPage);

impl Page {
    fn new() -> Self {
        Self(Box::new([0; VMSA_SIZE]))
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn u64(&mut self, at: usize, value: u64) {
        self.put(at, &value.to_le_bytes());
    }

    /// A segment register (`struct vmcb_seg`): selector, attributes, limit, base.
    fn segment(&mut self, at: usize, selector: u16, attrib: u16, limit: u32, base: u64) {
        self.put(at, &selector.to_le_bytes());
        self.put(at + 2, &attrib.to_le_bytes());
        self.put(at + 4, &limit.to_le_bytes());
        self.put(at + 8, &base.to_le_bytes());
    }
}

/// The reset-state VMSA for a vCPU starting at `eip`, as `vmm` sets it up.
/// `sev_features` goes in the VMSA's `SEV_FEATURES` field; `vcpu_signature` is the CPUID
/// signature QEMU leaves in RDX (EC2 and GCE put a fixed value there instead).
pub(crate) fn reset_vmsa(eip: u32, sev_features: u64, vcpu_signature: u32, vmm: Vmm) -> VmsaPage {
    let is_bsp = eip == BSP_EIP;
    let (cs_attrib, ss_attrib, tr_attrib, g_pat, rdx, mxcsr, fcw) = match vmm {
        Vmm::Qemu => (0x9b, 0x93, 0x8b, DEFAULT_PAT, u64::from(vcpu_signature), 0x1f80, 0x37f),
        Vmm::Ec2 => (if is_bsp { 0x9a } else { 0x9b }, 0x92, 0x83, DEFAULT_PAT, 0x600, 0, 0),
        // GCE's hypervisor overrides the guest PAT at reset.
        Vmm::Gce => (0x9b, 0x93, 0x8b, 0x0007_0106, 0x600, 0, 0),
    };
    let mut p = Page::new();
    p.segment(ES, 0, 0x93, 0xffff, 0);
    p.segment(CS, 0xf000, cs_attrib, 0xffff, u64::from(eip & 0xffff_0000));
    p.segment(SS, 0, ss_attrib, 0xffff, 0);
    p.segment(DS, 0, 0x93, 0xffff, 0);
    p.segment(FS, 0, 0x93, 0xffff, 0);
    p.segment(GS, 0, 0x93, 0xffff, 0);
    p.segment(GDTR, 0, 0, 0xffff, 0);
    p.segment(IDTR, 0, 0, 0xffff, 0);
    p.segment(LDTR, 0, 0x82, 0xffff, 0);
    p.segment(TR, 0, tr_attrib, 0xffff, 0);
    p.u64(EFER, EFER_SVME);
    p.u64(CR4, CR4_MCE);
    p.u64(CR0, 0x10);
    p.u64(DR7, 0x400);
    p.u64(DR6, 0xffff_0ff0);
    p.u64(RFLAGS, 0x2);
    p.u64(RIP, u64::from(eip & 0xffff));
    p.u64(G_PAT, g_pat);
    p.u64(RDX, rdx);
    p.u64(SEV_FEATURES, sev_features);
    p.u64(XCR0, 0x1);
    p.put(MXCSR, &u32::to_le_bytes(mxcsr));
    p.put(X87_FCW, &u16::to_le_bytes(fcw));
    p.0
}

/// The VMSA Coconut SVSM's QEMU gives every vCPU: 32-bit protected mode with
/// flat segments, entering the SVSM at `eip`, `SEV_FEATURES` = SNPActive.
pub(crate) fn svsm_vmsa(eip: u64, vcpu_signature: u32) -> VmsaPage {
    let mut p = Page::new();
    p.segment(ES, 16, 0xc93, 0xffff_ffff, 0);
    p.segment(CS, 8, 0xc9b, 0xffff_ffff, 0);
    p.segment(SS, 16, 0xc93, 0xffff_ffff, 0);
    p.segment(DS, 16, 0xc93, 0xffff_ffff, 0);
    p.segment(FS, 16, 0xc93, 0xffff_ffff, 0);
    p.segment(GS, 0, 0x93, 0xffff, 0);
    p.segment(GDTR, 0, 0, 0xffff, 0);
    p.segment(IDTR, 0, 0, 0xffff, 0);
    p.segment(LDTR, 0, 0x82, 0xffff, 0);
    p.segment(TR, 0, 0x8b, 0xffff, 0);
    p.u64(EFER, EFER_SVME);
    p.u64(CR4, CR4_MCE);
    // Protected mode on.
    p.u64(CR0, 0x11);
    p.u64(DR7, 0x400);
    p.u64(DR6, 0xffff_0ff0);
    p.u64(RFLAGS, 0x2);
    p.u64(RIP, eip);
    p.u64(G_PAT, DEFAULT_PAT);
    p.u64(RDX, u64::from(vcpu_signature));
    p.u64(SEV_FEATURES, 0x1);
    p.u64(XCR0, 0x1);
    p.put(MXCSR, &0x1f80u32.to_le_bytes());
    p.0
}
