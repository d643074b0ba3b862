//! The audit log: records, appends and signed checkpoints.

use super::*;

impl Service {
    /// Audit records: all for the operator, the tenant's own for a tenant admin.
    pub async fn audit_records(&self, who: &Principal, now: i64) -> Result<Vec<AuditRecordView>> {
        let rows = match who {
            Principal::Operator => {
                self.allow(who, Action::ReadAudit, Resource::Service, "the audit log", now).await?;
                self.store.audit_rows(None).await?
            }
            _ => {
                let tenant = self.tenant_of(who, Action::ReadAudit, now).await?;
                self.store.audit_rows(Some(&tenant)).await?
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

    /// Makes sure a signed checkpoint covers the log's last entry, signing one unless the
    /// latest stored checkpoint is that very entry (same seq and hash), and returns it (seq 0
    /// for an empty log). Decided from the database every time, never from what this process
    /// remembers: a log cut back behind the running service (red team: its cached counter then
    /// left every new entry unsigned) is checkpointed again at once.
    pub async fn checkpoint(&self, now: i64) -> Result<CheckpointRef> {
        let Some(last) = self.store.audit_last().await? else {
            return Ok(CheckpointRef::default());
        };
        let covers = |c: &crate::store::CheckpointRow| c.seq == last.seq && c.hash == last.hash;
        if !self.store.last_checkpoint().await?.is_some_and(|c| covers(&c)) {
            let checkpoint = audit::sign_checkpoint(&self.signing_key, &last, now);
            match self.store.add_checkpoint(&checkpoint).await {
                Ok(()) => {}
                // Another replica signed this entry meanwhile, or a checkpoint at this seq
                // survives from a history that was cut and written again: only the first
                // covers the entry.
                Err(StoreError::Conflict(_)) => {
                    let latest = self.store.last_checkpoint().await?;
                    if !latest.is_some_and(|c| c.seq > last.seq || covers(&c)) {
                        return Err(ServiceError::Internal(format!(
                            "the audit checkpoint at entry {} is not that entry's: the database \
                             was altered",
                            last.seq
                        )));
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
        self.last_checkpoint.store(last.seq, Ordering::Relaxed);
        Ok(CheckpointRef { seq: last.seq, hash: last.hash })
    }

    /// [`Service::checkpoint`] for an answer that records something a rollback must not lose
    /// (a key release, a job, a privacy charge): the answer carries the checkpoint, which its
    /// holder can later demand (`audit verify --expect-checkpoint`). Fails closed when entry
    /// `seq` is no longer in the log.
    pub(super) async fn checkpoint_covering(&self, seq: i64, now: i64) -> Result<CheckpointRef> {
        let covering = self.checkpoint(now).await?;
        if covering.seq < seq {
            return Err(ServiceError::Internal(format!(
                "audit entry {seq} is gone from the log: the database was altered behind the service"
            )));
        }
        Ok(covering)
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
    ) -> Result<i64> {
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

    /// Appends `event`, signing a checkpoint when one is due; returns the entry's seq once it
    /// is committed (concurrent appends share one transaction: [`Store::append_audit_event`]).
    pub(super) async fn append(&self, event: &AuditEvent, now: i64) -> Result<i64> {
        let row = self.store.append_audit_event(event.clone(), now).await?;
        if audit::checkpoint_due(
            self.last_checkpoint.load(Ordering::Relaxed),
            row.seq,
            CHECKPOINT_EVERY,
        ) {
            self.checkpoint(now).await?;
        }
        Ok(row.seq)
    }
}
