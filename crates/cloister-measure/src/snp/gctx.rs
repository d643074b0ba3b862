//! The SNP guest context's launch digest: the SHA-384 chain over `PAGE_INFO` structures that the
//! AMD-SP extends on every `SNP_LAUNCH_UPDATE` (SEV-SNP ABI specification, section 8.17,
//! "Layout of the PAGE_INFO structure").
//!
//! `PAGE_INFO` is 0x70 bytes: the current digest (48), the page's contents digest (48), the
//! structure's length `u16` (0x70), the page type `u8`, the IMI flag `u8`, the VMPL3/2/1
//! permissions (one `u8` each), a reserved byte and the page's guest physical address `u64`. The
//! new digest is the SHA-384 of that structure. Pages that are not normal or VMSA pages
//! contribute 48 zero bytes as contents; the VMSA page's address is recorded as
//! `0xFFFFFFFFF000` (all ones, page-aligned, bits above 51 clear).

use sha2::{Digest, Sha384};

use super::ovmf::PAGE;

/// The address the launch digest records for every VMSA page.
const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;
const PAGE_INFO_LEN: u16 = 0x70;
const ZEROS: [u8; 48] = [0; 48];

/// `PAGE_INFO.PAGE_TYPE` values.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum PageType {
    Normal = 1,
    Vmsa = 2,
    Zero = 3,
    Unmeasured = 4,
    Secrets = 5,
    Cpuid = 6,
}

/// The launch digest being built.
#[derive(Debug, Clone)]
pub(crate) struct Gctx {
    ld: [u8; 48],
}

impl Gctx {
    /// A fresh context: the digest starts as 48 zero bytes.
    pub(crate) fn new() -> Self {
        Self { ld: ZEROS }
    }

    /// A context that continues from a digest computed earlier (a precomputed OVMF hash).
    pub(crate) fn seeded(ld: [u8; 48]) -> Self {
        Self { ld }
    }

    pub(crate) fn digest(&self) -> [u8; 48] {
        self.ld
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; 48]) {
        let mut info = [0u8; PAGE_INFO_LEN as usize];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[96..98].copy_from_slice(&PAGE_INFO_LEN.to_le_bytes());
        info[98] = page_type as u8;
        // IMI_PAGE, VMPL3/2/1 permissions and the reserved byte stay zero.
        info[104..112].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }

    /// Measures `data` page by page from `gpa`; `data` is a whole number of pages.
    pub(crate) fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        debug_assert_eq!(data.len() as u64 % PAGE, 0);
        let mut at = gpa;
        for page in data.chunks(PAGE as usize) {
            self.update(PageType::Normal, at, &Sha384::digest(page).into());
            at += PAGE;
        }
    }

    /// Measures one VMSA page given the SHA-384 of its contents.
    pub(crate) fn vmsa_page(&mut self, contents_digest: &[u8; 48]) {
        self.update(PageType::Vmsa, VMSA_GPA, contents_digest);
    }

    /// Records `len` bytes (a whole number of pages) of zero pages from `gpa`.
    pub(crate) fn zero_pages(&mut self, gpa: u64, len: u64) {
        debug_assert_eq!(len % PAGE, 0);
        for i in 0..len / PAGE {
            self.update(PageType::Zero, gpa + i * PAGE, &ZEROS);
        }
    }

    /// Records `len` bytes (a whole number of pages) of unmeasured pages from `gpa`.
    pub(crate) fn unmeasured_pages(&mut self, gpa: u64, len: u64) {
        debug_assert_eq!(len % PAGE, 0);
        for i in 0..len / PAGE {
            self.update(PageType::Unmeasured, gpa + i * PAGE, &ZEROS);
        }
    }

    pub(crate) fn secrets_page(&mut self, gpa: u64) {
        self.update(PageType::Secrets, gpa, &ZEROS);
    }

    pub(crate) fn cpuid_page(&mut self, gpa: u64) {
        self.update(PageType::Cpuid, gpa, &ZEROS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_update_hashes_the_page_info_layout() {
        // Built by hand from the specification's table, independently of `update`.
        let mut g = Gctx::new();
        g.secrets_page(0x1234_5000);
        let mut info = Vec::new();
        info.extend_from_slice(&[0; 96]);
        info.extend_from_slice(&[0x70, 0x00, 5, 0, 0, 0, 0, 0]);
        info.extend_from_slice(&0x1234_5000u64.to_le_bytes());
        assert_eq!(info.len(), 0x70);
        assert_eq!(g.digest(), <[u8; 48]>::from(Sha384::digest(&info)));
    }

    #[test]
    fn every_page_is_one_update() {
        let mut a = Gctx::new();
        a.zero_pages(0x8000, 3 * PAGE);
        let mut b = Gctx::new();
        for gpa in [0x8000, 0x9000, 0xa000] {
            b.update(PageType::Zero, gpa, &ZEROS);
        }
        assert_eq!(a.digest(), b.digest());
        let mut c = Gctx::new();
        c.zero_pages(0x8000, 0);
        assert_eq!(c.digest(), ZEROS, "no pages, no update");
    }
}
