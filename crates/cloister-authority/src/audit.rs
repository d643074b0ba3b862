//! The tamper-evident audit log: a SHA-256 hash chain over the entries, signed checkpoints, and a
//! verifier that says exactly which entries were altered, removed or reordered.
//!
//! Pure functions: no I/O, no SQL, time is a parameter. The service builds each row with
//! [`next_row`] (inside the store's append transaction), signs a checkpoint with
//! [`sign_checkpoint`] every N entries ([`checkpoint_due`]) and on shutdown, and an operator checks
//! the whole log with [`verify_log`].
//!
//! # The chain
//!
//! Entry `n` (seqs start at 1) stores `prev_hash` = the hash of entry `n - 1` ([`GENESIS_HASH`]
//! for entry 1) and `hash` = [`entry_hash`]: lowercase hex SHA-256 over the domain
//! `cloister-audit-entry v1`, then every field but `hash` in a fixed order, integers as 8-byte
//! big-endian, strings length-prefixed (8-byte big-endian length), the optional tenant id as a
//! presence byte then the string. No two different rows encode to the same bytes. Because `seq`
//! is hashed, a row's hash also says *where* in the log it was written.
//!
//! A checkpoint signs (ECDSA P-256, [`cloister_sign::SigningKey::sign_bytes`], domain
//! [`CHECKPOINT_DOMAIN`]) `seq ‖ at ‖ hash` of the entry that was last when it was made. Whoever can
//! write the database can rewrite the chain and recompute every hash, but cannot sign: a valid
//! checkpoint fixes everything up to its seq. **Entries after the last checkpoint are protected
//! by the chain only**: a writer can append (or drop) entries after it undetected, which is why
//! the service signs often and on shutdown; [`AuditReport::signed_through`] says how far the
//! signatures reach.
//!
//! # How [`verify_log`] decides what happened
//!
//! It never stops at the first problem, and it names each tampering once, by the entry it
//! concerns, without reporting its side effects as further problems:
//!
//! 1. **Content.** Every row whose hash matches its content (at its stored seq) is *intact*.
//! 2. **Displacement.** A row whose hash does not match may have been moved rather than edited
//!    (its `seq` changed: two seqs exchanged, or a run renumbered). Its *written* seq is looked
//!    for where the chain points: 1 if its `prev_hash` is the genesis hash, the written seq of
//!    the row whose hash its `prev_hash` names plus one, or that of the row that names its hash
//!    as `prev_hash` minus one, repeated until nothing more resolves; failing that, a small window
//!    of shifts around its stored seq is tried (the shift found last first, which resolves a
//!    renumbered run in one hash per row). A row whose content hashes correctly at another seq
//!    is *moved*: it is genuine, only stored elsewhere. The rest are *altered*.
//! 3. **Order.** Rows are placed at their written seq (altered rows at their stored seq) and
//!    walked in that order. A missing seq is a *removed* entry; a second row for the same seq
//!    a *duplicate*. Moved rows are reported as *out of order* when their seqs form a cycle
//!    (exchanged) and as *moved* (renumbered) otherwise.
//! 4. **Checkpoints.** Each checkpoint's signature is checked first; a checkpoint that does not
//!    verify is reported as *forged* and used for nothing else. A valid one beyond the last
//!    entry proves that the tail was *removed*; one inside a removed range is already explained;
//!    otherwise it *matches* or *differs from* the row now at its seq.
//! 5. **Links.** For each pair of adjacent trustworthy rows (intact or moved; and genesis before
//!    entry 1) the later one's `prev_hash` must be the earlier one's hash. A link involving an
//!    altered row is not judged (the alteration explains it). A broken link between `a` and
//!    `b` means one of them was altered and its hash recomputed; the verifier blames:
//!    - `b` if `a` is authenticated (genesis, or a checkpoint matches `a`),
//!    - else `a` if a checkpoint matches `b`,
//!    - else `b` if `b`'s link to its own successor is broken too (its hash changed, and its
//!      `prev_hash` with it),
//!    - else `a` (its hash changed; `b` still names the original).
//! 6. **Recomputed chains.** A valid checkpoint that differs from an intact, unblamed row means
//!    the chain was rewritten from some entry after the last checkpoint that still matches up to
//!    (at least) this one; consecutive such checkpoints are reported together, once.
//!
//! What cannot be told apart is documented on the variants: an entry rewritten after the last
//! checkpoint together with all entries after it, or entries appended or removed after the
//! last checkpoint, leave a consistent chain and are invisible until a later checkpoint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cloister_sign::{SignError, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::store::{AuditRow, CheckpointRow};

/// The `prev_hash` of entry 1: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The signing domain of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &str = "cloister-audit-checkpoint v1";

/// The hashing domain of entries.
const ENTRY_DOMAIN: &[u8] = b"cloister-audit-entry v1\0";

/// How far around its stored seq a moved row's written seq is looked for when the chain does
/// not point to it.
const MAX_SHIFT: i64 = 16;

/// How many extra hashes the window search may spend on one log, so that a log whose every
/// row was edited is still verified in linear time.
const SHIFT_BUDGET: usize = 1 << 16;

/// What happened (the service fills it; `detail` is a small JSON object: ids, digests,
/// verdicts, policy versions, never secrets, tokens or plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// What kind of action.
    pub kind: AuditKind,
    /// Who did it: a credential's role and id (`operator`, `tenant:tn_…`) or `anonymous`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// What it was done to (an instance, key or tenant id).
    pub subject: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Ids, digests, verdicts, policy versions: never secrets.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event without tenant and with an empty detail object; see [`AuditEvent::tenant`] and
    /// [`AuditEvent::detail`].
    pub fn new(
        kind: AuditKind,
        actor: impl Into<String>,
        subject: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        AuditEvent {
            kind,
            actor: actor.into(),
            tenant_id: None,
            subject: subject.into(),
            outcome,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// Names the tenant concerned.
    #[must_use]
    pub fn tenant(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Sets the detail object.
    #[must_use]
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The kinds of audited actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AuditKind {
    /// `tenant.created`
    TenantCreated,
    /// `instance.created`
    InstanceCreated,
    /// `instance.updated`: reference values or trust anchors.
    InstanceUpdated,
    /// `policy.changed`: a new policy version.
    PolicyChanged,
    /// `keys.rotated`: new token key and CA.
    KeysRotated,
    /// `instance.deleted`
    InstanceDeleted,
    /// `instance.exported`
    InstanceExported,
    /// `instance.imported`
    InstanceImported,
    /// `attestation`: evidence appraised, token issued or refused.
    Attestation,
    /// `key.registered`
    KeyRegistered,
    /// `key.revoked`
    KeyRevoked,
    /// `key.released`: granted or refused.
    KeyReleased,
    /// `key.instance-detached`: an instance a broker key listed was deleted, so the key no
    /// longer accepts it.
    KeyInstanceDetached,
    /// `job.authorized`
    JobAuthorized,
    /// `privacy.charged`: a training job's privacy charged to its data sets, or refused.
    PrivacyCharged,
    /// `dataset.registered`: a sealed data set registered to its owner.
    DatasetRegistered,
    /// `grant.revoked`: an owner revoked its grants for a job.
    GrantRevoked,
    /// `access.denied`: a request the authorization refused.
    AccessDenied,
}

impl AuditKind {
    /// Every kind, in declaration order.
    pub const ALL: [AuditKind; 18] = [
        AuditKind::TenantCreated,
        AuditKind::InstanceCreated,
        AuditKind::InstanceUpdated,
        AuditKind::PolicyChanged,
        AuditKind::KeysRotated,
        AuditKind::InstanceDeleted,
        AuditKind::InstanceExported,
        AuditKind::InstanceImported,
        AuditKind::Attestation,
        AuditKind::KeyRegistered,
        AuditKind::KeyRevoked,
        AuditKind::KeyReleased,
        AuditKind::KeyInstanceDetached,
        AuditKind::JobAuthorized,
        AuditKind::PrivacyCharged,
        AuditKind::DatasetRegistered,
        AuditKind::GrantRevoked,
        AuditKind::AccessDenied,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::TenantCreated => "tenant.created",
            AuditKind::InstanceCreated => "instance.created",
            AuditKind::InstanceUpdated => "instance.updated",
            AuditKind::PolicyChanged => "policy.changed",
            AuditKind::KeysRotated => "keys.rotated",
            AuditKind::InstanceDeleted => "instance.deleted",
            AuditKind::InstanceExported => "instance.exported",
            AuditKind::InstanceImported => "instance.imported",
            AuditKind::Attestation => "attestation",
            AuditKind::KeyRegistered => "key.registered",
            AuditKind::KeyRevoked => "key.revoked",
            AuditKind::KeyReleased => "key.released",
            AuditKind::KeyInstanceDetached => "key.instance-detached",
            AuditKind::JobAuthorized => "job.authorized",
            AuditKind::PrivacyCharged => "privacy.charged",
            AuditKind::DatasetRegistered => "dataset.registered",
            AuditKind::GrantRevoked => "grant.revoked",
            AuditKind::AccessDenied => "access.denied",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored kind or outcome name that this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown audit {what} `{name}` (expected one of: {expected})")]
pub struct UnknownName {
    what: &'static str,
    name: String,
    expected: String,
}

impl FromStr for AuditKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL.into_iter().find(|kind| kind.as_str() == s).ok_or_else(|| UnknownName {
            what: "kind",
            name: s.to_owned(),
            expected: AuditKind::ALL.map(AuditKind::as_str).join(", "),
        })
    }
}

/// How an audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// It was done.
    Success,
    /// A check or policy refused it.
    Refused,
    /// It failed for an internal reason.
    Error,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Refused, Outcome::Error];

    /// The stored name: `success`, `refused` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL.into_iter().find(|outcome| outcome.as_str() == s).ok_or_else(|| UnknownName {
            what: "outcome",
            name: s.to_owned(),
            expected: Outcome::ALL.map(Outcome::as_str).join(", "),
        })
    }
}

