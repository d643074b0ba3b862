//! Fuzz target: arbitrary bytes as the OVMF image of an SEV-SNP launch (fixed other inputs: two
//! EPYC-Milan vCPUs, each VMM, with and without a kernel), and of the SEV-ES and SEV launch
//! digests. Nothing may panic. Inputs are padded up to whole pages, so the footer table and the
//! SEV metadata are reached, not just the size check.
#![no_main]

use cloister_measure::snp::{self, DirectBoot, LaunchInputs, VcpuType, Vmm};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The image ends where the fuzzer's bytes end: pad at the front, where OVMF has code.
    let pages = data.len().div_ceil(4096).clamp(1, 64);
    let mut ovmf = vec![0u8; pages * 4096];
    let tail = &data[data.len().saturating_sub(ovmf.len())..];
    let at = ovmf.len() - tail.len();
    ovmf[at..].copy_from_slice(tail);

    let boot =
        DirectBoot { kernel: b"kernel", initrd: Some(b"initrd"), append: Some("console=ttyS0") };
    for vmm in [Vmm::Qemu, Vmm::Ec2, Vmm::Gce] {
        for kernel in [None, Some(boot)] {
            let mut inputs = LaunchInputs::new(&ovmf);
            inputs.vcpus = 2;
            inputs.vcpu_type = Some(VcpuType::EpycMilan);
            inputs.vmm = vmm;
            inputs.boot = kernel;
            let _ = snp::launch_digest(&inputs);
        }
    }
    let _ = snp::sev_es_launch_digest(&ovmf, Some(&boot), 2, Some(VcpuType::Epyc), Vmm::Qemu);
    let _ = snp::sev_launch_digest(&ovmf, Some(&boot));
});
