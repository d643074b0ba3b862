//! The firmware images the SNP launch measures: OVMF (edk2) and the Coconut SVSM binary, read
//! through the GUIDed footer table at their end and the SEV metadata it points to.
//!
//! The footer table sits just before the last 32 bytes of the image (the reset vector). Its last
//! 18 bytes are the footer entry: a `u16` length covering the whole table, then the table GUID.
//! Going backwards from there, every entry is `data ‖ u16 length ‖ GUID`, the length counting
//! the data and the 18-byte header. The SEV metadata entry holds the distance of the `ASEV`
//! metadata block from the end of the image; the block lists the pages OVMF expects the VMM to
//! launch-update besides the firmware itself (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`).

use std::fmt;

use crate::MeasureError;
use crate::bytes::{Cursor, u32_at};

/// One page, the unit of every SNP launch update.
pub(crate) const PAGE: u64 = 4096;
/// The firmware is mapped so that it ends at 4 GiB.
pub(crate) const FOUR_GIB: u64 = 1 << 32;

/// Bytes at the very end of the image after the footer table (the reset vector and padding).
const TAIL: usize = 32;
/// A table entry's header: `u16` length and a GUID.
const ENTRY_HEADER: usize = 18;
/// The `ASEV` metadata header: signature, size, version, item count.
const METADATA_HEADER: usize = 16;
/// One metadata section descriptor: GPA, size, type (three `u32`).
const SECTION_DESC: usize = 12;

/// A GUID as edk2 stores it: the first three fields little-endian, the last eight bytes as
/// written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Guid([u8; 16]);

impl Guid {
    pub(crate) const fn new(a: u32, b: u16, c: u16, d: [u8; 8]) -> Self {
        let a = a.to_le_bytes();
        let b = b.to_le_bytes();
        let c = c.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5],
            d[6], d[7],
        ])
    }

    pub(crate) const fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{}-{}",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]]),
            hex::encode(&g[8..10]),
            hex::encode(&g[10..16]),
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The footer entry that closes the table.
pub(crate) const FOOTER_GUID: Guid =
    Guid::new(0x96b5_82de, 0x1fb2, 0x45f7, [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d]);
/// Where OVMF expects QEMU's kernel/initrd/cmdline hashes table (GPA and size, two `u32`).
pub(crate) const SEV_HASH_TABLE_RV_GUID: Guid =
    Guid::new(0x7255_371f, 0x3a3b, 0x4b04, [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54]);
/// The SEV-ES reset block: the application processors' reset EIP (`u32`).
pub(crate) const SEV_ES_RESET_BLOCK_GUID: Guid =
    Guid::new(0x00f7_71de, 0x1a7e, 0x4fcb, [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e]);
/// The SEV metadata: the `ASEV` block's offset from the end of the image (`u32`).
pub(crate) const SEV_METADATA_GUID: Guid =
    Guid::new(0xdc88_6566, 0x984a, 0x4798, [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc]);
/// Coconut SVSM's information block: the entry point's offset in the SVSM image (`u32`).
pub(crate) const SVSM_INFO_GUID: Guid =
    Guid::new(0xa789_a612, 0x0597, 0x4c4b, [0xa4, 0x9f, 0xcb, 0xb1, 0xfe, 0x9d, 0x1d, 0xdd]);

/// Which image an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageKind {
    Ovmf,
    Svsm,
}

impl ImageKind {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Ovmf => "OVMF",
            Self::Svsm => "SVSM",
        }
    }
}

/// What a metadata section asks the VMM to put in the guest before launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// `SNP_SEC_MEM` (1): zero pages OVMF's SEC phase uses.
    SecMem,
    /// `SNP_SECRETS` (2): the secrets page the PSP fills.
    Secrets,
    /// `CPUID` (3): the CPUID page the PSP checks.
    Cpuid,
    /// `SVSM_CAA` (4): the SVSM calling-area pages, zero.
    SvsmCaa,
    /// `SNP_KERNEL_HASHES` (0x10): the page holding QEMU's hashes table.
    KernelHashes,
}

impl SectionKind {
    fn from_u32(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::SecMem,
            2 => Self::Secrets,
            3 => Self::Cpuid,
            4 => Self::SvsmCaa,
            0x10 => Self::KernelHashes,
            _ => return None,
        })
    }

    /// Sections measured as one page whatever size they declare.
    const fn is_single_page(self) -> bool {
        matches!(self, Self::Secrets | Self::Cpuid)
    }
}

/// One metadata section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) gpa: u64,
    pub(crate) size: u64,
    pub(crate) kind: SectionKind,
}