/// The detail object as stored: canonical JSON (sorted keys, compact). A detail that has no
/// canonical form (a floating-point number) is stored as compact JSON: the hash covers the
/// stored text, so the chain holds either way.
fn detail_text(detail: &serde_json::Value) -> String {
    cloister_types::canonical_json(detail)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| detail.to_string())
}

/// The row that follows `last` (`None` = the first): `seq` = `last.seq + 1` (or 1),
/// `prev_hash` = `last.hash` (or [`GENESIS_HASH`]), `hash` = [`entry_hash`]. Usable directly
/// as the store's append closure.
pub fn next_row(last: Option<&AuditRow>, event: &AuditEvent, at: i64) -> AuditRow {
    let (seq, prev_hash) = match last {
        Some(last) => (last.seq.saturating_add(1), last.hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let mut row = AuditRow {
        seq,
        at,
        kind: event.kind.as_str().to_owned(),
        actor: event.actor.clone(),
        tenant_id: event.tenant_id.clone(),
        subject: event.subject.clone(),
        outcome: event.outcome.as_str().to_owned(),
        detail: detail_text(&event.detail),
        prev_hash,
        hash: String::new(),
    };
    row.hash = entry_hash(&row);
    row
}

/// Lowercase hex SHA-256 over the unambiguous encoding of every field of `row` but `hash` (see
/// the module documentation).
pub fn entry_hash(row: &AuditRow) -> String {
    hash_at(row, row.seq)
}

/// [`entry_hash`] as if the row had been written at `seq`.
fn hash_at(row: &AuditRow, seq: i64) -> String {
    fn text(hasher: &mut Sha256, value: &str) {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value.as_bytes());
    }
    let mut hasher = Sha256::new();
    hasher.update(ENTRY_DOMAIN);
    hasher.update(seq.to_be_bytes());
    hasher.update(row.at.to_be_bytes());
    text(&mut hasher, &row.kind);
    text(&mut hasher, &row.actor);
    match &row.tenant_id {
        None => hasher.update([0u8]),
        Some(tenant) => {
            hasher.update([1u8]);
            text(&mut hasher, tenant);
        }
    }
    text(&mut hasher, &row.subject);
    text(&mut hasher, &row.outcome);
    text(&mut hasher, &row.detail);
    text(&mut hasher, &row.prev_hash);
    hex::encode(hasher.finalize())
}

/// The bytes a checkpoint signature covers (under [`CHECKPOINT_DOMAIN`]):
/// seq (8 bytes big-endian) ‖ at (8 bytes big-endian) ‖ length of the hash (8 bytes) ‖ hash.
pub fn checkpoint_message(seq: i64, at: i64, hash: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(24 + hash.len());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(&at.to_be_bytes());
    message.extend_from_slice(&(hash.len() as u64).to_be_bytes());
    message.extend_from_slice(hash.as_bytes());
    message
}

/// Signs a checkpoint over `last`, the entry that is last in the log now.
pub fn sign_checkpoint(key: &SigningKey, last: &AuditRow, at: i64) -> CheckpointRow {
    let message = checkpoint_message(last.seq, at, &last.hash);
    CheckpointRow {
        seq: last.seq,
        at,
        hash: last.hash.clone(),
        signature: key.sign_bytes(CHECKPOINT_DOMAIN, &message),
    }
}

/// Checks one checkpoint's signature.
pub fn verify_checkpoint(checkpoint: &CheckpointRow, key: &VerifyingKey) -> Result<(), SignError> {
    let message = checkpoint_message(checkpoint.seq, checkpoint.at, &checkpoint.hash);
    key.verify_bytes(CHECKPOINT_DOMAIN, &message, &checkpoint.signature)
}

/// Checks that `rows` continue the chain right after entry `after_seq` whose hash is
/// `after_hash` (seq 0 and [`GENESIS_HASH`] for the start of the log): consecutive seqs from
/// `after_seq + 1`, each `prev_hash` the hash before it, each `hash` recomputed from the row.
/// What the service checks before it signs a checkpoint, so that it never signs a hash it has
/// not recomputed from a chain it has verified.
pub fn check_extends(after_seq: i64, after_hash: &str, rows: &[AuditRow]) -> Result<(), String> {
    let (mut seq, mut hash) = (after_seq, after_hash);
    for row in rows {
        if row.seq != seq.saturating_add(1) {
            return Err(format!("entry {} follows entry {seq}", row.seq));
        }
        if row.prev_hash != hash {
            return Err(format!("entry {} does not link to the entry before it", row.seq));
        }
        if entry_hash(row) != row.hash {
            return Err(format!("entry {} does not match its hash", row.seq));
        }
        (seq, hash) = (row.seq, &row.hash);
    }
    Ok(())
}

/// Whether a checkpoint should be signed now: at least `every` entries were appended since the
/// last checkpoint (`last_checkpoint_seq`, 0 when there is none). An `every` below 1 counts as 1
/// (a checkpoint after every entry). Never due when nothing was appended since.
pub fn checkpoint_due(last_checkpoint_seq: i64, last_seq: i64, every: i64) -> bool {
    last_seq > last_checkpoint_seq && last_seq.saturating_sub(last_checkpoint_seq) >= every.max(1)
}

/// The outcome of [`verify_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// Rows read.
    pub entries: usize,
    /// Checkpoints read.
    pub checkpoints: usize,
    /// The highest stored seq (0 for an empty log).
    pub last_seq: i64,
    /// The highest seq whose entry a valid checkpoint matches (0 if none): entries after it are
    /// protected by the hash chain only.
    pub signed_through: i64,
    /// Everything wrong, ordered by the first seq each names.
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    /// True when nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unsigned = self.last_seq.saturating_sub(self.signed_through).max(0);
        if self.is_intact() {
            write!(
                f,
                "the audit log is intact: {} entries, {} checkpoints, signed through entry {}",
                self.entries, self.checkpoints, self.signed_through
            )?;
            if unsigned > 0 {
                write!(f, " ({unsigned} later entries are not covered by a checkpoint yet)")?;
            }
            return Ok(());
        }
        write!(
            f,
            "the audit log was tampered with ({} entries, {} checkpoints, {} problems):",
            self.entries,
            self.checkpoints,
            self.problems.len()
        )?;
        for problem in &self.problems {
            write!(f, "\n- {problem}")?;
        }
        Ok(())
    }
}

