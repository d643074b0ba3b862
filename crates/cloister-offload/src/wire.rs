//! The messages between the TEE and the untrusted accelerator, parsed by their own lengths.
//!
//! Every message is `MAGIC ‖ kind (u8) ‖ body`, integers little-endian, nothing after the body:
//!
//! | kind | body |
//! |---|---|
//! | 1 weights  | `n u32 ‖ k u32 ‖ n·k × i8` (row-major, −127..=127) |
//! | 2 multiply | `id [16] ‖ weights SHA-256 [32] ‖ m u32 ‖ n u32 ‖ m·n × u32` (blinded, each < p) |
//! | 3 product  | `id [16] ‖ m u32 ‖ k u32 ‖ m·k × u32` (each < p) |
//! | 4 refusal  | `id [16] ‖ code u8 ‖ len u16 ‖ len bytes of UTF-8` |
//! | 5 held     | `weights SHA-256 [32]` (the answer to a weights upload) |
//!
//! Parsing refuses a wrong magic or kind, a length that does not match the counts, counts over
//! [`MAX_ELEMENTS`], and trailing bytes. Range checks of field elements (each `< p`) are the
//! caller's: the TEE must refuse a product holding a value `≥ p` (a multiple of p added to a
//! correct value would otherwise be invisible modulo p).

use crate::OffloadError;

/// Starts every message.
pub const MAGIC: &[u8; 8] = b"CLOFFLD1";

/// Most elements one message may carry (2^26: 256 MiB of `u32`).
pub const MAX_ELEMENTS: usize = 1 << 26;

/// Longest message: a multiply of [`MAX_ELEMENTS`] values and its header.
pub const MAX_MESSAGE: usize = MAX_ELEMENTS * 4 + 128;

/// On a stream, each message is preceded by its length as a little-endian `u32`: the length a
/// 4-byte prefix announces, refused over [`MAX_MESSAGE`] before anything is allocated.
pub fn frame_length(prefix: [u8; 4]) -> Result<usize, OffloadError> {
    let length = u32::from_le_bytes(prefix) as usize;
    if length == 0 || length > MAX_MESSAGE {
        return Err(OffloadError::Malformed("a frame that is empty or too long"));
    }
    Ok(length)
}

/// Refusal code: the accelerator does not hold the weights the request names.
pub const UNKNOWN_WEIGHTS: u8 = 1;
/// Refusal code: anything else (the text says what).
pub const REFUSED: u8 = 2;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Public weights to hold for later requests.
    Weights {
        /// Inputs per row.
        n: u32,
        /// Outputs per row.
        k: u32,
        /// `n × k`, row-major.
        values: Vec<i8>,
    },
    /// Multiply blinded rows by named weights.
    Multiply {
        /// Fresh per request; the answer must carry it.
        id: [u8; 16],
        /// Which weights ([`crate::QuantizedWeights::digest`]).
        weights: [u8; 32],
        /// Rows.
        m: u32,
        /// Inputs per row.
        n: u32,
        /// `m × n` blinded field elements.
        rows: Vec<u32>,
    },
    /// The answer to a multiply.
    Product {
        /// The request's id.
        id: [u8; 16],
        /// Rows.
        m: u32,
        /// Outputs per row.
        k: u32,
        /// `m × k` field elements.
        values: Vec<u32>,
    },
    /// The accelerator holds the weights with this digest (it computed it itself).
    Held {
        /// [`crate::QuantizedWeights::digest`] of what was uploaded.
        weights: [u8; 32],
    },
    /// The accelerator will not answer.
    Refusal {
        /// The request's id (zeros for a weights upload).
        id: [u8; 16],
        /// [`UNKNOWN_WEIGHTS`] or [`REFUSED`].
        code: u8,
        /// Why, for the logs.
        reason: String,
    },
}

impl Message {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        match self {
            Message::Weights { n, k, values } => {
                out.push(1);
                out.extend(n.to_le_bytes());
                out.extend(k.to_le_bytes());
                out.extend(values.iter().map(|v| v.to_le_bytes()[0]));
            }
            Message::Multiply { id, weights, m, n, rows } => {
                out.push(2);
                out.extend(id);
                out.extend(weights);
                out.extend(m.to_le_bytes());
                out.extend(n.to_le_bytes());
                out.reserve(rows.len() * 4);
                rows.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
            Message::Product { id, m, k, values } => {
                out.push(3);
                out.extend(id);
                out.extend(m.to_le_bytes());
                out.extend(k.to_le_bytes());
                out.reserve(values.len() * 4);
                values.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
            Message::Held { weights } => {
                out.push(5);
                out.extend(weights);
            }
            Message::Refusal { id, code, reason } => {
                out.push(4);
                out.extend(id);
                out.push(*code);
                let text = truncate_utf8(reason, usize::from(u16::MAX));
                out.extend((text.len() as u16).to_le_bytes());
                out.extend(text.as_bytes());
            }
        }
        out
    }

