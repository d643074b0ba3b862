//! The measurement cases of the shared vectors: every row of `measure-cases.tsv`, run through the
//! API the way the command line maps its flags, and the README's cases the table leaves out
//! (other launch-digest rows, EC2, SVSM with 2 vCPUs, the other event logs and their parsed
//! events, the wrong-RTMR negatives, the SIGSTRUCT fields and signatures).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use base64::Engine as _;
use cloister_measure::MeasureError;
use cloister_measure::sgx::{self, Sigstruct};
use cloister_measure::snp::{self, DirectBoot, LaunchInputs, Svsm, VcpuType, Vmm};
use cloister_measure::tdx;

fn vectors_dir() -> PathBuf {
    match std::env::var_os("CLOISTER_VECTORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    }
}

fn vector(relative: &str) -> Vec<u8> {
    let path = vectors_dir().join(relative);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read vector {}: {e}", path.display()))
}

fn h48(s: &str) -> [u8; 48] {
    hex::decode(s).unwrap().try_into().unwrap()
}

/// Splits a command line the way a POSIX shell does for the quoting the table uses: blanks
/// separate words; single quotes keep everything; double quotes keep everything but `\"` and
/// `\\`; a backslash outside quotes escapes the next character.
fn split_args(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => panic!("unterminated ' in {line:?}"),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => panic!("unterminated \" in {line:?}"),
                        },
                        Some(c) => w.push(c),
                        None => panic!("unterminated \" in {line:?}"),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next().expect("escape at end")),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

#[test]
fn the_splitter_handles_shell_quoting() {
    assert_eq!(split_args("a  'b c' \"d \\\" e\" f\\ g ''"), ["a", "b c", "d \" e", "f g", ""]);
}

/// The flags of one row, each with its value (every flag the table uses takes one).
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(arguments: &str) -> Self {
        let words = split_args(arguments);
        assert!(words.len().is_multiple_of(2), "every flag takes a value: {arguments}");
        Self(words.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect())
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == flag).map(|(_, v)| v.as_str())
    }

    fn file(&self, flag: &str) -> Option<Vec<u8>> {
        self.get(flag).map(vector)
    }
}

