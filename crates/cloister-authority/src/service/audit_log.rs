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

    /// Signs a checkpoint over the last entry now (on shutdown, so the tail is covered).
    pub async fn checkpoint(&self, now: i64) -> Result<()> {
        let Some(last) = self.store.audit_last().await? else { return Ok(()) };
        if last.seq <= self.last_checkpoint.load(Ordering::Relaxed) {
            return Ok(());
        }
        let checkpoint = audit::sign_checkpoint(&self.signing_key, &last, now);
        match self.store.add_checkpoint(&checkpoint).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(other) => return Err(other.into()),
        }
        self.last_checkpoint.fetch_max(last.seq, Ordering::Relaxed);
        Ok(())
    }

    /// Signs a checkpoint unless the latest one already covers entry `seq`: an answer that
    /// records something a rollback must not lose (a job, a privacy charge) then carries a
    /// checkpoint its holder can later demand (`audit verify --expect-checkpoint`).
    pub(super) async fn checkpoint_covering(&self, seq: i64, now: i64) -> Result<()> {
        if self.last_checkpoint.load(Ordering::Relaxed) >= seq {
            return Ok(());
        }
        self.checkpoint(now).await
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
