//! The envelope body on every core: chunks sealed and opened in batches by worker threads, the
//! stream read and written strictly in order on the caller's thread.
//!
//! The format is the one [`crate::stream`] defines, chunk for chunk: the same counters, the same
//! last-chunk flag, the same bytes. Only the schedule changes. A streaming seal or open reads a
//! batch of chunks straight into the buffer the cipher works in (plaintext into the slot each
//! sealed chunk occupies, so sealing is in place and the batch is written with one call), hands
//! it to a worker, and writes batches back in the order they were read; at most
//! [`IN_FLIGHT_PER_WORKER`] × workers + 1 batches exist at once, so memory is constant whatever
//! the stream's length. An input that fits in one batch is done on the caller's thread alone.
//!
//! Opening keeps the sequential guarantees: a chunk's plaintext is written only after it (and
//! every chunk before it) authenticated; the first chunk that fails ends the stream with the
//! error the sequential reader gave, and nothing read after it is written. Which chunk is the
//! last is decided as before: the one the input ends in.

use std::io::{self, IoSlice, Read, Write};
use std::thread;

use zeroize::{Zeroize as _, Zeroizing};

use crate::error::{OpenError, SealError};
use crate::pool;
use crate::read_full;
use crate::stream::{ChunkCipher, TAG_LEN};

/// Plaintext bytes per batch, the unit of work handed to a worker (at least one chunk).
const BATCH_BYTES: usize = 1 << 20;

/// Batches in flight per worker: one being worked on, one waiting.
const IN_FLIGHT_PER_WORKER: usize = 2;

/// In memory, inputs smaller than this are sealed and opened on the caller's thread.
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Chunk counters run from 0 to `u32::MAX`.
const COUNTERS: u64 = 1 << 32;

fn chunks_per_batch(chunk_size: usize) -> usize {
    (BATCH_BYTES / chunk_size.max(1)).max(1)
}

fn max_in_flight(workers: usize) -> u64 {
    (workers * IN_FLIGHT_PER_WORKER + 1) as u64
}

/// A batch of chunks to seal: chunk `j` of the batch sits at `j × (chunk size + tag)`, its tag
/// right after it, exactly as the chunks follow each other in the envelope.
struct SealBatch {
    buf: Zeroizing<Vec<u8>>,
    /// Counter of the first chunk.
    first: u32,
    /// Chunks in the batch (at least one).
    chunks: usize,
    /// Plaintext bytes of the batch's last chunk (the chunk size unless it is the final one).
    tail: usize,
    /// Whether the batch ends with the envelope's final chunk.
    last: bool,
}

impl SealBatch {
    fn new(len: usize) -> Self {
        Self { buf: Zeroizing::new(vec![0; len]), first: 0, chunks: 0, tail: 0, last: false }
    }

    /// Bytes of sealed chunks (with their tags) in the batch.
    fn sealed_len(&self, chunk_size: usize) -> usize {
        self.chunks.saturating_sub(1) * (chunk_size + TAG_LEN) + self.tail + TAG_LEN
    }

    fn seal(&mut self, cipher: &ChunkCipher, chunk_size: usize) {
        let slot = chunk_size + TAG_LEN;
        for j in 0..self.chunks {
            let final_in_batch = j + 1 == self.chunks;
            let n = if final_in_batch { self.tail } else { chunk_size };
            let at = j * slot;
            let (data, tag) = self.buf[at..at + n + TAG_LEN].split_at_mut(n);
            // `first + j` fits: the reader checked every counter of the batch.
            let counter = self.first + j as u32;
            tag.copy_from_slice(&cipher.seal(counter, self.last && final_in_batch, data));
        }
    }
}

/// Reads plaintext into [`SealBatch`]es; a full chunk is known not to be the last by one byte
/// of look-ahead, which is carried into the next chunk.
struct SealReader {
    chunk_size: usize,
    per_batch: usize,
    carry: Option<u8>,
    next_counter: u64,
    done: bool,
}

impl SealReader {
    fn fill<R: Read>(&mut self, input: &mut R, batch: &mut SealBatch) -> Result<(), SealError> {
        let cs = self.chunk_size;
        batch.first = u32::try_from(self.next_counter).map_err(|_| SealError::TooManyChunks)?;
        batch.chunks = 0;
        batch.last = false;
        for j in 0..self.per_batch {
            if self.next_counter >= COUNTERS {
                return Err(SealError::TooManyChunks);
            }
            let at = j * (cs + TAG_LEN);
            // The chunk and the one look-ahead byte (which lands where its tag will go).
            let slot = &mut batch.buf[at..=at + cs];
            let mut have = 0;
            if let Some(byte) = self.carry.take() {
                slot[0] = byte;
                have = 1;
            }
            have += read_full(input, &mut slot[have..]).map_err(SealError::Read)?;
            batch.chunks = j + 1;
            self.next_counter += 1;
            if have <= cs {
                batch.tail = have;
                batch.last = true;
                self.done = true;
                return Ok(());
            }
            self.carry = Some(slot[cs]);
            batch.tail = cs;
        }
        Ok(())
    }
}