impl Section {
    /// The bytes of guest memory the section's launch updates cover.
    fn span(&self) -> u64 {
        if self.kind.is_single_page() { PAGE } else { self.size }
    }
}

/// A parsed firmware image, placed in guest memory.
#[derive(Debug)]
pub(crate) struct Image<'a> {
    kind: ImageKind,
    data: &'a [u8],
    gpa: u64,
    table: Vec<(Guid, &'a [u8])>,
    sections: Vec<Section>,
}

impl<'a> Image<'a> {
    /// Parses `data` as an image of `kind` mapped to end at guest address `end_at`.
    pub(crate) fn parse(
        kind: ImageKind,
        data: &'a [u8],
        end_at: u64,
    ) -> Result<Self, MeasureError> {
        let gpa = place(kind, data, end_at)?;
        let table = footer_table(kind, data)?;
        let mut image = Self { kind, data, gpa, table, sections: Vec::new() };
        if let Some(entry) = image.entry(SEV_METADATA_GUID) {
            let offset = entry_u32(kind, entry, "SEV metadata")?;
            image.sections = metadata(kind, data, offset)?;
        }
        Ok(image)
    }

    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn gpa(&self) -> u64 {
        self.gpa
    }

    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub(crate) fn has_section(&self, kind: SectionKind) -> bool {
        self.sections.iter().any(|s| s.kind == kind)
    }

    pub(crate) fn entry(&self, guid: Guid) -> Option<&'a [u8]> {
        self.table.iter().find(|(g, _)| *g == guid).map(|(_, data)| *data)
    }

    /// The first `u32` of a table entry that must be there.
    pub(crate) fn required_u32(&self, guid: Guid, name: &'static str) -> Result<u32, MeasureError> {
        let entry = self.entry(guid).ok_or(MeasureError::MissingFirmwareEntry {
            image: self.kind.name(),
            entry: name,
            guid: guid.to_string(),
        })?;
        entry_u32(self.kind, entry, name)
    }

    /// The application processors' reset address from the SEV-ES reset block.
    pub(crate) fn sev_es_reset_eip(&self) -> Result<u32, MeasureError> {
        self.required_u32(SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")
    }

    /// The guest address of QEMU's hashes table, or `None` when OVMF has no place for it.
    pub(crate) fn sev_hash_table_gpa(&self) -> Result<Option<u32>, MeasureError> {
        match self.entry(SEV_HASH_TABLE_RV_GUID) {
            None => Ok(None),
            Some(entry) => {
                let gpa = entry_u32(self.kind, entry, "SEV hash table")?;
                Ok((gpa != 0).then_some(gpa))
            }
        }
    }
}

/// Where an image of `data.len()` bytes starts when it ends at `end_at`.
pub(crate) fn place(kind: ImageKind, data: &[u8], end_at: u64) -> Result<u64, MeasureError> {
    let len = data.len() as u64;
    let bad_size = || MeasureError::FirmwareSize { image: kind.name(), len: data.len() };
    if len == 0 || !len.is_multiple_of(PAGE) {
        return Err(bad_size());
    }
    end_at.checked_sub(len).ok_or_else(bad_size)
}

fn malformed(kind: ImageKind, reason: String) -> MeasureError {
    MeasureError::MalformedFirmware { image: kind.name(), reason }
}

fn entry_u32(kind: ImageKind, entry: &[u8], name: &str) -> Result<u32, MeasureError> {
    u32_at(entry, 0).ok_or_else(|| {
        malformed(kind, format!("the {name} entry holds {} bytes, fewer than 4", entry.len()))
    })
}

/// The footer table's entries, nearest the footer first.
fn footer_table(kind: ImageKind, data: &[u8]) -> Result<Vec<(Guid, &[u8])>, MeasureError> {
    let no_table = || MeasureError::NoFooterTable { image: kind.name() };
    let footer_at = data.len().checked_sub(TAIL + ENTRY_HEADER).ok_or_else(no_table)?;
    let (total, guid) = entry_header(data, footer_at).ok_or_else(no_table)?;
    if guid != FOOTER_GUID {
        return Err(no_table());
    }
    let table_len = usize::from(total).checked_sub(ENTRY_HEADER).ok_or_else(|| {
        malformed(kind, format!("the footer entry's length {total} is below its 18-byte header"))
    })?;
    let start = footer_at.checked_sub(table_len).ok_or_else(|| {
        malformed(kind, format!("the footer table ({table_len} bytes) starts before the image"))
    })?;
    let mut end = footer_at;
    let mut entries: Vec<(Guid, &[u8])> = Vec::new();
    while end > start {
        let header_at =
            end.checked_sub(ENTRY_HEADER).filter(|&at| at >= start).ok_or_else(|| {
                malformed(
                    kind,
                    format!(
                        "{} bytes at the start of the footer table are not a whole entry",
                        end - start
                    ),
                )
            })?;
        let (len, guid) = entry_header(data, header_at).ok_or_else(no_table)?;
        let len = usize::from(len);
        if len < ENTRY_HEADER {
            return Err(malformed(
                kind,
                format!(
                    "footer table entry {guid} declares {len} bytes, less than its 18-byte header"
                ),
            ));
        }
        let entry_start = end.checked_sub(len).filter(|&at| at >= start).ok_or_else(|| {
            malformed(
                kind,
                format!("footer table entry {guid} ({len} bytes) runs past the table's start"),
            )
        })?;
        if entries.iter().any(|(g, _)| *g == guid) {
            return Err(malformed(kind, format!("footer table entry {guid} appears twice")));
        }
        entries.push((guid, &data[entry_start..header_at]));
        end = entry_start;
    }
    Ok(entries)
}