/// Why [`verify_log`] blamed an intact-looking entry for a broken link: its hash was recomputed
/// after it was altered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteEvidence {
    /// The next entry still names the entry's original hash.
    NextEntryDisagrees {
        /// The next entry's seq.
        next: i64,
    },
    /// Entry 1 does not name the genesis hash as its predecessor.
    NotFromGenesis,
    /// The entry does not name its predecessor's hash, which a checkpoint confirms.
    PreviousConfirmed {
        /// The predecessor's seq (a checkpoint at it matches).
        previous: i64,
    },
    /// Neither its predecessor's hash nor its successor's `prev_hash` fits it.
    BothLinksBroken {
        /// The predecessor's seq.
        previous: i64,
        /// The successor's seq.
        next: i64,
    },
}

/// One thing wrong with the log. Its `Display` is one line naming the seqs concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditProblem {
    /// The row's content does not match its stored hash.
    Altered {
        /// The entry's seq.
        seq: i64,
    },
    /// The row's content matches its hash, but the hash was recomputed after an edit: a link of
    /// the chain to it is broken (see [`RewriteEvidence`]).
    Rewritten {
        /// The entry's seq.
        seq: i64,
        /// What shows it.
        evidence: RewriteEvidence,
    },
    /// A valid checkpoint signed another hash than the entry at its seq has, and the chain up
    /// to it is consistent: one or more of the entries `since..=seq` were altered and the
    /// hashes after them recomputed (which one cannot be told: no signature lies in between).
    CheckpointMismatch {
        /// The checkpoint's seq.
        seq: i64,
        /// The first entry that may have been altered: one after the last checkpoint that still
        /// matches (1 if none).
        since: i64,
        /// Later checkpoints that differ too, as a consequence.
        later: Vec<i64>,
    },
    /// Entries `from..=to` are missing from the middle of the log.
    Removed {
        /// The first missing seq.
        from: i64,
        /// The last missing seq.
        to: i64,
    },
    /// Entries `from..=to` are missing at the end of the log: a valid checkpoint at `to` exists
    /// but the log ends at `from - 1`.
    TailRemoved {
        /// The first missing seq.
        from: i64,
        /// The seq of the furthest valid checkpoint.
        to: i64,
    },
    /// Genuine entries whose seqs were permuted: each `(entry, stored_at)` pair says which seq
    /// the entry was written with and which seq it is stored at now.
    OutOfOrder {
        /// `(written seq, stored seq)`, ordered by written seq.
        entries: Vec<(i64, i64)>,
    },
    /// Genuine entries `from..=to` are stored at seqs shifted by `shift` (renumbered or moved).
    Moved {
        /// The first written seq.
        from: i64,
        /// The last written seq.
        to: i64,
        /// Stored seq minus written seq.
        shift: i64,
    },
    /// A second row for an entry that is already in the log (a copy stored at another seq).
    Duplicated {
        /// The entry's written seq.
        seq: i64,
        /// Where the copy is stored.
        stored_at: i64,
    },
    /// A row stored at a seq below 1, where no entry can be.
    NotAnEntry {
        /// Its stored seq.
        stored_at: i64,
    },
    /// A checkpoint whose signature does not verify with the audit key: forged or edited.
    CheckpointForged {
        /// The seq it claims.
        seq: i64,
        /// Why the signature was refused.
        reason: String,
    },
}

impl AuditProblem {
    /// The first seq the problem names (for ordering).
    pub fn seq(&self) -> i64 {
        match self {
            AuditProblem::Altered { seq }
            | AuditProblem::Rewritten { seq, .. }
            | AuditProblem::Duplicated { seq, .. }
            | AuditProblem::CheckpointForged { seq, .. } => *seq,
            AuditProblem::CheckpointMismatch { since, .. } => *since,
            AuditProblem::Removed { from, .. }
            | AuditProblem::TailRemoved { from, .. }
            | AuditProblem::Moved { from, .. } => *from,
            AuditProblem::OutOfOrder { entries } => entries.first().map_or(0, |e| e.0),
            AuditProblem::NotAnEntry { stored_at } => *stored_at,
        }
    }
}

/// "entry 5" or "entries 5..=9".
fn entries_text(from: i64, to: i64) -> String {
    if from == to { format!("entry {from}") } else { format!("entries {from}..={to}") }
}

/// "1, 2 and 3".
fn list_text(items: &[i64]) -> String {
    let text: Vec<String> = items.iter().map(i64::to_string).collect();
    match text.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => text.join(""),
    }
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::Altered { seq } => {
                write!(f, "entry {seq} was altered (its content does not match its hash)")
            }
            AuditProblem::Rewritten { seq, evidence } => {
                write!(f, "entry {seq} was altered and its hash recomputed (")?;
                match evidence {
                    RewriteEvidence::NextEntryDisagrees { next } => {
                        write!(f, "entry {next} still names its original hash)")
                    }
                    RewriteEvidence::NotFromGenesis => {
                        f.write_str("as entry 1 it must follow the genesis hash, and does not)")
                    }
                    RewriteEvidence::PreviousConfirmed { previous } => write!(
                        f,
                        "it does not name the hash of entry {previous}, which the checkpoint at \
                         {previous} confirms)"
                    ),
                    RewriteEvidence::BothLinksBroken { previous, next } => write!(
                        f,
                        "it does not name the hash of entry {previous}, and entry {next} names \
                         another hash for it)"
                    ),
                }
            }
            AuditProblem::CheckpointMismatch { seq, since, later } => {
                if since == seq {
                    write!(
                        f,
                        "entry {seq} was altered and its hash recomputed (the checkpoint at \
                         {seq} signed a different hash)"
                    )?;
                } else {
                    write!(
                        f,
                        "the checkpoint at {seq} signed a different hash than entry {seq} has: \
                         one or more of entries {since}..={seq} were altered and the hashes \
                         after them recomputed ("
                    )?;
                    if *since > 1 {
                        write!(f, "the checkpoint at {} still matches)", since - 1)?;
                    } else {
                        f.write_str("no earlier checkpoint matches)")?;
                    }
                }
                match later.len() {
                    0 => {}
                    1 => write!(f, "; the later checkpoint at {} differs too", later[0])?,
                    _ => write!(f, "; the later checkpoints at {} differ too", list_text(later))?,
                }
                Ok(())
            }
            AuditProblem::Removed { from, to } => {
                let verb = if from == to { "was" } else { "were" };
                write!(f, "{} {verb} removed", entries_text(*from, *to))
            }
            AuditProblem::TailRemoved { from, to } => {
                let verb = if from == to { "was" } else { "were" };
                write!(
                    f,
                    "{} {verb} removed: the checkpoint at {to} is signed but ",
                    entries_text(*from, *to)
                )?;
                if *from > 1 {
                    write!(f, "the log ends at {}", from - 1)
                } else {
                    f.write_str("the log is empty")
                }
            }
            AuditProblem::OutOfOrder { entries } => {
                let seqs: Vec<i64> = entries.iter().map(|e| e.0).collect();
                write!(f, "entries {} are out of order (", list_text(&seqs))?;
                for (i, (entry, stored)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "entry {entry} is stored at seq {stored}")?;
                }
                f.write_str(")")
            }
            AuditProblem::Moved { from, to, shift } => {
                if from == to {
                    write!(
                        f,
                        "entry {from} is stored at seq {} instead",
                        from.saturating_add(*shift)
                    )
                } else {
                    write!(
                        f,
                        "entries {from}..={to} were renumbered: they are stored at seqs {}..={}",
                        from.saturating_add(*shift),
                        to.saturating_add(*shift)
                    )
                }
            }
            AuditProblem::Duplicated { seq, stored_at } => {
                write!(f, "entry {seq} appears twice: a copy of it is stored at seq {stored_at}")
            }
            AuditProblem::NotAnEntry { stored_at } => write!(
                f,
                "the row stored at seq {stored_at} is not an entry of the log (seqs start at 1)"
            ),
            AuditProblem::CheckpointForged { seq, reason } => write!(
                f,
                "the checkpoint at {seq} is forged or was edited: its signature does not verify \
                 ({reason})"
            ),
        }
    }
}