fn parse_u64(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

/// Runs one row and returns the named field, hex-encoded, as `cloister measure --json` would.
fn measure(tee: &str, field: &str, flags: &Flags) -> Result<String, MeasureError> {
    match tee {
        "snp" => {
            let ovmf = flags.file("--ovmf").unwrap();
            let (kernel, initrd, svsm) =
                (flags.file("--kernel"), flags.file("--initrd"), flags.file("--svsm"));
            let mut inputs = LaunchInputs::new(&ovmf);
            inputs.boot = DirectBoot::from_parts(
                kernel.as_deref(),
                initrd.as_deref(),
                flags.get("--append"),
            )?;
            if let Some(v) = flags.get("--vcpus") {
                inputs.vcpus = v.parse().unwrap();
            }
            inputs.vcpu_type = flags.get("--vcpu-type").map(str::parse).transpose()?;
            if let Some(v) = flags.get("--guest-features") {
                inputs.guest_features = parse_u64(v);
            }
            if let Some(v) = flags.get("--vmm") {
                inputs.vmm = v.parse()?;
            }
            inputs.svsm = svsm.as_deref().map(|image| Svsm {
                image,
                ovmf_vars_size: parse_u64(flags.get("--vars-size").unwrap()),
            });
            assert_eq!(field, "launch_digest");
            snp::launch_digest(&inputs).map(hex::encode)
        }
        "tdx" => {
            let replay = tdx::replay(&flags.file("--event-log").unwrap())?;
            let i: usize = field.strip_prefix("rtmr").unwrap().parse().unwrap();
            Ok(hex::encode(replay.rtmr[i]))
        }
        "sgx" => match field {
            "mrenclave" => {
                sgx::mrenclave_from_sgxs(&flags.file("--sgxs").unwrap()).map(hex::encode)
            }
            "mrsigner" => {
                Ok(hex::encode(Sigstruct::parse(&flags.file("--sigstruct").unwrap())?.mrsigner()))
            }
            "enclave_hash" => {
                Ok(hex::encode(Sigstruct::parse(&flags.file("--sigstruct").unwrap())?.enclave_hash))
            }
            _ => panic!("unknown sgx field {field}"),
        },
        _ => panic!("unknown tee {tee}"),
    }
}

#[test]
fn every_row_of_the_case_table() {
    let table = String::from_utf8(vector("measure-cases.tsv")).unwrap();
    let mut rows = 0;
    let mut failures = Vec::new();
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.splitn(4, '\t').collect();
        let [tee, field, expected, arguments] = cols[..] else { panic!("bad row {line:?}") };
        rows += 1;
        match measure(tee, field, &Flags::parse(arguments)) {
            Ok(got) if got == expected => {}
            Ok(got) => failures.push(format!(
                "{tee} {field} {arguments}\n  expected {expected}\n  got      {got}"
            )),
            Err(e) => failures.push(format!("{tee} {field} {arguments}\n  error: {e}")),
        }
    }
    assert_eq!(rows, 14, "the table has 14 cases");
    assert!(
        failures.is_empty(),
        "{} of {rows} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// --- SEV-SNP: the launch-digest rows the table leaves out ---

const AMDSEV: &str = "measure-snp/virteesev_ovmf_AmdSev_suffix.bin";
const OVMFX64: &str = "measure-snp/virteesev_ovmf_OvmfX64_suffix.bin";
const CMDLINE: &str = "console=ttyS0 loglevel=7";
const EMPTY_BOOT: DirectBoot<'static> = DirectBoot { kernel: b"", initrd: Some(b""), append: None };

fn snp_digest(
    ovmf: &[u8],
    vcpus: u32,
    features: u64,
    boot: Option<DirectBoot<'_>>,
    vmm: Vmm,
) -> String {
    let mut inputs = LaunchInputs::new(ovmf);
    inputs.vcpus = vcpus;
    inputs.guest_features = features;
    inputs.boot = boot;
    inputs.vmm = vmm;
    inputs.vcpu_type = (vmm != Vmm::Gce).then_some(VcpuType::Epyc);
    hex::encode(snp::launch_digest(&inputs).unwrap())
}

#[test]
fn snp_launch_digests() {
    let ovmf = vector(AMDSEV);
    let q = Vmm::Qemu;
    let with_cmdline = DirectBoot { append: Some(CMDLINE), ..EMPTY_BOOT };
    for (vcpus, features, boot, expected) in [
        (
            1,
            0x1,
            Some(with_cmdline),
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
        ),
        (
            1,
            0x21,
            Some(with_cmdline),
            "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
        ),
        (
            1,
            0x1,
            None,
            "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d",
        ),
        (
            1,
            0x21,
            None,
            "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b",
        ),
        (
            4,
            0x1,
            Some(EMPTY_BOOT),
            "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5",
        ),
        (
            4,
            0x21,
            Some(EMPTY_BOOT),
            "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942",
        ),
    ] {
        assert_eq!(
            snp_digest(&ovmf, vcpus, features, boot, q),
            expected,
            "{vcpus} vCPUs, {features:#x}, {boot:?}"
        );
    }
    let x64 = vector(OVMFX64);
    assert_eq!(
        snp_digest(&x64, 1, 0x1, None, q),
        "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005"
    );
    assert_eq!(
        snp_digest(&x64, 1, 0x21, None, q),
        "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385"
    );
    assert_eq!(
        snp_digest(&ovmf, 1, 0x1, Some(EMPTY_BOOT), Vmm::Gce),
        "5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e"
    );
}

#[test]
fn a_precomputed_ovmf_hash_stands_for_the_firmware_pages() {
    let ovmf = vector(AMDSEV);
    let hash = snp::ovmf_hash(&ovmf).unwrap();
    assert_eq!(
        hex::encode(hash),
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    );
    for (features, expected) in [
        (
            0x1,
            "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
        ),
        (
            0x21,
            "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198",
        ),
    ] {
        let mut inputs = LaunchInputs::new(&ovmf);
        inputs.vcpu_type = Some(VcpuType::Epyc);
        inputs.guest_features = features;
        inputs.boot = Some(EMPTY_BOOT);
        assert_eq!(hex::encode(snp::launch_digest(&inputs).unwrap()), expected);
        // The seed replaces the firmware pages: a wrong seed gives another digest.
        inputs.ovmf_hash = Some(hash);
        assert_eq!(hex::encode(snp::launch_digest(&inputs).unwrap()), expected);
        inputs.ovmf_hash = Some([0; 48]);
        assert_ne!(hex::encode(snp::launch_digest(&inputs).unwrap()), expected);
    }
}

/// EC2: the two reference projects disagree. This crate follows virtee/sev-snp-measure's
/// current values (after its commit 4a02bf0, which changed the EC2 VMSA); virtee/sev still
/// asserts the older ones, which this crate does not produce.
#[test]
fn ec2_follows_sev_snp_measure_not_virtee_sev() {
    let ovmf = vector(AMDSEV);
    for (features, sev_snp_measure, virtee_sev) in [
        (
            0x1,
            "0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056",
            "7d3756157c805bf6adf617064c8552e8c1688fa1c8756f11cbf56ba5d25c9270fb69c0505c1cbe1c5c66c0e34c6ed3be",
        ),
        (
            0x21,
            "0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb",
            "6ae80856486b1396af8c82a40351d6ed76a20c785e9c7fa4ffa27c22d5d6313b4b3b458cd3c9968e6f89fb5d8450d7a6",
        ),
    ] {
        let got = snp_digest(&ovmf, 1, features, Some(EMPTY_BOOT), Vmm::Ec2);
        assert_eq!(got, sev_snp_measure, "guest features {features:#x}");
        assert_ne!(got, virtee_sev);
    }
}

#[test]
fn coconut_svsm() {
    let (ovmf, svsm) =
        (vector("measure-snp/snpmeasure_svsm_ovmf.fd"), vector("measure-snp/snpmeasure_svsm.bin"));
    let mut inputs = LaunchInputs::new(&ovmf);
    inputs.vcpu_type = Some("EPYC-v4".parse().unwrap());
    inputs.guest_features = 0x21;
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 540_672 });
    inputs.vcpus = 2;
    assert_eq!(
        hex::encode(snp::launch_digest(&inputs).unwrap()),
        "9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7"
    );
    inputs.vcpus = 4;
    let four = "27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2";
    assert_eq!(hex::encode(snp::launch_digest(&inputs).unwrap()), four);
    // The SVSM's VMSA is fixed: the guest features do not change it.
    inputs.guest_features = 0x1;
    assert_eq!(hex::encode(snp::launch_digest(&inputs).unwrap()), four);
    // The vars size moves the SVSM.
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 540_672 + 4096 });
    assert_ne!(hex::encode(snp::launch_digest(&inputs).unwrap()), four);
    // Things SVSM mode refuses.
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 1000 });
    assert!(matches!(snp::launch_digest(&inputs), Err(MeasureError::OvmfVarsSize { size: 1000 })));
    inputs.svsm = Some(Svsm { image: &svsm, ovmf_vars_size: 540_672 });
    inputs.vmm = Vmm::Ec2;
    assert!(matches!(snp::launch_digest(&inputs), Err(MeasureError::SvsmUnsupported { .. })));
    inputs.vmm = Vmm::Qemu;
    inputs.boot = Some(EMPTY_BOOT);
    assert!(matches!(snp::launch_digest(&inputs), Err(MeasureError::SvsmUnsupported { .. })));
    // The SVSM binary must carry its own footer table.
    inputs.boot = None;
    inputs.svsm = Some(Svsm { image: &ovmf[..4096], ovmf_vars_size: 540_672 });
    assert!(snp::launch_digest(&inputs).is_err());
}