/// Seals the body read from `input` to `output`; returns (plaintext, sealed) bytes.
pub(crate) fn seal_stream<R: Read, W: Write>(
    cipher: &ChunkCipher,
    chunk_size: usize,
    input: &mut R,
    output: &mut W,
) -> Result<(u64, u64), SealError> {
    let per_batch = chunks_per_batch(chunk_size);
    let batch_len = per_batch * (chunk_size + TAG_LEN);
    let mut reader =
        SealReader { chunk_size, per_batch, carry: None, next_counter: 0, done: false };
    let mut totals = (0u64, 0u64);
    let mut write = |batch: &SealBatch, totals: &mut (u64, u64)| {
        let len = batch.sealed_len(chunk_size);
        output.write_all(&batch.buf[..len]).map_err(SealError::Write)?;
        totals.0 += (len - batch.chunks * TAG_LEN) as u64;
        totals.1 += len as u64;
        Ok::<(), SealError>(())
    };
    let mut first = SealBatch::new(batch_len);
    reader.fill(input, &mut first)?;
    if reader.done {
        first.seal(cipher, chunk_size);
        write(&first, &mut totals)?;
        return Ok(totals);
    }
    let workers = pool::workers();
    pool::with_workers(
        workers,
        |batch: &mut SealBatch| batch.seal(cipher, chunk_size),
        |pool| {
            pool.submit(first);
            let mut spare = Vec::new();
            let mut failed = None;
            loop {
                while !reader.done && failed.is_none() && pool.in_flight() < max_in_flight(workers)
                {
                    let mut batch = spare.pop().unwrap_or_else(|| SealBatch::new(batch_len));
                    match reader.fill(input, &mut batch) {
                        Ok(()) => pool.submit(batch),
                        Err(e) => failed = Some(e),
                    }
                }
                // Everything read before a read error is still sealed and written first.
                let Some(batch) = pool.next() else { break };
                write(&batch, &mut totals)?;
                spare.push(batch);
            }
            failed.map_or(Ok(totals), Err)
        },
    )
}

/// A batch of sealed chunks as read: `chunks` full non-final chunks back to back, then (when
/// the input ended in this batch) the final piece of `tail` bytes.
struct OpenBatch {
    buf: Zeroizing<Vec<u8>>,
    /// Index of the first chunk.
    first: u64,
    /// Non-final chunks to open.
    chunks: usize,
    /// How many of them authenticated, in order (set by [`OpenBatch::open`]).
    opened: usize,
    /// Bytes of the final piece, when the input ended in this batch.
    tail: Option<usize>,
    /// The chunk after this batch's chunks would need a counter beyond `u32::MAX`.
    out_of_counters: bool,
}

impl OpenBatch {
    fn new(len: usize) -> Self {
        Self {
            buf: Zeroizing::new(vec![0; len]),
            first: 0,
            chunks: 0,
            opened: 0,
            tail: None,
            out_of_counters: false,
        }
    }

    /// Opens the non-final chunks in order up to the first that fails.
    fn open(&mut self, cipher: &ChunkCipher, chunk_size: usize) {
        let full = chunk_size + TAG_LEN;
        self.opened = 0;
        for j in 0..self.chunks {
            let at = j * full;
            let (data, tag) = self.buf[at..at + full].split_at_mut(chunk_size);
            // The reader cut the batch so that every counter fits.
            let counter = (self.first + j as u64) as u32;
            if !cipher.open(counter, false, data, tag) {
                return;
            }
            self.opened += 1;
        }
    }
}

/// Reads sealed chunks into [`OpenBatch`]es, with one byte of look-ahead: a chunk is non-final
/// exactly when more input follows it.
struct OpenReader {
    chunk_size: usize,
    per_batch: usize,
    carry: Option<u8>,
    next_index: u64,
    done: bool,
}