/// What step 2 of the verification concluded about a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    /// Its hash matches its content at its stored seq.
    Intact,
    /// Its hash matches its content at another seq.
    Moved,
    /// Its hash matches nothing.
    Altered,
}

/// What precedes a row in the chain.
#[derive(Clone, Copy)]
enum Pred {
    Genesis,
    Row(usize),
    Unknown,
}

/// Checks the chain from seq 1 and every checkpoint against `key`, and lists every problem
/// found (see the module documentation for the algorithm). `rows` and `checkpoints` are what
/// the store holds, ordered by `seq`.
pub fn verify_log(
    rows: &[AuditRow],
    checkpoints: &[CheckpointRow],
    key: &VerifyingKey,
) -> AuditReport {
    let mut problems = Vec::new();

    // 1 and 2: content, then the written seq of every row whose content does not match.
    let mut written: Vec<Option<i64>> =
        rows.iter().map(|row| (entry_hash(row) == row.hash).then_some(row.seq)).collect();
    let intact: Vec<bool> = written.iter().map(Option::is_some).collect();
    resolve_moved(rows, &mut written);
    let state = |i: usize| match written[i] {
        Some(seq) if seq == rows[i].seq && intact[i] => State::Intact,
        Some(_) => State::Moved,
        None => State::Altered,
    };
    let place = |i: usize| written[i].unwrap_or(rows[i].seq);

    // 3: walk in written order.
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| (place(i), state(i), i));
    let mut chain: Vec<usize> = Vec::with_capacity(rows.len());
    let mut expected = 1i64;
    for i in order {
        let at = place(i);
        if at < 1 {
            problems.push(AuditProblem::NotAnEntry { stored_at: rows[i].seq });
            continue;
        }
        if chain.last().is_some_and(|&last| place(last) == at) {
            problems.push(if state(i) == State::Altered {
                AuditProblem::Altered { seq: rows[i].seq }
            } else {
                AuditProblem::Duplicated { seq: at, stored_at: rows[i].seq }
            });
            continue;
        }
        if at > expected {
            problems.push(AuditProblem::Removed { from: expected, to: at - 1 });
        }
        chain.push(i);
        expected = at.saturating_add(1);
    }
    let last_written = chain.last().map_or(0, |&i| place(i));

    // 4: checkpoints.
    let position: HashMap<i64, usize> =
        chain.iter().enumerate().map(|(k, &i)| (place(i), k)).collect();
    let mut matches: BTreeMap<i64, bool> = BTreeMap::new();
    let mut beyond_end: Option<i64> = None;
    for checkpoint in checkpoints {
        if let Err(error) = verify_checkpoint(checkpoint, key) {
            let reason = match error {
                SignError::BytesSignature { reason, .. } => reason.to_owned(),
                other => other.to_string(),
            };
            problems.push(AuditProblem::CheckpointForged { seq: checkpoint.seq, reason });
            continue;
        }
        match position.get(&checkpoint.seq) {
            Some(&k) => {
                let same = rows[chain[k]].hash == checkpoint.hash;
                *matches.entry(checkpoint.seq).or_insert(true) &= same;
            }
            None if checkpoint.seq > last_written => {
                beyond_end = Some(beyond_end.map_or(checkpoint.seq, |s| s.max(checkpoint.seq)));
            }
            // Inside a removed range (already reported) or below 1 (never signed by the service,
            // whose checkpoints name an entry).
            None => {}
        }
    }
    if let Some(to) = beyond_end {
        problems.push(AuditProblem::TailRemoved { from: last_written + 1, to });
    }
    let confirmed = |i: usize| matches.get(&place(i)) == Some(&true);

    // 5: links between adjacent trustworthy rows, and whom a broken one blames.
    let pred = |k: usize| {
        let at = place(chain[k]);
        if at == 1 {
            Pred::Genesis
        } else if k > 0 && place(chain[k - 1]) == at - 1 {
            Pred::Row(chain[k - 1])
        } else {
            Pred::Unknown
        }
    };
    let broken: Vec<bool> = (0..chain.len())
        .map(|k| {
            let b = chain[k];
            if state(b) == State::Altered {
                return false;
            }
            match pred(k) {
                Pred::Genesis => rows[b].prev_hash != GENESIS_HASH,
                Pred::Row(a) => state(a) != State::Altered && rows[b].prev_hash != rows[a].hash,
                Pred::Unknown => false,
            }
        })
        .collect();
    let mut blamed: BTreeMap<usize, RewriteEvidence> = BTreeMap::new();
    for k in (0..chain.len()).filter(|&k| broken[k]) {
        let b = chain[k];
        let next_broken =
            k + 1 < chain.len() && matches!(pred(k + 1), Pred::Row(p) if p == b) && broken[k + 1];
        let (culprit, evidence) = match pred(k) {
            Pred::Genesis => (b, RewriteEvidence::NotFromGenesis),
            Pred::Row(a) if confirmed(a) => {
                (b, RewriteEvidence::PreviousConfirmed { previous: place(a) })
            }
            Pred::Row(a) if !confirmed(b) && next_broken => (
                b,
                RewriteEvidence::BothLinksBroken { previous: place(a), next: place(chain[k + 1]) },
            ),
            Pred::Row(a) => (a, RewriteEvidence::NextEntryDisagrees { next: place(b) }),
            Pred::Unknown => continue,
        };
        blamed.entry(culprit).or_insert(evidence);
    }

    // 6: checkpoints that differ from an intact, unblamed entry: a recomputed chain.
    let mut recomputed: Vec<AuditProblem> = Vec::new();
    let mut last_match = 0i64;
    let mut open = false;
    for (&seq, &same) in &matches {
        if same {
            last_match = seq;
            open = false;
            continue;
        }
        let i = chain[position[&seq]];
        if state(i) == State::Altered || blamed.contains_key(&i) {
            continue;
        }
        match recomputed.last_mut() {
            Some(AuditProblem::CheckpointMismatch { later, .. }) if open => later.push(seq),
            _ => {
                recomputed.push(AuditProblem::CheckpointMismatch {
                    seq,
                    since: last_match + 1,
                    later: Vec::new(),
                });
                open = true;
            }
        }
    }
    problems.extend(recomputed);
    problems.extend(
        blamed.into_iter().map(|(i, evidence)| AuditProblem::Rewritten { seq: place(i), evidence }),
    );

    // 3 again: moved rows, as permutations or shifted runs; and the altered rows.
    let moved: Vec<(i64, i64)> = chain
        .iter()
        .filter(|&&i| state(i) == State::Moved)
        .map(|&i| (place(i), rows[i].seq))
        .collect();
    problems.extend(group_moved(&moved));
    problems.extend(
        chain
            .iter()
            .filter(|&&i| state(i) == State::Altered)
            .map(|&i| AuditProblem::Altered { seq: rows[i].seq }),
    );

    problems.sort_by_key(AuditProblem::seq);
    let signed_through =
        matches.iter().filter(|(_, same)| **same).map(|(seq, _)| *seq).max().unwrap_or(0);
    AuditReport {
        entries: rows.len(),
        checkpoints: checkpoints.len(),
        last_seq: rows.iter().map(|row| row.seq).max().unwrap_or(0),
        signed_through,
        problems,
    }
}