    /// Parses one message (see the module docs for what is refused).
    pub fn decode(bytes: &[u8]) -> Result<Message, OffloadError> {
        let mut r = Reader { bytes };
        if r.take(MAGIC.len())? != MAGIC {
            return Err(OffloadError::Malformed("not an offload message (magic)"));
        }
        let message = match r.take(1)?.first().copied() {
            Some(1) => {
                let (n, k) = (r.u32()?, r.u32()?);
                let count = count(n, k)?;
                let values = r.take(count)?.iter().map(|b| i8::from_le_bytes([*b])).collect();
                Message::Weights { n, k, values }
            }
            Some(2) => {
                let id = r.array::<16>()?;
                let weights = r.array::<32>()?;
                let (m, n) = (r.u32()?, r.u32()?);
                let rows = r.u32s(count(m, n)?)?;
                Message::Multiply { id, weights, m, n, rows }
            }
            Some(3) => {
                let id = r.array::<16>()?;
                let (m, k) = (r.u32()?, r.u32()?);
                let values = r.u32s(count(m, k)?)?;
                Message::Product { id, m, k, values }
            }
            Some(4) => {
                let id = r.array::<16>()?;
                let code = r.take(1)?.first().copied().unwrap_or_default();
                let len = u16::from_le_bytes(r.array::<2>()?);
                let reason = std::str::from_utf8(r.take(usize::from(len))?)
                    .map_err(|_| OffloadError::Malformed("a refusal's reason is not UTF-8"))?
                    .to_owned();
                Message::Refusal { id, code, reason }
            }
            Some(5) => Message::Held { weights: r.array::<32>()? },
            _ => return Err(OffloadError::Malformed("unknown message kind")),
        };
        if !r.bytes.is_empty() {
            return Err(OffloadError::Malformed("bytes after the message"));
        }
        Ok(message)
    }
}

fn count(a: u32, b: u32) -> Result<usize, OffloadError> {
    let count = usize::try_from(u64::from(a) * u64::from(b)).unwrap_or(usize::MAX);
    if a == 0 || b == 0 || count > MAX_ELEMENTS {
        return Err(OffloadError::Malformed("a matrix that is empty or too large"));
    }
    Ok(count)
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], OffloadError> {
        if self.bytes.len() < len {
            return Err(OffloadError::Malformed("the message ends early"));
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OffloadError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, OffloadError> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }

    fn u32s(&mut self, count: usize) -> Result<Vec<u32>, OffloadError> {
        let bytes = self.take(count.saturating_mul(4))?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Weights { n: 2, k: 3, values: vec![1, -2, 3, -127, 127, 0] },
            Message::Multiply { id: [7; 16], weights: [9; 32], m: 1, n: 2, rows: vec![5, 6] },
            Message::Product { id: [7; 16], m: 2, k: 1, values: vec![1, 2] },
            Message::Refusal { id: [0; 16], code: UNKNOWN_WEIGHTS, reason: "héllo".to_owned() },
            Message::Held { weights: [3; 32] },
        ]
    }

    #[test]
    fn messages_round_trip_and_damage_is_refused() {
        for message in samples() {
            let bytes = message.encode();
            assert_eq!(Message::decode(&bytes).expect("round trip"), message);
            // Every truncation and any trailing byte is refused.
            for cut in 0..bytes.len() {
                assert!(Message::decode(&bytes[..cut]).is_err(), "{message:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Message::decode(&longer).is_err());
        }
        let mut bad_kind = samples()[0].encode();
        bad_kind[8] = 9;
        assert!(Message::decode(&bad_kind).is_err());
        // Counts whose product is huge are refused before any allocation.
        let mut huge = MAGIC.to_vec();
        huge.push(3);
        huge.extend([0; 16]);
        huge.extend(u32::MAX.to_le_bytes());
        huge.extend(u32::MAX.to_le_bytes());
        assert!(Message::decode(&huge).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
            let mut framed = MAGIC.to_vec();
            framed.extend(&bytes);
            let _ = Message::decode(&framed);
        }
    }
}
