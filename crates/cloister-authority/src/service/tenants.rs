//! Tenants and their bearer credentials.

use super::*;

impl Service {
    /// Registers `token` as an operator credential unless it already is one.
    pub async fn ensure_operator_token(&self, token: &str, now: i64) -> Result<()> {
        let row = CredentialRow {
            token_hash: token_hash(token),
            role: "operator".to_owned(),
            tenant_id: None,
            created_at: now,
        };
        match self.store.add_credential(&row).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }

    /// Who presents `bearer` (none: [`Principal::Anonymous`]): an operator or tenant token, or
    /// a data owner's session token. A token that is not ours is an error, never a silent
    /// downgrade to anonymous.
    pub async fn authenticate(&self, bearer: Option<&str>, now: i64) -> Result<Principal> {
        let Some(token) = bearer else { return Ok(Principal::Anonymous) };
        if let Some(owner) = self.owner_session(token, now) {
            return Ok(owner);
        }
        let Some(row) = self.store.credential(&token_hash(token)).await? else {
            return Err(ServiceError::Unauthenticated);
        };
        match (row.role.as_str(), row.tenant_id) {
            ("operator", _) => Ok(Principal::Operator),
            ("tenant", Some(tenant)) => Ok(Principal::TenantAdmin { tenant }),
            _ => Err(ServiceError::Unauthenticated),
        }
    }

    /// Creates a tenant and its first admin token.
    pub async fn create_tenant(
        &self,
        who: &Principal,
        request: &CreateTenant,
        now: i64,
    ) -> Result<TenantCreated> {
        self.allow(who, Action::CreateTenant, Resource::Service, "tenants", now).await?;
        check_name("tenant", &request.name)?;
        let tenant = TenantRow { id: new_id("tn"), name: request.name.clone(), created_at: now };
        self.store.create_tenant(&tenant).await?;
        let token = new_token();
        self.store
            .add_credential(&CredentialRow {
                token_hash: token_hash(&token),
                role: "tenant".to_owned(),
                tenant_id: Some(tenant.id.clone()),
                created_at: now,
            })
            .await?;
        self.record(
            who,
            AuditKind::TenantCreated,
            Some(&tenant.id),
            &tenant.id,
            Outcome::Success,
            serde_json::json!({ "name": tenant.name }),
            now,
        )
        .await?;
        Ok(TenantCreated { tenant: tenant_view(tenant), token })
    }

    /// Every tenant.
    pub async fn list_tenants(&self, who: &Principal, now: i64) -> Result<Vec<TenantView>> {
        self.allow(who, Action::ListTenants, Resource::Service, "tenants", now).await?;
        Ok(self.store.tenants().await?.into_iter().map(tenant_view).collect())
    }
}

fn tenant_view(row: TenantRow) -> TenantView {
    TenantView { id: row.id, name: row.name, created_at: row.created_at }
}