impl OpenReader {
    fn fill<R: Read>(&mut self, input: &mut R, batch: &mut OpenBatch) -> Result<(), OpenError> {
        let full = self.chunk_size + TAG_LEN;
        let cap = self.per_batch * full + 1;
        let buf = &mut batch.buf[..cap];
        let mut have = 0;
        if let Some(byte) = self.carry.take() {
            buf[0] = byte;
            have = 1;
        }
        have += read_full(input, &mut buf[have..]).map_err(OpenError::Read)?;
        batch.first = self.next_index;
        batch.opened = 0;
        batch.out_of_counters = false;
        if have == cap {
            batch.chunks = self.per_batch;
            batch.tail = None;
            self.carry = Some(buf[cap - 1]);
        } else {
            batch.chunks = have.saturating_sub(1) / full;
            batch.tail = Some(have - batch.chunks * full);
            self.done = true;
        }
        let room = COUNTERS.saturating_sub(batch.first);
        if batch.chunks as u64 > room
            || (batch.chunks as u64 == room && (batch.tail.is_some() || have == cap))
        {
            // The sequential reader stops with `TooManyChunks` at the first chunk without a
            // counter; the chunks before it are still opened and written.
            batch.chunks = usize::try_from(room).unwrap_or(usize::MAX).min(batch.chunks);
            batch.tail = None;
            batch.out_of_counters = true;
            self.done = true;
        }
        self.next_index += batch.chunks as u64;
        Ok(())
    }
}

/// What one batch of an open ended with.
enum Step {
    /// More batches follow.
    Continue,
    /// The final chunk authenticated and was written.
    Finished,
}

/// Writes the authenticated chunks of `batch`, then reports how it ended: an error at the first
/// chunk that failed, or the final chunk checked and written.
fn finish_open_batch<W: Write>(
    cipher: &ChunkCipher,
    chunk_size: usize,
    batch: &mut OpenBatch,
    output: &mut W,
    plaintext_bytes: &mut u64,
) -> Result<Step, OpenError> {
    let full = chunk_size + TAG_LEN;
    // The plaintext of the chunks that authenticated, without their tags, in one call.
    let mut pieces: Vec<IoSlice<'_>> = batch.buf[..batch.opened * full]
        .chunks(full)
        .map(|chunk| IoSlice::new(&chunk[..chunk_size]))
        .collect();
    write_all_vectored(output, &mut pieces).map_err(OpenError::Write)?;
    *plaintext_bytes += (batch.opened * chunk_size) as u64;
    if batch.opened < batch.chunks {
        return Err(OpenError::ChunkAuthentication { index: batch.first + batch.opened as u64 });
    }
    if batch.out_of_counters {
        return Err(OpenError::TooManyChunks);
    }
    let Some(have) = batch.tail else {
        return Ok(Step::Continue);
    };
    // The input ended: this must be the final chunk.
    let index = batch.first + batch.chunks as u64;
    let counter = u32::try_from(index).map_err(|_| OpenError::TooManyChunks)?;
    if have < TAG_LEN {
        return Err(OpenError::Truncated);
    }
    let at = batch.chunks * full;
    let piece = &mut batch.buf[at..at + have];
    let n = have - TAG_LEN;
    // A full-size chunk that fails as final may be a non-final chunk whose successors were cut
    // off; keep its ciphertext (once per envelope) to tell the two apart.
    let backup = (have == full).then(|| Zeroizing::new(piece.to_vec()));
    let (data, tag) = piece.split_at_mut(n);
    if cipher.open(counter, true, data, tag) {
        if n == 0 && index > 0 {
            return Err(OpenError::EmptyFinalChunk { index });
        }
        output.write_all(data).map_err(OpenError::Write)?;
        *plaintext_bytes += n as u64;
        return Ok(Step::Finished);
    }
    if let Some(mut b) = backup {
        let (d, t) = b.split_at_mut(chunk_size);
        if cipher.open(counter, false, d, t) {
            d.zeroize();
            return Err(OpenError::Truncated);
        }
    }
    Err(OpenError::ChunkAuthentication { index })
}