#[test]
fn a_kernel_needs_an_ovmf_with_a_kernel_hashes_section() {
    let x64 = vector(OVMFX64);
    let mut inputs = LaunchInputs::new(&x64);
    inputs.vcpu_type = Some(VcpuType::Epyc);
    inputs.guest_features = 0x21;
    inputs.boot = Some(EMPTY_BOOT);
    let err = snp::launch_digest(&inputs).unwrap_err();
    assert_eq!(err, MeasureError::KernelHashesUnsupported { mode: "SNP" });
    assert!(err.to_string().contains("SNP_KERNEL_HASHES"), "{err}");
    let err =
        snp::sev_es_launch_digest(&x64, Some(&EMPTY_BOOT), 1, Some(VcpuType::Epyc), Vmm::Qemu)
            .unwrap_err();
    assert_eq!(err, MeasureError::KernelHashesUnsupported { mode: "SEV-ES" });
    let err = snp::sev_launch_digest(&x64, Some(&EMPTY_BOOT)).unwrap_err();
    assert_eq!(err, MeasureError::KernelHashesUnsupported { mode: "SEV" });
}

#[test]
fn qemu_needs_the_vcpu_type() {
    let ovmf = vector(AMDSEV);
    let inputs = LaunchInputs::new(&ovmf);
    assert_eq!(snp::launch_digest(&inputs).unwrap_err(), MeasureError::VcpuTypeRequired);
    let mut inputs = LaunchInputs::new(&ovmf);
    inputs.vcpu_type = Some(VcpuType::Epyc);
    inputs.vcpus = 0;
    assert_eq!(snp::launch_digest(&inputs).unwrap_err(), MeasureError::VcpuCount { vcpus: 0 });
    // An explicit signature is the same as the model that has it.
    inputs.vcpus = 1;
    let named = snp::launch_digest(&inputs).unwrap();
    inputs.vcpu_type = Some(VcpuType::Signature(0x0080_0f12));
    assert_eq!(snp::launch_digest(&inputs).unwrap(), named);
    inputs.vcpu_type = Some(VcpuType::EpycMilan);
    assert_ne!(snp::launch_digest(&inputs).unwrap(), named);
}