/// Step 2: finds the written seq of rows whose content does not match their hash at their
/// stored seq, first where the chain points, then in a window of shifts.
fn resolve_moved(rows: &[AuditRow], written: &mut [Option<i64>]) {
    let mut by_hash: HashMap<&str, usize> = HashMap::new();
    let mut by_prev: HashMap<&str, usize> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        by_hash.entry(row.hash.as_str()).or_insert(i);
        by_prev.entry(row.prev_hash.as_str()).or_insert(i);
    }
    let mut pending: Vec<usize> = (0..rows.len()).filter(|&i| written[i].is_none()).collect();
    let try_seq = |row: &AuditRow, seq: i64| seq != row.seq && hash_at(row, seq) == row.hash;

    let follow_links = |pending: &mut Vec<usize>, written: &mut [Option<i64>]| loop {
        let before = pending.len();
        pending.retain(|&i| {
            let row = &rows[i];
            let mut candidates = Vec::with_capacity(3);
            if row.prev_hash == GENESIS_HASH {
                candidates.push(1);
            }
            if let Some(&p) = by_hash.get(row.prev_hash.as_str()).filter(|&&p| p != i) {
                candidates.extend(written[p].map(|seq| seq.saturating_add(1)));
            }
            if let Some(&n) = by_prev.get(row.hash.as_str()).filter(|&&n| n != i) {
                candidates.extend(written[n].map(|seq| seq.saturating_sub(1)));
            }
            match candidates.into_iter().find(|&seq| try_seq(row, seq)) {
                Some(seq) => {
                    written[i] = Some(seq);
                    false
                }
                None => true,
            }
        });
        if pending.len() == before {
            break;
        }
    };
    follow_links(&mut pending, written);

    let mut budget = SHIFT_BUDGET;
    let mut last_shift: Option<i64> = None;
    let mut found_any = false;
    for &i in &pending {
        let row = &rows[i];
        let shifts = last_shift.into_iter().chain((1..=MAX_SHIFT).flat_map(|d| [-d, d]));
        for shift in shifts {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let Some(seq) = row.seq.checked_add(shift) else { continue };
            if try_seq(row, seq) {
                written[i] = Some(seq);
                last_shift = Some(shift);
                found_any = true;
                break;
            }
        }
    }
    if found_any {
        pending.retain(|&i| written[i].is_none());
        follow_links(&mut pending, written);
    }
}

