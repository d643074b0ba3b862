//! The audit log: records, appends and signed checkpoints.

use cloister_types::manage::AuditQuery;

use super::*;

impl Service {
    /// Audit records: all for the operator, the tenant's own for a tenant admin.
    pub async fn audit_records(&self, who: &Principal, now: i64) -> Result<Vec<AuditRecordView>> {
        self.audit_page(who, &AuditQuery::default(), now).await
    }

    /// One page of audit records matching `query`: among all for the operator, among the
    /// tenant's own for a tenant admin.
    pub async fn audit_page(
        &self,
        who: &Principal,
        query: &AuditQuery,
        now: i64,
    ) -> Result<Vec<AuditRecordView>> {
        let rows = match who {
            Principal::Operator => {
                self.allow(who, Action::ReadAudit, Resource::Service, "the audit log", now).await?;
                self.store.audit_page(None, query).await?
            }
            _ => {
                let tenant = self.tenant_of(who, Action::ReadAudit, now).await?;
                self.store.audit_page(Some(&tenant), query).await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|row| AuditRecordView {
                seq: row.seq,
                at: row.at,
                kind: row.kind,
                actor: row.actor,
                tenant_id: row.tenant_id,
                subject: row.subject,
                outcome: row.outcome,
                detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null),
                hash: row.hash,
            })
            .collect())
    }

    /// The whole log as stored, with its checkpoints, for an operator who verifies it
    /// independently (the web console recomputes every hash and checks every signature).
    pub async fn audit_chain(
        &self,
        who: &Principal,
        now: i64,
    ) -> Result<cloister_types::manage::AuditChainView> {
        use cloister_types::manage::{AuditChainView, AuditCheckpointView, AuditEntryView};
        // Only the operator: the chain links every tenant's entries.
        self.allow(who, Action::ReadAudit, Resource::Service, "the audit log", now).await?;
        let entries = self
            .store
            .audit_rows(None)
            .await?
            .into_iter()
            .map(|row| AuditEntryView {
                seq: row.seq,
                at: row.at,
                kind: row.kind,
                actor: row.actor,
                tenant_id: row.tenant_id,
                subject: row.subject,
                outcome: row.outcome,
                detail: row.detail,
                prev_hash: row.prev_hash,
                hash: row.hash,
            })
            .collect();
        let checkpoints = self
            .store
            .checkpoints()
            .await?
            .into_iter()
            .map(|c| AuditCheckpointView {
                seq: c.seq,
                at: c.at,
                hash: c.hash,
                signature: c.signature,
            })
            .collect();
        Ok(AuditChainView { entries, checkpoints })
    }

    /// Makes sure a signed checkpoint covers the log's last entry, and returns it (seq 0 for an
    /// empty log). Decided from the database every time, never from what this process
    /// remembers (red team: a log cut back behind the running service left new entries
    /// unsigned), and never by signing a stored hash as it stands (red team: the service then
    /// signed the head of a branch the operator spliced in): the latest checkpoint's signature is
    /// checked, and every entry after it is recomputed and linked to it before the last one is
    /// signed. A log that does not extend its last checkpoint gets no checkpoint: an error.
    pub async fn checkpoint(&self, now: i64) -> Result<CheckpointRef> {
        let latest = self.store.last_checkpoint().await?;
        let anchor = match &latest {
            Some(c) => {
                audit::verify_checkpoint(c, &self.signing_key.public_key()).map_err(|e| {
                    altered(format!("the checkpoint at entry {} does not verify: {e}", c.seq))
                })?;
                (c.seq, c.hash.clone())
            }
            None => (0, audit::GENESIS_HASH.to_owned()),
        };
        self.sign_tail(anchor, None, now).await
    }

    /// [`Service::checkpoint`] for an answer that records `entry`, which this service just
    /// appended (a key release, a job, a privacy charge): the chain is verified from `entry`
    /// itself — it must still be in the log as written — to the last entry, which is signed.
    /// The answer carries the checkpoint, which its holder can later demand (`audit verify
    /// --expect-checkpoint`). Fails closed when `entry` is gone or altered.
    ///
    /// With `after`, a checkpoint the enclave holds from an earlier answer for the same job,
    /// the chain is verified from that checkpoint instead (and must hold `entry` as written):
    /// the new checkpoint then covers the job's earlier entries too, which a log rewritten
    /// between the two answers would otherwise leave out (red team, round 4).
    pub(super) async fn checkpoint_covering(
        &self,
        entry: &crate::store::AuditRow,
        after: Option<&CheckpointRef>,
        now: i64,
    ) -> Result<CheckpointRef> {
        let anchor = match after {
            Some(held) if held.seq > 0 => {
                if held.seq >= entry.seq {
                    return Err(altered(format!(
                        "entry {} comes before the checkpoint {} the enclave holds",
                        entry.seq, held.seq
                    )));
                }
                (held.seq, held.hash.clone())
            }
            // Without one: from the latest signed checkpoint before the entry (its signature
            // checked), so that the unsigned entries before this one are verified too and
            // never signed over unchecked (red team, round 7: starting from the entry's own
            // `prev_hash` trusted whatever the database held before it). A checkpoint at or
            // past the entry already covers it: it was signed after the same verification.
            _ => match self.store.last_checkpoint().await? {
                Some(latest) if latest.seq < entry.seq => {
                    audit::verify_checkpoint(&latest, &self.signing_key.public_key()).map_err(
                        |e| {
                            altered(format!(
                                "the checkpoint at entry {} does not verify: {e}",
                                latest.seq
                            ))
                        },
                    )?;
                    (latest.seq, latest.hash)
                }
                Some(_) => (entry.seq.saturating_sub(1), entry.prev_hash.clone()),
                None => (0, audit::GENESIS_HASH.to_owned()),
            },
        };
        self.sign_tail(anchor, Some((entry.seq, &entry.hash)), now).await
    }

    /// Refuses, before anything is written, a request whose `after` names a checkpoint this
    /// log does not hold. Either the log was rolled back or altered behind the service, or the
    /// request does not come from an enclave this service gave that checkpoint (anyone holding
    /// a captured attestation result can send one): the two cannot be told apart here, so the
    /// refusal says both, and no entry claims an answer that was never given (red team,
    /// round 7).
    pub(super) async fn check_held_checkpoint(&self, after: Option<&CheckpointRef>) -> Result<()> {
        let Some(held) = after.filter(|held| held.seq > 0) else {
            return Ok(());
        };
        let stored = self.store.checkpoint_at(held.seq).await?;
        if stored.is_some_and(|c| c.hash == held.hash) {
            return Ok(());
        }
        tracing::warn!(
            checkpoint = %format_args!("{}:{}", held.seq, held.hash),
            "a request names an audit checkpoint this log does not hold: check the log with \
             `cloister audit verify --expect-checkpoint SEQ:HASH` before acting"
        );
        Err(ServiceError::UnknownCheckpoint(held.seq))
    }

    /// Verifies that the log from the entry after `anchor` (seq, hash) to its end is one intact
    /// chain — holding the entry `held` (seq, hash) when given — and makes sure a signed
    /// checkpoint covers its last entry: an existing one that names exactly that entry, or a
    /// new one.
    async fn sign_tail(
        &self,
        (after, after_hash): (i64, String),
        held: Option<(i64, &str)>,
        now: i64,
    ) -> Result<CheckpointRef> {
        // Another replica may append and checkpoint between the reads: try again a few times.
        for _ in 0..4 {
            let Some(last) = self.store.audit_last().await? else {
                if after == 0 && held.is_none() {
                    return Ok(CheckpointRef::default());
                }
                return Err(altered(format!("the log is empty, entry {} is gone", after + 1)));
            };
            let needed = held.map_or(after, |(seq, _)| seq);
            if last.seq < needed {
                return Err(altered(format!(
                    "the log ends at entry {}, before entry {}",
                    last.seq,
                    after + 1
                )));
            }
            let rows = self.store.audit_rows_between(after, last.seq).await?;
            audit::check_extends(after, &after_hash, &rows).map_err(|reason| {
                altered(format!("the log does not continue from entry {after}: {reason}"))
            })?;
            if let Some((seq, hash)) = held
                && !rows.iter().any(|row| row.seq == seq && row.hash == hash)
            {
                return Err(altered(format!("entry {seq} is not the entry written")));
            }
            let (seq, hash) =
                rows.last().map_or((after, after_hash.clone()), |row| (row.seq, row.hash.clone()));
            match self.store.last_checkpoint().await? {
                Some(c) if c.seq > seq => continue,
                Some(c) if c.seq == seq => {
                    if c.hash != hash {
                        return Err(altered(format!(
                            "the checkpoint at entry {seq} is not that entry's"
                        )));
                    }
                }
                _ => {
                    let Some(tail) = rows.last() else {
                        return Err(altered(format!("entry {seq} has no checkpoint to verify")));
                    };
                    let checkpoint = audit::sign_checkpoint(&self.signing_key, tail, now);
                    match self.store.add_checkpoint(&checkpoint).await {
                        Ok(()) => {}
                        // Another replica signed this entry meanwhile: it must be this entry.
                        Err(StoreError::Conflict(_)) => {
                            let stored = self.store.checkpoint_at(seq).await?;
                            if stored.is_none_or(|c| c.hash != hash) {
                                return Err(altered(format!(
                                    "the checkpoint at entry {seq} is not that entry's"
                                )));
                            }
                        }
                        Err(other) => return Err(other.into()),
                    }
                }
            }
            self.last_checkpoint.store(seq, Ordering::Relaxed);
            return Ok(CheckpointRef { seq, hash });
        }
        Err(altered("the log's checkpoints run ahead of its entries".to_owned()))
    }

    /// Appends an audit entry; returns its seq.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record(
        &self,
        who: &Principal,
        kind: AuditKind,
        tenant_id: Option<&str>,
        subject: &str,
        outcome: Outcome,
        detail: serde_json::Value,
        now: i64,
    ) -> Result<crate::store::AuditRow> {
        let event = AuditEvent {
            kind,
            actor: who.to_string(),
            tenant_id: tenant_id.map(str::to_owned),
            subject: subject.to_owned(),
            outcome,
            detail,
        };
        self.append(&event, now).await
    }

    /// Appends `event`, signing a checkpoint when one is due; returns the entry as written once
    /// it is committed (concurrent appends share one transaction: [`Store::append_audit_event`]).
    /// A due checkpoint that cannot be signed (the log was altered) is logged, not the caller's
    /// failure: answers that need one ask [`Service::checkpoint_covering`], which fails closed.
    pub(super) async fn append(
        &self,
        event: &AuditEvent,
        now: i64,
    ) -> Result<crate::store::AuditRow> {
        let row = self.store.append_audit_event(event.clone(), now).await?;
        if audit::checkpoint_due(
            self.last_checkpoint.load(Ordering::Relaxed),
            row.seq,
            CHECKPOINT_EVERY,
        ) && let Err(error) = self.checkpoint(now).await
        {
            tracing::error!(%error, "the audit log could not be checkpointed");
        }
        Ok(row)
    }
}

/// The error when the audit log in the database is not what this service wrote: no checkpoint
/// is signed and no answer that needs one is given.
fn altered(reason: String) -> ServiceError {
    ServiceError::AuditLogAltered(reason)
}