#[test]
fn sev_es_and_sev_launch_digests() {
    let ovmf = vector(AMDSEV);
    let es = |vcpus| {
        hex::encode(
            snp::sev_es_launch_digest(
                &ovmf,
                Some(&EMPTY_BOOT),
                vcpus,
                Some(VcpuType::Epyc),
                Vmm::Qemu,
            )
            .unwrap(),
        )
    };
    assert_eq!(es(1), "13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c");
    assert_eq!(es(4), "0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91");
    let with_cmdline = DirectBoot { append: Some(CMDLINE), ..EMPTY_BOOT };
    assert_eq!(
        hex::encode(snp::sev_launch_digest(&ovmf, Some(&with_cmdline)).unwrap()),
        "82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff"
    );
    let kernel_only = DirectBoot { kernel: b"", initrd: None, append: None };
    assert_eq!(
        hex::encode(snp::sev_launch_digest(&ovmf, Some(&kernel_only)).unwrap()),
        "77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898"
    );
    assert_eq!(
        hex::encode(snp::sev_launch_digest(&vector(OVMFX64), None).unwrap()),
        "b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da"
    );
}

// --- TDX ---

const COS_RTMR0: &str = "3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6";
const COS_RTMR1: &str = "f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1";
const COS_RTMR2: &str = "4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1";
const ZERO: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

fn rtmrs(file: &str) -> [String; 4] {
    tdx::replay(&vector(file)).unwrap().rtmr.map(hex::encode)
}