fn entry_header(data: &[u8], at: usize) -> Option<(u16, Guid)> {
    let mut c = Cursor::new(data.get(at..)?);
    Some((c.u16()?, Guid(c.array()?)))
}

/// The SEV metadata sections, in the order the image lists them.
fn metadata(
    kind: ImageKind,
    data: &[u8],
    offset_from_end: u32,
) -> Result<Vec<Section>, MeasureError> {
    let bad = |reason: String| malformed(kind, format!("SEV metadata: {reason}"));
    let start = data
        .len()
        .checked_sub(offset_from_end as usize)
        .filter(|_| offset_from_end != 0)
        .ok_or_else(|| {
        bad(format!("offset {offset_from_end} from the end is outside the image"))
    })?;
    let mut c = Cursor::new(&data[start..]);
    let truncated = || bad("the header runs past the end of the image".to_owned());
    let signature = c.array::<4>().ok_or_else(truncated)?;
    let size = c.u32().ok_or_else(truncated)? as usize;
    let version = c.u32().ok_or_else(truncated)?;
    let count = c.u32().ok_or_else(truncated)? as usize;
    if &signature != b"ASEV" {
        return Err(bad(format!("signature is {signature:02x?}, not \"ASEV\"")));
    }
    if version != 1 {
        return Err(bad(format!("version {version} (only version 1 is known)")));
    }
    let items = size
        .checked_sub(METADATA_HEADER)
        .and_then(|len| data[start..].get(METADATA_HEADER..METADATA_HEADER + len))
        .ok_or_else(|| bad(format!("block size {size} does not fit the image")))?;
    if count.checked_mul(SECTION_DESC).is_none_or(|need| need > items.len()) {
        return Err(bad(format!("{count} sections do not fit its {size}-byte block")));
    }
    let mut c = Cursor::new(items);
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let (Some(gpa), Some(size), Some(raw)) = (c.u32(), c.u32(), c.u32()) else {
            return Err(truncated());
        };
        let kind = SectionKind::from_u32(raw)
            .ok_or_else(|| bad(format!("section {i} has unknown type {raw:#x}")))?;
        let section = Section { gpa: u64::from(gpa), size: u64::from(size), kind };
        let multiple = section.kind.is_single_page() || section.size.is_multiple_of(PAGE);
        if !section.gpa.is_multiple_of(PAGE) || !multiple {
            return Err(bad(format!(
                "section {i} ({:?} at {gpa:#x}, {size:#x} bytes) is not page-aligned",
                section.kind
            )));
        }
        if section.gpa + section.span() > FOUR_GIB {
            return Err(bad(format!("section {i} at {gpa:#x} runs past 4 GiB")));
        }
        sections.push(section);
    }
    // A page can be launch-updated once: overlapping sections would make the launch fail.
    let mut sorted = sections.clone();
    sorted.sort_by_key(|s| s.gpa);
    for pair in sorted.windows(2) {
        if let [a, b] = pair
            && a.gpa + a.span() > b.gpa
        {
            return Err(bad(format!("sections at {:#x} and {:#x} overlap", a.gpa, b.gpa)));
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_print_in_the_usual_form() {
        assert_eq!(FOOTER_GUID.to_string(), "96b582de-1fb2-45f7-baea-a366c55a082d");
        assert_eq!(SVSM_INFO_GUID.to_string(), "a789a612-0597-4c4b-a49f-cbb1fe9d1ddd");
        // The stored form starts with the first field little-endian.
        assert_eq!(&FOOTER_GUID.bytes()[..4], &[0xde, 0x82, 0xb5, 0x96]);
    }
}