/// Opens the body read from `input`, writing each chunk's plaintext to `output` only after it
/// authenticated; returns the plaintext bytes written.
pub(crate) fn open_stream<R: Read, W: Write>(
    cipher: &ChunkCipher,
    chunk_size: usize,
    input: &mut R,
    output: &mut W,
) -> Result<u64, OpenError> {
    let per_batch = chunks_per_batch(chunk_size);
    let batch_len = per_batch * (chunk_size + TAG_LEN) + 1;
    let mut reader = OpenReader { chunk_size, per_batch, carry: None, next_index: 0, done: false };
    let mut plaintext_bytes = 0u64;
    let mut first = OpenBatch::new(batch_len);
    reader.fill(input, &mut first)?;
    if reader.done {
        first.open(cipher, chunk_size);
        finish_open_batch(cipher, chunk_size, &mut first, output, &mut plaintext_bytes)?;
        return Ok(plaintext_bytes);
    }
    let workers = pool::workers();
    pool::with_workers(
        workers,
        |batch: &mut OpenBatch| batch.open(cipher, chunk_size),
        |pool| {
            pool.submit(first);
            let mut spare = Vec::new();
            let mut failed = None;
            loop {
                while !reader.done && failed.is_none() && pool.in_flight() < max_in_flight(workers)
                {
                    let mut batch = spare.pop().unwrap_or_else(|| OpenBatch::new(batch_len));
                    match reader.fill(input, &mut batch) {
                        Ok(()) => pool.submit(batch),
                        Err(e) => failed = Some(e),
                    }
                }
                // A chunk that fails before a read error is reported first, as it was when
                // the stream was read one chunk at a time.
                let Some(mut batch) = pool.next() else { break };
                let step = finish_open_batch(
                    cipher,
                    chunk_size,
                    &mut batch,
                    output,
                    &mut plaintext_bytes,
                )?;
                if let Step::Finished = step {
                    return Ok(plaintext_bytes);
                }
                spare.push(batch);
            }
            failed.map_or(Ok(plaintext_bytes), Err)
        },
    )
}

/// `write_all` of several slices, with as few `write_vectored` calls as the writer allows.
fn write_all_vectored<W: Write>(output: &mut W, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match output.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Seals `plaintext` (at least [`PARALLEL_MIN_BYTES`], so at least one full chunk) into `body`,
/// which has exactly the room of its sealed chunks, on every core.
pub(crate) fn seal_slice_parallel(
    cipher: &ChunkCipher,
    chunk_size: usize,
    plaintext: &[u8],
    body: &mut [u8],
) {
    let chunks = plaintext.len().div_ceil(chunk_size);
    let workers = pool::workers();
    let per_worker = chunks.div_ceil(workers).max(1);
    thread::scope(|scope| {
        let sealed = body.chunks_mut(per_worker * (chunk_size + TAG_LEN));
        let plain = plaintext.chunks(per_worker * chunk_size);
        for (group, (out, input)) in sealed.zip(plain).enumerate() {
            scope.spawn(move || {
                let first = group * per_worker;
                let slots = out.chunks_mut(chunk_size + TAG_LEN).zip(input.chunks(chunk_size));
                for (k, (slot, chunk)) in slots.enumerate() {
                    let index = first + k;
                    let (data, tag) = slot.split_at_mut(chunk.len());
                    data.copy_from_slice(chunk);
                    // The caller refused more chunks than counters.
                    let sealed = cipher.seal(index as u32, index + 1 == chunks, data);
                    tag.copy_from_slice(&sealed);
                }
            });
        }
    });
}

/// Whether an in-memory input of `len` bytes is worth the threads.
pub(crate) fn parallel_in_memory(len: usize) -> bool {
    len >= PARALLEL_MIN_BYTES && pool::workers() > 1
}

/// Opens the `chunks` non-final chunks at the start of `body` into `out` (`chunks × chunk size`
/// bytes) on every core; returns the index of the first chunk that failed, if one did.
pub(crate) fn open_slice_parallel(
    cipher: &ChunkCipher,
    chunk_size: usize,
    chunks: usize,
    body: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let full = chunk_size + TAG_LEN;
    let workers = pool::workers();
    let per_worker = chunks.div_ceil(workers).max(1);
    thread::scope(|scope| {
        let groups = out[..chunks * chunk_size]
            .chunks_mut(per_worker * chunk_size)
            .zip(body[..chunks * full].chunks(per_worker * full));
        let handles: Vec<_> = groups
            .enumerate()
            .map(|(group, (plain, sealed))| {
                scope.spawn(move || {
                    let first = group * per_worker;
                    let pairs = plain.chunks_mut(chunk_size).zip(sealed.chunks(full));
                    for (k, (data, chunk)) in pairs.enumerate() {
                        let (ct, tag) = chunk.split_at(chunk_size);
                        data.copy_from_slice(ct);
                        // The caller checked that every counter fits.
                        if !cipher.open((first + k) as u32, false, data, tag) {
                            return Some(first + k);
                        }
                    }
                    None
                })
            })
            .collect();
        // Joined in order, so the first failure found is the earliest one; a worker's panic
        // is resumed here.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .find_map(|failed| failed)
    })
}
