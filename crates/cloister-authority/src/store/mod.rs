//! placeholder

/// One row of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub tenant_id: Option<String>,
    pub subject: String,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// One signed checkpoint of the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub seq: i64,
    pub at: i64,
    pub hash: String,
    pub signature: String,
}
