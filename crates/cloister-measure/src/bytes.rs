//! Bounds-checked little-endian reads over untrusted bytes: every read names where it stopped.

/// A read position in a byte slice. Reads return `None` when the slice ends first, so the
/// caller can turn that into an error naming the structure it was reading.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The offset of the next byte to be read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let out = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
}

/// The little-endian `u32` at `at`, if the slice holds it.
pub(crate) fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    data.get(at..end)?.try_into().ok().map(u32::from_le_bytes)
}

/// The little-endian `u16` at `at`, if the slice holds it.
pub(crate) fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    let end = at.checked_add(2)?;
    data.get(at..end)?.try_into().ok().map(u16::from_le_bytes)
}

/// The little-endian `u64` at `at`, if the slice holds it.
pub(crate) fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    let end = at.checked_add(8)?;
    data.get(at..end)?.try_into().ok().map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut c = Cursor::new(&[1, 2, 3, 4, 5]);
        assert_eq!(c.u16(), Some(0x0201));
        assert_eq!(c.u32(), None);
        assert_eq!(c.pos(), 2, "a failed read does not move");
        assert_eq!(c.rest(), &[3, 4, 5]);
        assert_eq!(c.u8(), Some(3));
        assert_eq!(c.bytes(usize::MAX), None);
        assert_eq!(u32_at(&[1, 0, 0, 0], 0), Some(1));
        assert_eq!(u32_at(&[1, 0, 0, 0], 1), None);
        assert_eq!(u32_at(&[], usize::MAX), None);
        assert_eq!(u16_at(&[0, 1], 0), Some(0x100));
        assert_eq!(u64_at(&[0; 7], 0), None);
    }
}