#[test]
fn tdx_replays() {
    for (file, expected) in [
        ("measure-tdx/goeventlog_cos-113-intel-tdx.bin", [COS_RTMR0, COS_RTMR1, COS_RTMR2, ZERO]),
        (
            "measure-tdx/goeventlog_cos-113-intel-tdx-dupe-separator.bin",
            [
                "a4de2df23e9611299123ba4359c42a5e578b0f8488bf1bba8ef5606d9ea5d81c97c064b482a5eac537d166bd0f0f752d",
                "0ee9366c928a77092f55e9e114c7394181fd264699155f0df77d23577618d5f650568a17d379355a07bd846e552f4e20",
                COS_RTMR2,
                ZERO,
            ],
        ),
        (
            "measure-tdx/trustee_eventlog_CCEL_data_grub",
            [
                "cec0a104f691f60da2387fea3c2de00c4ac035e2bb479ff02edcce69039d9e9907f0b3e55031da3dc7038f423adebd79",
                "6c289e0c62182d41ebe97bdbc9872d10998a08eaa86adcdc684001a363207ee72942c7522cdf00a4bbc3d784bed7b670",
                "08919d017ba0e52cd6d966351c7de16fe76c1d3d3d3da4554239e4c7d16cb8b82a94e7eaea3a0e6e18eb690b999fd31e",
                ZERO,
            ],
        ),
        (
            "measure-tdx/trustee_eventlog_CCEL_data_gcp",
            [
                "3300980705adf09d28b707b79699d9874892164280832be2c386a715b6e204e0897fb564a064f810659207ba862b304f",
                "204d49f78d29918fe7b2f694e76653861a0c2a018987d2c3a54266eff737232524cf0af68c4d180e2f8c2c0937f21967",
                ZERO,
                ZERO,
            ],
        ),
        (
            "measure-tdx/trustee_eventlog_CCEL_data_grub_gke",
            [
                "bc9945139042cf2cc75caf920aa57f14884ecfd7e893bccc51250c8ce90eb53ce72741e6adaa18183eb1331a87d4544a",
                "c17cb288a4dee302bb9ed8d27257a168f3264ad68cab53757f37eeaa7039657fa887cad65cf910e0fdc435ff110f8a7b",
                "334aeba2c985f8886cea97d1ecffbd512769d528b9a94009583db667ad7d2faa7d37fa145d75b192ceee2d2f10b2eb6d",
                ZERO,
            ],
        ),
        (
            // Zero-padded to 1 MiB.
            "tdx/trustee_CCEL_data",
            [
                "2dc712306a963eadb894ad47dbaa17df44814151555aee11cbb843becca88950ffd079664902e6f22c66f7c8213543f4",
                "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf",
                ZERO,
                ZERO,
            ],
        ),
        (
            "tdx/trustee_CCEL_data_ovmf",
            [
                "8566f998798db09443b244c62de9a3041fb02e2e6936c4396d784bba2e90177329ec5aba3bb484404f2ab9cc90abe193",
                "775b9f6bfe99f8a31396f0d0218e67ffa796d3b96ccf961cbb0deba48c79c00f082cda1a5567c1c16305f1fc210c13c6",
                "94eaf7a7bf398ed8d888c91057ae0261802e4f3df084213a76ca7f0b5055ac9d2241de43cd58d9e8b49c503bbf25f34a",
                ZERO,
            ],
        ),
        // Not asserted by their source; re-verified independently by the vectors' collector.
        (
            "measure-tdx/goeventlog_CCEL_unpadded.data.bin",
            [
                "8083cd6898cc52a90231cdf9c0532bf9513c40465c6f71e56cbe32ee2c11a9dfc030297ca3ca0f62477d6d1f610d3fdb",
                "6484f0d72c03521c0434553be34e8db8228b729e799666d2b7754085c77aa9981f5a440df3047194b24f212ff1160c1e",
                "c3e7ed9d7e909b29732f676d01dc63de869b049362b522a315cb042689670be07344c347cf85d985c7b928d4934e41e1",
                ZERO,
            ],
        ),
        (
            "measure-tdx/goeventlog_event_log.bin",
            [
                "f68df15175d7c810a6b35f1847ba318723b9de337ee00bc63cf42c0a29ad1d94a5b16d3e2ba1b96ec55a46e67b1bea92",
                "8adfd9a44e11725208cbe1cf79726f1c86c0c45c1b5046b603e32650e7b44bdf7101abf1bf6ecbebc38b35f9f28f588e",
                ZERO,
                ZERO,
            ],
        ),
    ] {
        assert_eq!(rtmrs(file), expected, "{file}");
    }
}

#[test]
fn the_duplicate_separator_log_replays_the_same_padded_or_not() {
    let padded =
        tdx::replay(&vector("measure-tdx/goeventlog_cos-113-intel-tdx-dupe-separator.bin"))
            .unwrap();
    let unpadded = vector("measure-tdx/goeventlog_cos-113-intel-tdx-dupe-separator-unpadded.bin");
    assert_eq!(padded.log_len, unpadded.len());
    assert_eq!(tdx::replay(&unpadded).unwrap(), padded);
    // The firmware bug logs (and measures) RTMR1's separator into RTMR0 as well: the replay
    // reports what was measured, and the events show the second separator.
    let separators = |r: &tdx::Replay, mr| {
        r.events.iter().filter(|e| e.event_type == 4 && e.mr_index == mr).count()
    };
    let clean = tdx::replay(&vector("measure-tdx/goeventlog_cos-113-intel-tdx.bin")).unwrap();
    assert_eq!((separators(&clean, 1), separators(&clean, 2)), (1, 1));
    assert_eq!((separators(&padded, 1), separators(&padded, 2)), (2, 0));
    assert_eq!(padded.events.len(), clean.events.len());
    assert_eq!(padded.rtmr[2], clean.rtmr[2]);
    assert_ne!(padded.rtmr[0], clean.rtmr[0]);
}

