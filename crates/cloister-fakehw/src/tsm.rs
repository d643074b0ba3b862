//! A fake configfs-tsm report directory: what the kernel creates under
//! `/sys/kernel/config/tsm/report/NAME` for a TDX or SEV-SNP guest, made of plain files and one
//! FIFO, and a "kernel" thread that answers each request with evidence from a fake platform.
//!
//! `provider`, `generation` and `auxblob` (SNP: the host's certificate table) are plain files;
//! `inblob` and `privlevel` are plain files the attester writes into; `outblob` is a FIFO. The
//! thread waits until `inblob` holds 64 bytes, opens `outblob` for writing (which waits for the
//! attester to open it for reading), empties `inblob` and writes the answer for those 64 bytes.
//! The attester under test is the real one, `ConfigFsTsm::with_report_dir`, in this process or
//! in a `cloister serve worker --tee tdx|snp --tsm-report-dir DIR` child: a FIFO works across
//! processes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::FakeHwError;

/// What answers a request: the 64 bytes written to `inblob` in, the evidence `outblob` returns
/// out (empty: the request fails as if the kernel returned nothing).
pub type Answer = Box<dyn Fn(&[u8; 64]) -> Vec<u8> + Send>;

/// A report directory and the thread answering in it; the thread stops when this is dropped.
pub struct FakeTsmReportDir {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl FakeTsmReportDir {
    /// Creates `dir` (which must not exist) as a report directory of `provider` (`tdx_guest`,
    /// `sev_guest`), with `auxblob` when given, and starts answering requests with `answer`.
    pub fn start(
        dir: &Path,
        provider: &str,
        auxblob: Option<&[u8]>,
        answer: Answer,
    ) -> Result<Self, FakeHwError> {
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| FakeHwError::Io { what, path, source }
        };
        fs::create_dir(dir).map_err(io("creating", dir))?;
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            fs::write(&path, bytes).map_err(io("writing", &path))
        };
        file("provider", format!("{provider}\n").as_bytes())?;
        file("generation", b"1\n")?;
        file("inblob", b"")?;
        file("privlevel", b"0\n")?;
        file("privlevel_floor", b"0\n")?;
        if let Some(aux) = auxblob {
            file("auxblob", aux)?;
        }
        let outblob = dir.join("outblob");
        let made = Command::new("mkfifo").arg(&outblob).status().map_err(io("mkfifo", &outblob))?;
        if !made.success() {
            return Err(FakeHwError::Io {
                what: "mkfifo",
                path: outblob,
                source: std::io::Error::other(format!("mkfifo exited with {made}")),
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let kernel = Kernel { dir: dir.to_path_buf(), stop: stop.clone(), served: served.clone() };
        // Detached: a thread waiting in `open(outblob)` for a reader that never comes (the
        // attester died) cannot be interrupted, and must not hold up the test's end.
        std::thread::spawn(move || kernel.run(&answer));
        Ok(Self { dir: dir.to_path_buf(), stop, served })
    }

    /// The report directory (what `--tsm-report-dir` names).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// How many requests were answered so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }
}

impl Drop for FakeTsmReportDir {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Kernel {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl Kernel {
    fn run(&self, answer: &Answer) {
        let inblob = self.dir.join("inblob");
        while !self.stop.load(Ordering::SeqCst) {
            // A request is 64 bytes of report_data; the attester writes it before it opens
            // outblob, and this empties it after answering, so a stale request is never served.
            let ready = fs::metadata(&inblob).is_ok_and(|m| m.len() >= 64);
            if !ready {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let Ok(mut out) = fs::OpenOptions::new().write(true).open(self.dir.join("outblob"))
            else {
                return;
            };
            let request = fs::read(&inblob).unwrap_or_default();
            if fs::write(&inblob, b"").is_err() {
                return;
            }
            let mut report_data = [0u8; 64];
            if let Some(bytes) = request.get(..64) {
                report_data.copy_from_slice(bytes);
            }
            // A reader that went away makes the write fail; the next request is served anyway.
            let _ = out.write_all(&answer(&report_data));
            drop(out);
            self.served.fetch_add(1, Ordering::SeqCst);
        }
    }
}