/// Groups moved rows `(written seq, stored seq)` (ordered by written seq) into permutation
/// cycles ([`AuditProblem::OutOfOrder`]) and runs of one shift ([`AuditProblem::Moved`]).
fn group_moved(moved: &[(i64, i64)]) -> Vec<AuditProblem> {
    let by_stored: HashMap<i64, i64> = moved.iter().map(|&(w, s)| (s, w)).collect();
    let mut in_cycle: HashSet<i64> = HashSet::new();
    let mut problems = Vec::new();
    for &(start_written, start_stored) in moved {
        if in_cycle.contains(&start_written) {
            continue;
        }
        // Follow: the entry written at `w` sits at stored seq `s`; who sits at `w`?
        let mut members = vec![(start_written, start_stored)];
        let mut at = start_written;
        let closed = loop {
            match by_stored.get(&at) {
                Some(&w) if w == start_written => break true,
                Some(&w) if members.len() <= moved.len() => {
                    let stored = at;
                    members.push((w, stored));
                    at = w;
                }
                _ => break false,
            }
        };
        if closed {
            members.sort_unstable();
            in_cycle.extend(members.iter().map(|m| m.0));
            problems.push(AuditProblem::OutOfOrder { entries: members });
        }
    }
    let mut run: Option<(i64, i64, i64)> = None;
    for &(written, stored) in moved.iter().filter(|m| !in_cycle.contains(&m.0)) {
        let shift = stored.saturating_sub(written);
        match &mut run {
            Some((_, to, s)) if *s == shift && *to + 1 == written => *to = written,
            _ => {
                if let Some((from, to, shift)) = run.take() {
                    problems.push(AuditProblem::Moved { from, to, shift });
                }
                run = Some((written, written, shift));
            }
        }
    }
    if let Some((from, to, shift)) = run {
        problems.push(AuditProblem::Moved { from, to, shift });
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde_json::json;

    use super::*;

    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(SigningKey::generate)
    }

    fn event(i: usize) -> AuditEvent {
        let kind = AuditKind::ALL[i % AuditKind::ALL.len()];
        let outcome = Outcome::ALL[i % Outcome::ALL.len()];
        let event =
            AuditEvent::new(kind, format!("tenant:tn_{}", i % 3), format!("in_{i:04}"), outcome)
                .detail(json!({ "policy_version": i, "digest": format!("{:064x}", i * 7919) }));
        if i.is_multiple_of(2) { event.tenant(format!("tn_{}", i % 3)) } else { event }
    }

    /// A log of `n` entries with checkpoints signed right after the entries in `checkpoint_at`.
    fn build(n: usize, checkpoint_at: &[i64]) -> (Vec<AuditRow>, Vec<CheckpointRow>) {
        let mut rows: Vec<AuditRow> = Vec::new();
        let mut checkpoints = Vec::new();
        for i in 0..n {
            let at = 1_700_000_000 + i as i64 * 10;
            let row = next_row(rows.last(), &event(i), at);
            if checkpoint_at.contains(&row.seq) {
                checkpoints.push(sign_checkpoint(key(), &row, at + 1));
            }
            rows.push(row);
        }
        (rows, checkpoints)
    }

    fn verify(rows: &[AuditRow], checkpoints: &[CheckpointRow]) -> AuditReport {
        verify_log(rows, checkpoints, &key().public_key())
    }

    #[test]
    fn only_an_intact_continuation_of_a_verified_entry_extends_it() {
        let (rows, _) = build(8, &[]);
        assert_eq!(check_extends(0, GENESIS_HASH, &rows), Ok(()));
        assert_eq!(check_extends(3, &rows[2].hash, &rows[3..]), Ok(()));
        assert_eq!(check_extends(8, &rows[7].hash, &[]), Ok(()));
        // A gap, an altered row, a stored hash that is not the row's, a start that is not the
        // anchor.
        let gap = [rows[3].clone(), rows[5].clone()];
        assert!(check_extends(3, &rows[2].hash, &gap).unwrap_err().contains("follows entry 4"));
        let mut altered = rows[4].clone();
        altered.detail.push(' ');
        assert!(check_extends(4, &rows[3].hash, &[altered]).unwrap_err().contains("its hash"));
        let mut forged = rows[4].clone();
        forged.hash = "f".repeat(64);
        assert!(check_extends(4, &rows[3].hash, &[forged]).unwrap_err().contains("its hash"));
        assert!(check_extends(4, &rows[2].hash, &rows[4..]).unwrap_err().contains("link"));
        assert!(check_extends(0, GENESIS_HASH, &rows[1..]).unwrap_err().contains("follows"));
    }

    fn messages(report: &AuditReport) -> Vec<String> {
        report.problems.iter().map(ToString::to_string).collect()
    }

    /// Changes one field of a row (0..=8: at, kind, actor, tenant, subject, outcome, detail,
    /// prev_hash, hash) to a different value.
    fn edit(row: &mut AuditRow, field: u8) {
        fn flip(text: &mut String) {
            let last = text.pop().unwrap_or('0');
            text.push(if last == '0' { '1' } else { '0' });
        }
        match field {
            0 => row.at += 1,
            1 => {
                row.kind =
                    "key.released".to_owned() + if row.kind == "key.released" { "x" } else { "" }
            }
            2 => row.actor.push('x'),
            3 => row.tenant_id = if row.tenant_id.is_some() { None } else { Some("tn_x".into()) },
            4 => row.subject.push('x'),
            5 => {
                row.outcome =
                    if row.outcome == "success" { "refused".into() } else { "success".into() }
            }
            6 => row.detail = row.detail.replace("policy_version", "policy_versioN"),
            7 => flip(&mut row.prev_hash),
            _ => flip(&mut row.hash),
        }
    }

    fn rehash(row: &mut AuditRow) {
        row.hash = entry_hash(row);
    }

    #[test]
    fn untouched_logs_are_intact() {
        for n in [0, 1, 2, 7, 40] {
            let checkpoint_at: Vec<i64> =
                (1..=n as i64).filter(|s| s % 5 == 0 || *s == n as i64).collect();
            let (rows, checkpoints) = build(n, &checkpoint_at);
            let report = verify(&rows, &checkpoints);
            assert!(report.is_intact(), "{n}: {report}");
            assert_eq!(report.entries, n);
            assert_eq!(report.checkpoints, checkpoint_at.len());
            assert_eq!(report.last_seq, n as i64);
            assert_eq!(report.signed_through, n as i64);
        }
        let (rows, checkpoints) = build(12, &[5, 10]);
        let report = verify(&rows, &checkpoints);
        assert!(report.is_intact());
        assert_eq!(report.signed_through, 10);
        assert_eq!(
            report.to_string(),
            "the audit log is intact: 12 entries, 2 checkpoints, signed through entry 10 (2 later \
             entries are not covered by a checkpoint yet)"
        );
    }

    #[test]
    fn next_row_chains_from_genesis() {
        let first = next_row(None, &event(0), 100);
        assert_eq!((first.seq, first.prev_hash.as_str()), (1, GENESIS_HASH));
        assert_eq!(first.hash, entry_hash(&first));
        assert_eq!(first.hash.len(), 64);
        assert!(first.hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(first.kind, "tenant.created");
        assert_eq!(first.outcome, "success");
        assert_eq!(first.tenant_id.as_deref(), Some("tn_0"));
        let second = next_row(Some(&first), &event(1), 101);
        assert_eq!((second.seq, &second.prev_hash), (2, &first.hash));
        assert_eq!(second.tenant_id, None);
    }

    #[test]
    fn detail_is_stored_as_canonical_json() {
        let row =
            next_row(None, &event(0).detail(json!({ "b": 1, "a": [2, { "d": 3, "c": 4 }] })), 1);
        assert_eq!(row.detail, r#"{"a":[2,{"c":4,"d":3}],"b":1}"#);
        // Floats have no canonical form: stored as compact JSON, and still hashed.
        let row = next_row(None, &event(0).detail(json!({ "ratio": 0.5 })), 1);
        assert_eq!(row.detail, r#"{"ratio":0.5}"#);
        assert_eq!(row.hash, entry_hash(&row));
    }

    #[test]
    fn every_field_but_hash_is_covered_and_unambiguous() {
        let row = next_row(None, &event(0), 100);
        let mut seen = HashSet::from([row.hash.clone()]);
        for field in 0..=7 {
            let mut changed = row.clone();
            edit(&mut changed, field);
            assert!(seen.insert(entry_hash(&changed)), "field {field}");
        }
        let mut changed = row.clone();
        changed.seq = 2;
        assert!(seen.insert(entry_hash(&changed)));
        // The hash field itself is not an input.
        let mut changed = row.clone();
        changed.hash = "x".into();
        assert_eq!(entry_hash(&changed), row.hash);
        // Moving a character between adjacent fields changes the hash.
        let (mut a, mut b) = (row.clone(), row.clone());
        (a.actor, a.subject) = ("ab".into(), "c".into());
        (b.actor, b.subject) = ("a".into(), "bc".into());
        assert_ne!(entry_hash(&a), entry_hash(&b));
        // No tenant differs from an empty tenant.
        let (mut a, mut b) = (row.clone(), row.clone());
        (a.tenant_id, b.tenant_id) = (None, Some(String::new()));
        assert_ne!(entry_hash(&a), entry_hash(&b));
    }

    #[test]
    fn edited_entry_is_named() {
        let (mut rows, checkpoints) = build(30, &[10, 20, 30]);
        rows[16].subject = "in_someone_else".into();
        let report = verify(&rows, &checkpoints);
        assert_eq!(
            messages(&report),
            ["entry 17 was altered (its content does not match its hash)"]
        );
        assert_eq!(report.problems, [AuditProblem::Altered { seq: 17 }]);
    }

    #[test]
    fn edited_and_rehashed_entry_is_named_not_its_successor() {
        let (mut rows, checkpoints) = build(30, &[10, 20, 30]);
        rows[16].outcome = "success".into();
        rows[16].detail = r#"{"verdict":"granted"}"#.into();
        rehash(&mut rows[16]);
        let report = verify(&rows, &checkpoints);
        assert_eq!(
            messages(&report),
            [
                "entry 17 was altered and its hash recomputed (entry 18 still names its original hash)"
            ]
        );
        // Also when a checkpoint signed the entry: the checkpoint's mismatch is not a second problem.
        let (mut rows, checkpoints) = build(30, &[17, 30]);
        rows[16].actor = "operator".into();
        rehash(&mut rows[16]);
        assert_eq!(
            verify(&rows, &checkpoints).problems,
            [AuditProblem::Rewritten {
                seq: 17,
                evidence: RewriteEvidence::NextEntryDisagrees { next: 18 }
            }]
        );
    }

    #[test]
    fn rehashed_entry_with_a_changed_prev_hash_is_named() {
        let (mut rows, checkpoints) = build(30, &[30]);
        rows[16].prev_hash = "ab".repeat(32);
        rehash(&mut rows[16]);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            [
                "entry 17 was altered and its hash recomputed (it does not name the hash of entry 16, \
              and entry 18 names another hash for it)"
            ]
        );
        // With a checkpoint on entry 16 the predecessor is known to be genuine.
        let (mut rows, checkpoints) = build(30, &[16, 30]);
        rows[16].prev_hash = "ab".repeat(32);
        rehash(&mut rows[16]);
        assert_eq!(
            verify(&rows, &checkpoints).problems,
            [AuditProblem::Rewritten {
                seq: 17,
                evidence: RewriteEvidence::PreviousConfirmed { previous: 16 }
            }]
        );
        // Entry 1 must follow genesis.
        let (mut rows, checkpoints) = build(5, &[5]);
        rows[0].prev_hash = "ab".repeat(32);
        rehash(&mut rows[0]);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            ["entry 1 was altered and its hash recomputed (as entry 1 it must follow the genesis \
              hash, and does not)"]
        );
    }

    #[test]
    fn rehashed_last_entry_is_caught_by_its_checkpoint() {
        let (mut rows, checkpoints) = build(20, &[19, 20]);
        rows[19].subject = "in_other".into();
        rehash(&mut rows[19]);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            [
                "entry 20 was altered and its hash recomputed (the checkpoint at 20 signed a different hash)"
            ]
        );
        // Without a checkpoint on entry 19, which of 11..=20 changed cannot be told.
        let (mut rows, checkpoints) = build(20, &[10, 20]);
        rows[19].subject = "in_other".into();
        rehash(&mut rows[19]);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            ["the checkpoint at 20 signed a different hash than entry 20 has: one or more of \
              entries 11..=20 were altered and the hashes after them recomputed (the checkpoint at \
              10 still matches)"]
        );
        // Without any checkpoint on it, a rehashed last entry is invisible (documented).
        let (mut rows, checkpoints) = build(20, &[10]);
        rows[19].subject = "in_other".into();
        rehash(&mut rows[19]);
        assert!(verify(&rows, &checkpoints).is_intact());
    }

    #[test]
    fn recomputed_chain_is_reported_once_by_its_first_differing_checkpoint() {
        let (mut rows, checkpoints) = build(50, &[10, 20, 30, 40, 50]);
        rows[24].detail = "{}".into();
        for i in 24..50 {
            if i > 24 {
                rows[i].prev_hash = rows[i - 1].hash.clone();
            }
            rehash(&mut rows[i]);
        }
        let report = verify(&rows, &checkpoints);
        assert_eq!(
            report.problems,
            [AuditProblem::CheckpointMismatch { seq: 30, since: 21, later: vec![40, 50] }]
        );
        assert_eq!(report.signed_through, 20);
        assert_eq!(
            messages(&report),
            ["the checkpoint at 30 signed a different hash than entry 30 has: one or more of \
              entries 21..=30 were altered and the hashes after them recomputed (the checkpoint at \
              20 still matches); the later checkpoints at 40 and 50 differ too"]
        );
    }

    #[test]
    fn removed_entries_are_named() {
        let (mut rows, checkpoints) = build(30, &[10, 17, 30]);
        rows.remove(16);
        assert_eq!(messages(&verify(&rows, &checkpoints)), ["entry 17 was removed"]);
        rows.drain(16..18);
        assert_eq!(messages(&verify(&rows, &checkpoints)), ["entries 17..=19 were removed"]);
        let (mut rows, checkpoints) = build(10, &[10]);
        rows.remove(0);
        assert_eq!(messages(&verify(&rows, &checkpoints)), ["entry 1 was removed"]);
    }

    #[test]
    fn removed_tail_is_caught_by_a_later_checkpoint() {
        let (mut rows, checkpoints) = build(50, &[20, 45, 50]);
        rows.truncate(40);
        let report = verify(&rows, &checkpoints);
        assert_eq!(
            messages(&report),
            ["entries 41..=50 were removed: the checkpoint at 50 is signed but the log ends at 40"]
        );
        assert_eq!(report.signed_through, 20);
        rows.clear();
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            ["entries 1..=50 were removed: the checkpoint at 50 is signed but the log is empty"]
        );
        // Removed after the last checkpoint: invisible (documented), but not signed either.
        let (mut rows, checkpoints) = build(50, &[40]);
        rows.truncate(45);
        let report = verify(&rows, &checkpoints);
        assert!(report.is_intact());
        assert_eq!((report.last_seq, report.signed_through), (45, 40));
    }

    #[test]
    fn exchanged_seqs_are_out_of_order() {
        let (mut rows, checkpoints) = build(30, &[12, 13, 30]);
        rows[11].seq = 13;
        rows[12].seq = 12;
        rows.swap(11, 12); // as the store reads them back, ordered by seq
        let report = verify(&rows, &checkpoints);
        assert_eq!(
            messages(&report),
            [
                "entries 12 and 13 are out of order (entry 12 is stored at seq 13, entry 13 is stored at seq 12)"
            ]
        );
        // Far apart, and at the ends of the log.
        for (a, b) in [(1, 30), (29, 30), (1, 2), (3, 27)] {
            let (mut rows, checkpoints) = build(30, &[a, b, 30]);
            let (ia, ib) = ((a - 1) as usize, (b - 1) as usize);
            rows[ia].seq = b;
            rows[ib].seq = a;
            rows.sort_by_key(|r| r.seq);
            assert_eq!(
                verify(&rows, &checkpoints).problems,
                [AuditProblem::OutOfOrder { entries: vec![(a, b), (b, a)] }],
                "{a} <-> {b}"
            );
        }
    }

    #[test]
    fn three_rotated_seqs_are_out_of_order() {
        let (mut rows, checkpoints) = build(20, &[20]);
        rows[4].seq = 9;
        rows[8].seq = 14;
        rows[13].seq = 5;
        rows.sort_by_key(|r| r.seq);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            [
                "entries 5, 9 and 14 are out of order (entry 5 is stored at seq 9, entry 9 is stored at \
              seq 14, entry 14 is stored at seq 5)"
            ]
        );
    }

    #[test]
    fn removal_with_renumbering_names_the_removed_entry() {
        let (mut rows, checkpoints) = build(50, &[10, 50]);
        rows.remove(16);
        for row in &mut rows[16..] {
            row.seq -= 1;
        }
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            [
                "entry 17 was removed",
                "entries 18..=50 were renumbered: they are stored at seqs 17..=49",
            ]
        );
    }

    #[test]
    fn moved_and_copied_entries_are_named() {
        let (mut rows, checkpoints) = build(20, &[20]);
        let mut moved = rows.remove(4);
        moved.seq = 1000;
        rows.push(moved);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            ["entry 5 is stored at seq 1000 instead"]
        );

        let (mut rows, checkpoints) = build(20, &[20]);
        let mut copy = rows[4].clone();
        copy.seq = 21;
        rows.push(copy);
        let report = verify(&rows, &checkpoints);
        assert_eq!(messages(&report), ["entry 5 appears twice: a copy of it is stored at seq 21"]);

        let (mut rows, checkpoints) = build(5, &[5]);
        let mut zero = rows[0].clone();
        zero.seq = 0;
        zero.subject = "forged".into();
        rehash(&mut zero);
        rows.insert(0, zero);
        assert_eq!(
            messages(&verify(&rows, &checkpoints)),
            ["the row stored at seq 0 is not an entry of the log (seqs start at 1)"]
        );
    }

    #[test]
    fn forged_checkpoints_are_named_and_used_for_nothing() {
        let (rows, checkpoints) = build(20, &[10, 20]);
        let other = SigningKey::generate();
        type Forge<'a> = Box<dyn Fn(&mut CheckpointRow) + 'a>;
        let cases: Vec<(&str, Forge<'_>)> = vec![
            ("hash", Box::new(|c| c.hash = "ab".repeat(32))),
            ("time", Box::new(|c| c.at += 1)),
            ("seq", Box::new(|c| c.seq = 11)),
            ("key", Box::new(|c| *c = sign_checkpoint(&other, &rows[9], c.at))),
            (
                "signature",
                Box::new(|c| {
                    c.signature = c.signature.replace(|ch: char| ch.is_ascii_digit(), "A")
                }),
            ),
            ("garbage", Box::new(|c| c.signature = "not base64!".into())),
        ];
        for (what, forge) in cases {
            let mut forged = checkpoints.clone();
            forge(&mut forged[0]);
            let report = verify(&rows, &forged);
            assert_eq!(report.problems.len(), 1, "{what}: {report}");
            assert!(
                matches!(&report.problems[0], AuditProblem::CheckpointForged { seq, .. } if *seq == forged[0].seq),
                "{what}: {report}"
            );
        }
        // A forged checkpoint beyond the end does not claim a removed tail.
        let mut forged = checkpoints.clone();
        forged.push(CheckpointRow {
            seq: 30,
            at: 1,
            hash: "00".repeat(32),
            signature: forged[1].signature.clone(),
        });
        assert_eq!(
            messages(&verify(&rows, &forged)),
            [
                "the checkpoint at 30 is forged or was edited: its signature does not verify (it was \
              not made by this key over this domain and message)"
            ]
        );
        // A valid checkpoint checked against another audit key is refused too.
        let report = verify_log(&rows, &checkpoints, &other.public_key());
        assert_eq!(report.problems.len(), 2);
        assert_eq!(report.signed_through, 0);
    }

    #[test]
    fn several_problems_are_all_listed_in_order() {
        let (mut rows, checkpoints) = build(60, &[10, 20, 30, 40, 50, 60]);
        rows[4].actor = "intruder".into(); // 5 altered
        rows[11].seq = 13; // 12 <-> 13
        rows[12].seq = 12;
        rows.remove(29); // 30 removed
        rows.truncate(50); // 52..=60 gone (entries 51 stays, at index 49)
        let mut forged = checkpoints;
        forged[1].at += 5; // checkpoint at 20 forged
        rows.sort_by_key(|r| r.seq);
        let report = verify(&rows, &forged);
        assert_eq!(
            messages(&report),
            [
                "entry 5 was altered (its content does not match its hash)",
                "entries 12 and 13 are out of order (entry 12 is stored at seq 13, entry 13 is stored at seq 12)",
                "the checkpoint at 20 is forged or was edited: its signature does not verify (it was \
                 not made by this key over this domain and message)",
                "entry 30 was removed",
                "entries 52..=60 were removed: the checkpoint at 60 is signed but the log ends at 51",
            ],
            "{report}"
        );
        assert!(report.to_string().starts_with(
            "the audit log was tampered with (50 entries, 6 checkpoints, 5 problems):\n- entry 5"
        ));
    }

    #[test]
    fn a_log_with_every_entry_edited_is_still_verified_quickly() {
        let (mut rows, checkpoints) = build(600, &[600]);
        for row in &mut rows {
            row.detail.push(' ');
        }
        let started = std::time::Instant::now();
        let report = verify(&rows, &checkpoints);
        assert_eq!(report.problems.len(), 600);
        assert!(report.problems.iter().all(|p| matches!(p, AuditProblem::Altered { .. })));
        assert_eq!(report.problems[599], AuditProblem::Altered { seq: 600 });
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn checkpoints_are_due_every_n_entries() {
        assert!(!checkpoint_due(0, 0, 100));
        assert!(!checkpoint_due(0, 99, 100));
        assert!(checkpoint_due(0, 100, 100));
        assert!(checkpoint_due(100, 250, 100));
        assert!(!checkpoint_due(200, 250, 100));
        assert!(!checkpoint_due(250, 250, 1));
        assert!(checkpoint_due(250, 251, 1));
        assert!(checkpoint_due(250, 251, 0));
        assert!(checkpoint_due(250, 251, -5));
        assert!(!checkpoint_due(250, 250, 0));
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: HashSet<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AuditKind::ALL.len());
        for kind in AuditKind::ALL {
            assert_eq!(kind.as_str().parse::<AuditKind>().unwrap(), kind);
        }
        for outcome in Outcome::ALL {
            assert_eq!(outcome.to_string().parse::<Outcome>().unwrap(), outcome);
        }
        assert_eq!(AuditKind::KeyReleased.as_str(), "key.released");
        assert_eq!(AuditKind::AccessDenied.as_str(), "access.denied");
        let err = "key.stolen".parse::<AuditKind>().unwrap_err().to_string();
        assert!(
            err.starts_with("unknown audit kind `key.stolen` (expected one of: tenant.created, "),
            "{err}"
        );
        assert!("Success".parse::<Outcome>().is_err());
    }

    #[test]
    fn checkpoint_signature_covers_seq_time_and_hash() {
        let (rows, _) = build(3, &[]);
        let checkpoint = sign_checkpoint(key(), &rows[2], 77);
        assert_eq!((checkpoint.seq, checkpoint.at, &checkpoint.hash), (3, 77, &rows[2].hash));
        verify_checkpoint(&checkpoint, &key().public_key()).unwrap();
        // Under another domain the same bytes do not verify.
        let message = checkpoint_message(3, 77, &rows[2].hash);
        assert!(
            key()
                .public_key()
                .verify_bytes("cloister-audit-checkpoint v2", &message, &checkpoint.signature)
                .is_err()
        );
    }

    /// One way to tamper with a log.
    #[derive(Clone, Debug)]
    enum Tamper {
        /// Change a field of entry `idx + 1`.
        Edit { idx: Index, field: u8 },
        /// Change a content field and recompute the row's hash.
        EditRehash { idx: Index, field: u8 },
        /// Delete one row.
        Delete { idx: Index },
        /// Delete the rows from `idx + 1` on.
        DeleteTail { idx: Index },
        /// Exchange two rows' seqs.
        Swap { a: Index, b: Index },
        /// Edit or replace a checkpoint.
        Forge { idx: Index, how: u8 },
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            (any::<Index>(), 0u8..=8).prop_map(|(idx, field)| Tamper::Edit { idx, field }),
            (any::<Index>(), 0u8..=6).prop_map(|(idx, field)| Tamper::EditRehash { idx, field }),
            any::<Index>().prop_map(|idx| Tamper::Delete { idx }),
            any::<Index>().prop_map(|idx| Tamper::DeleteTail { idx }),
            (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tamper::Swap { a, b }),
            (any::<Index>(), 0u8..=4).prop_map(|(idx, how)| Tamper::Forge { idx, how }),
        ]
    }

    /// Applies `tamper` and returns the problems the verifier must report, or `None` when the
    /// tampering does not apply to this log (a swap in a one-entry log).
    fn apply(
        tamper: &Tamper,
        rows: &mut Vec<AuditRow>,
        checkpoints: &mut [CheckpointRow],
    ) -> Option<Vec<AuditProblem>> {
        let n = rows.len() as i64;
        let checkpoint_below = |seq: i64, checkpoints: &[CheckpointRow]| {
            checkpoints.iter().map(|c| c.seq).filter(|&s| s < seq).max().unwrap_or(0)
        };
        Some(match tamper {
            Tamper::Edit { idx, field } => {
                let i = idx.index(rows.len());
                edit(&mut rows[i], *field);
                vec![AuditProblem::Altered { seq: i as i64 + 1 }]
            }
            Tamper::EditRehash { idx, field } => {
                let i = idx.index(rows.len());
                edit(&mut rows[i], *field);
                rehash(&mut rows[i]);
                let seq = i as i64 + 1;
                if seq < n {
                    vec![AuditProblem::Rewritten {
                        seq,
                        evidence: RewriteEvidence::NextEntryDisagrees { next: seq + 1 },
                    }]
                } else {
                    let since = checkpoint_below(seq, checkpoints) + 1;
                    vec![AuditProblem::CheckpointMismatch { seq, since, later: Vec::new() }]
                }
            }
            Tamper::Delete { idx } => {
                let i = idx.index(rows.len());
                rows.remove(i);
                let seq = i as i64 + 1;
                if seq < n {
                    vec![AuditProblem::Removed { from: seq, to: seq }]
                } else {
                    vec![AuditProblem::TailRemoved { from: seq, to: n }]
                }
            }
            Tamper::DeleteTail { idx } => {
                let i = idx.index(rows.len());
                rows.truncate(i);
                vec![AuditProblem::TailRemoved { from: i as i64 + 1, to: n }]
            }
            Tamper::Swap { a, b } => {
                let (a, b) = (a.index(rows.len()), b.index(rows.len()));
                if a == b {
                    return None;
                }
                let (sa, sb) = (rows[a].seq, rows[b].seq);
                rows[a].seq = sb;
                rows[b].seq = sa;
                rows.sort_by_key(|r| r.seq);
                let (lo, hi) = (sa.min(sb), sa.max(sb));
                vec![AuditProblem::OutOfOrder { entries: vec![(lo, hi), (hi, lo)] }]
            }
            Tamper::Forge { idx, how } => {
                let c = idx.index(checkpoints.len());
                let checkpoint = &mut checkpoints[c];
                match how {
                    0 => checkpoint.hash = rows[0].hash.clone() + "0",
                    1 => checkpoint.at -= 1,
                    2 => {
                        *checkpoint = sign_checkpoint(
                            &SigningKey::generate(),
                            &rows[checkpoint.seq as usize - 1],
                            checkpoint.at,
                        )
                    }
                    3 => {
                        checkpoint.signature =
                            key().sign_bytes(CHECKPOINT_DOMAIN, b"something else")
                    }
                    _ => {
                        let mut raw = checkpoint.signature.clone().into_bytes();
                        raw[5] = if raw[5] == b'A' { b'B' } else { b'A' };
                        checkpoint.signature = String::from_utf8(raw).unwrap();
                    }
                }
                vec![AuditProblem::CheckpointForged { seq: checkpoint.seq, reason: String::new() }]
            }
        })
    }

    /// Forged-checkpoint reasons are free text; compare everything else exactly.
    fn without_reasons(problems: &[AuditProblem]) -> Vec<AuditProblem> {
        problems
            .iter()
            .cloned()
            .map(|p| match p {
                AuditProblem::CheckpointForged { seq, .. } => {
                    AuditProblem::CheckpointForged { seq, reason: String::new() }
                }
                other => other,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn one_tampering_is_named_exactly(
            n in 1usize..=24,
            extra_checkpoints in proptest::collection::vec(any::<bool>(), 24),
            tamper in tamper(),
        ) {
            // A checkpoint on the last entry (as the service signs on shutdown) and some others.
            let checkpoint_at: Vec<i64> = (1..=n as i64)
                .filter(|&s| s == n as i64 || extra_checkpoints[s as usize - 1])
                .collect();
            let (mut rows, mut checkpoints) = build(n, &checkpoint_at);
            let untouched = verify(&rows, &checkpoints);
            prop_assert!(untouched.is_intact(), "{}", untouched);
            prop_assert_eq!(untouched.signed_through, n as i64);
            let Some(expected) = apply(&tamper, &mut rows, &mut checkpoints) else {
                return Ok(());
            };
            let report = verify(&rows, &checkpoints);
            prop_assert_eq!(without_reasons(&report.problems), expected, "{}", report);
        }
    }
}
