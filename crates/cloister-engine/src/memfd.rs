//! Sealed anonymous in-memory files: how bytes checked or decrypted inside the enclave reach a
//! library that only opens paths (onnxruntime's loader, llama.cpp's model loader).
//!
//! The bytes are copied into a `memfd_create` file and sealed against every change (write, grow,
//! shrink, further seals), so what the library opens through `/proc/self/fd/N` is exactly what
//! was checked, nothing outside this process can name it, and its pages are memory, never a
//! disk's. This is the crate's only I/O.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;

use rustix::fs::{MemfdFlags, SealFlags};

/// A sealed in-memory copy of some bytes; the descriptor closes when it drops.
pub(crate) struct SealedFile(File);

impl SealedFile {
    /// Copies `bytes` into a new memfd named `name` (shown in `/proc/self/fd` listings only) and
    /// seals it.
    pub(crate) fn new(name: &str, bytes: &[u8]) -> std::io::Result<Self> {
        let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
        )?;
        Ok(Self(file))
    }

    /// The path through which this process opens the file while the descriptor is open.
    pub(crate) fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.0.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read as _, Write as _};

    use super::SealedFile;

    #[test]
    fn the_file_holds_exactly_the_bytes_and_refuses_every_change() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = SealedFile::new("cloister-test", &bytes).unwrap();
        let mut read = Vec::new();
        std::fs::File::open(sealed.path()).unwrap().read_to_end(&mut read).unwrap();
        assert_eq!(read, bytes);
        // Through the path, as a library (or anyone in this process) would reach it.
        let mut writer = std::fs::OpenOptions::new().write(true).open(sealed.path()).unwrap();
        assert!(writer.write_all(b"changed").is_err(), "a write-sealed memfd took a write");
        assert!(writer.set_len(1).is_err(), "a shrink-sealed memfd was truncated");
        assert!(writer.set_len(20_000).is_err(), "a grow-sealed memfd was extended");
        let mut again = Vec::new();
        std::fs::File::open(sealed.path()).unwrap().read_to_end(&mut again).unwrap();
        assert_eq!(again, bytes);
    }
}