#[test]
fn a_wrong_expected_rtmr_is_named() {
    let gcp = tdx::replay(&vector("measure-tdx/trustee_eventlog_CCEL_data_gcp")).unwrap();
    let good = h48(
        "3300980705adf09d28b707b79699d9874892164280832be2c386a715b6e204e0897fb564a064f810659207ba862b304f",
    );
    gcp.check(&[Some(good), None, None, None]).unwrap();
    let wrong = h48(
        "3300980705adf09d28b707b79699d9874892164280832be2c386a715b6e204e0897fb564a064f810659207ba862b304d",
    );
    let err = gcp.check(&[Some(wrong), None, None, None]).unwrap_err();
    assert!(matches!(err, MeasureError::RtmrMismatch { rtmr: 0, .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("RTMR0 (CC MR index 1)"), "{message}");
    assert!(message.contains("calculated 3300980705adf09d"), "{message}");
    assert!(
        message.contains("expected 3300980705adf09d") && message.ends_with("304d"),
        "{message}"
    );

    let data = tdx::replay(&vector("tdx/trustee_CCEL_data")).unwrap();
    let rtmr1 = "0fa3be56af61208bbd179dc7b124988eb929319154663c539d6f46445ecac2fec287075047ff7bd1922829fec28cd3cf";
    data.check(&[None, Some(h48(rtmr1)), Some([0; 48]), Some([0; 48])]).unwrap();
    let wrong = format!("2{}", &rtmr1[1..]);
    let err = data.check(&[None, Some(h48(&wrong)), None, None]).unwrap_err();
    assert!(matches!(err, MeasureError::RtmrMismatch { rtmr: 1, .. }), "{err}");
    assert!(err.to_string().contains("CC MR index 2"), "{err}");
}

/// The parsed events equal trustee's expected parse output: index, type, digest and data.
#[test]
fn events_match_trustees_parse_output() {
    for (log, json) in [
        (
            "measure-tdx/trustee_eventlog_CCEL_data_grub",
            "measure-tdx/trustee_eventlog_CCEL_data_grub_out.json",
        ),
        (
            "measure-tdx/trustee_eventlog_CCEL_data_grub_gke",
            "measure-tdx/trustee_eventlog_CCEL_data_grub_gke_out.json",
        ),
        (
            "measure-tdx/trustee_eventlog_CCEL_AAEL_alibabacloud",
            "measure-tdx/trustee_eventlog_CCEL_AAEL_alibabacloud_out.json",
        ),
        ("tdx/trustee_CCEL_data", "measure-tdx/trustee_eventlog_CCEL_data_out.json"),
        ("tdx/trustee_CCEL_data_ovmf", "measure-tdx/trustee_eventlog_CCEL_data_ovmf_out.json"),
    ] {
        let replay = tdx::replay(&vector(log)).unwrap();
        let expected: serde_json::Value = serde_json::from_slice(&vector(json)).unwrap();
        let expected = expected["uefi_event_logs"].as_array().unwrap();
        assert_eq!(replay.events.len(), expected.len(), "{log}: event count");
        for (got, want) in replay.events.iter().zip(expected) {
            let context = format!("{log} event {}", got.number);
            assert_eq!(u64::from(got.mr_index), want["index"].as_u64().unwrap(), "{context}");
            assert_eq!(
                tdx::event_type_name(got.event_type),
                want["type_name"].as_str(),
                "{context}"
            );
            let digests = want["digests"].as_array().unwrap();
            assert_eq!(digests.len(), 1, "{context}");
            assert_eq!(digests[0]["alg"], "SHA-384", "{context}");
            assert_eq!(
                hex::encode(got.digest),
                digests[0]["digest"].as_str().unwrap(),
                "{context}"
            );
            let data = base64::engine::general_purpose::STANDARD
                .decode(want["event"].as_str().unwrap())
                .unwrap();
            assert_eq!(got.data_len as usize, data.len(), "{context}");
        }
    }
}

// --- SGX ---

#[test]
fn the_test_enclave_sigstruct() {
    let raw = vector("measure-sgx/fortanix_test_enclave.sig");
    let s = Sigstruct::parse(&raw).unwrap();
    assert_eq!(hex::encode(&raw[..12]), "06000000e100000000000100");
    assert_eq!(s.vendor, 0);
    assert_eq!(s.date_bcd, 0x2016_1214);
    assert_eq!(s.date(), Some((2016, 12, 14)));
    let mrenclave = "784acfd7d5096a8f0fbd3265760bff21b120f62407a9a9e5ba31aa3c8ed198fc";
    assert_eq!(hex::encode(s.enclave_hash), mrenclave);
    assert_eq!(s.attributes, sgx::Attributes { flags: 0x4, xfrm: 0x3 });
    assert_eq!(
        s.attribute_mask,
        sgx::Attributes { flags: 0xffff_ffff_ffff_fffd, xfrm: 0xffff_ffff_ffff_ff1b }
    );
    // The mask leaves DEBUG out, so this test enclave may also run in debug mode.
    assert!(s.allows_debug());
    assert_eq!((s.misc_select, s.misc_mask), (0, 0xffff_ffff));
    assert_eq!((s.isv_prod_id, s.isv_svn), (65535, 0));
    assert_eq!(
        hex::encode(s.mrsigner()),
        "fb4bab3d6036ac1d730fa83d7366df1dd2dfeac194ef335d6854d8a6c6475542"
    );
    s.verify_signature().unwrap();
    // The SGXS stream it signs measures to its ENCLAVEHASH, which is the SHA-256 of the whole
    // stream (it has no unmeasured records).
    let sgxs = vector("measure-sgx/fortanix_test_enclave.sgxs");
    assert_eq!(sgx::mrenclave_from_sgxs(&sgxs).unwrap(), s.enclave_hash);
    use sha2::Digest as _;
    assert_eq!(<[u8; 32]>::from(sha2::Sha256::digest(&sgxs)), s.enclave_hash);
}

#[test]
fn the_sdk_sample_key_sigstruct() {
    let s = Sigstruct::parse(&vector("measure-sgx/fortanix_sig1.sigstruct.bin")).unwrap();
    assert_eq!(
        hex::encode(s.enclave_hash),
        "c50673624a6cb17c1c6c2a4e6906f47a170c4629b8723781d1017ef376f1a75d"
    );
    assert_eq!(s.date(), Some((2016, 1, 9)));
    // Signed with `-x 3/0xe4`: XFRM 3, and the mask ignores the bits 0xe4 (it is their
    // complement).
    assert_eq!((s.attributes.xfrm, s.attribute_mask.xfrm), (3, !0xe4));
    assert_eq!(
        hex::encode(s.mrsigner()),
        "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"
    );
    assert_eq!(s.modulus(), vector("measure-sgx/fortanix_sig1.key_n.bin"));
    s.verify_signature().unwrap();
}

#[test]
fn a_tampered_sigstruct_does_not_verify() {
    let raw = vector("measure-sgx/fortanix_test_enclave.sig");
    for (at, what) in [
        (960, "the ENCLAVEHASH"),
        (1024, "ISVPRODID"),
        (20, "the date"),
        (516, "the signature"),
        (1040 + 7, "Q1"),
        (1424 + 100, "Q2"),
    ] {
        let mut bad = raw.clone();
        bad[at] ^= 1;
        let err = Sigstruct::parse(&bad).unwrap().verify_signature().unwrap_err();
        assert!(matches!(err, MeasureError::SignatureInvalid { .. }), "{what}: {err}");
    }
    // Outside the signed parts and the check values nothing is covered (reserved bytes).
    let mut unsigned = raw.clone();
    unsigned[1030] ^= 1;
    Sigstruct::parse(&unsigned).unwrap().verify_signature().unwrap();
    // Another signer's modulus changes MRSIGNER and fails the signature.
    let mut other = raw;
    other[200] ^= 1;
    let s = Sigstruct::parse(&other).unwrap();
    assert_ne!(
        hex::encode(s.mrsigner()),
        "fb4bab3d6036ac1d730fa83d7366df1dd2dfeac194ef335d6854d8a6c6475542"
    );
    assert!(s.verify_signature().is_err());
}
