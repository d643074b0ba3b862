//! QEMU's SEV hashes table for measured direct boot: the SHA-256 of the kernel, the initrd and
//! the command line, which QEMU writes where OVMF's footer table says and OVMF checks before it
//! runs what it loaded.
//!
//! Layout (QEMU `target/i386/sev.c`, `SevHashTable`): the table GUID and a `u16` length (168),
//! then three entries of GUID, `u16` length (50) and a 32-byte digest, in the order command
//! line, initrd, kernel; the whole is zero-padded to a multiple of 16 bytes (176). The command
//! line is hashed with its terminating NUL; a missing initrd is hashed as empty bytes.

use sha2::{Digest, Sha256};

use super::DirectBoot;
use super::ovmf::{Guid, PAGE};
use crate::MeasureError;

const HEADER_GUID: Guid =
    Guid::new(0x9438_d606, 0x4f22, 0x4cc9, [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21]);
const KERNEL_GUID: Guid =
    Guid::new(0x4de7_9437, 0xabd2, 0x427f, [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b]);
const INITRD_GUID: Guid =
    Guid::new(0x44ba_f731, 0x3a2f, 0x4bd7, [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d]);
const CMDLINE_GUID: Guid =
    Guid::new(0x97d0_2dd8, 0xbd20, 0x4c94, [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a]);

const ENTRY_LEN: usize = 16 + 2 + 32;
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// The table as QEMU writes it, padded to 16 bytes.
pub(crate) const PADDED_LEN: usize = TABLE_LEN.next_multiple_of(16);

/// The padded hashes table for `boot`.
pub(crate) fn table(boot: &DirectBoot<'_>) -> [u8; PADDED_LEN] {
    let mut cmdline = Sha256::new();
    cmdline.update(boot.append.unwrap_or_default().as_bytes());
    cmdline.update([0]);
    let entries: [(Guid, [u8; 32]); 3] = [
        (CMDLINE_GUID, cmdline.finalize().into()),
        (INITRD_GUID, Sha256::digest(boot.initrd.unwrap_or_default()).into()),
        (KERNEL_GUID, Sha256::digest(boot.kernel).into()),
    ];
    let mut out = [0u8; PADDED_LEN];
    out[..16].copy_from_slice(HEADER_GUID.bytes());
    out[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
    for (i, (guid, digest)) in entries.iter().enumerate() {
        let at = 18 + i * ENTRY_LEN;
        out[at..at + 16].copy_from_slice(guid.bytes());
        out[at + 16..at + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
        out[at + 18..at + ENTRY_LEN].copy_from_slice(digest);
    }
    out
}

/// The page that holds the table at `table_gpa`'s offset within its page, zeros around it.
pub(crate) fn page(
    boot: &DirectBoot<'_>,
    table_gpa: u32,
) -> Result<Box<[u8; PAGE as usize]>, MeasureError> {
    let offset = (u64::from(table_gpa) % PAGE) as usize;
    if offset + PADDED_LEN > PAGE as usize {
        return Err(MeasureError::MalformedFirmware {
            image: "OVMF",
            reason: format!(
                "the SEV hash table at {table_gpa:#x} would cross a page boundary \
                 ({PADDED_LEN} bytes from offset {offset:#x})"
            ),
        });
    }
    let mut page = Box::new([0u8; PAGE as usize]);
    page[offset..offset + PADDED_LEN].copy_from_slice(&table(boot));
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(TABLE_LEN, 168);
        assert_eq!(PADDED_LEN, 176);
        let boot = DirectBoot { kernel: b"k", initrd: None, append: Some("c") };
        let t = table(&boot);
        assert_eq!(t[16..18], [168, 0]);
        assert_eq!(&t[18..34], CMDLINE_GUID.bytes());
        assert_eq!(t[34..36], [50, 0]);
        assert_eq!(t[36..68], <[u8; 32]>::from(Sha256::digest(b"c\0")));
        assert_eq!(t[86..118], <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(&t[118..134], KERNEL_GUID.bytes());
        assert_eq!(t[136..168], <[u8; 32]>::from(Sha256::digest(b"k")));
        assert_eq!(t[168..], [0; 8]);
        // No command line and an empty one both hash a lone NUL.
        let none = table(&DirectBoot { append: None, ..boot });
        let empty = table(&DirectBoot { append: Some(""), ..boot });
        assert_eq!(none, empty);
    }

    #[test]
    fn the_table_must_fit_its_page() {
        let boot = DirectBoot { kernel: b"", initrd: None, append: None };
        let p = page(&boot, 0x80_0c00).unwrap();
        assert_eq!(&p[0xc00..0xc10], HEADER_GUID.bytes());
        assert!(p[..0xc00].iter().all(|&b| b == 0));
        assert!(page(&boot, 0x80_0f60).is_err());
        assert!(page(&boot, 0x80_0f50).is_ok());
    }
}
