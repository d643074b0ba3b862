//! The authorization decision point: who may do what to whose resources. Every route of the
//! attestation service asks [`authorize`] and nothing else; anything not granted here is denied.
//!
//! The rules are few and fixed, so they are written as one exhaustive `match` rather than in
//! Rego: the compiler then checks that every (principal, action) pair has a decision, and there
//! is no evaluation to fail. Owner-defined policies (appraisal, key release) stay in Rego.

use std::fmt;

/// Who is asking, as established by authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The service operator: manages tenants and reads the whole audit log, nothing else.
    Operator,
    /// A tenant administrator: manages the tenant's own instances and broker keys.
    TenantAdmin {
        /// The tenant.
        tenant: String,
    },
    /// A data owner signed in with its party key (an owner session): reads what the service
    /// keeps about its own data sets, nothing else.
    DataOwner {
        /// The owner's party public key.
        key: String,
    },
    /// No credential: enclaves and relying parties. Evidence and attestation results
    /// authenticate them where it matters (attest, key release), not a bearer token.
    Anonymous,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Operator => f.write_str("operator"),
            Principal::TenantAdmin { tenant } => write!(f, "tenant:{tenant}"),
            Principal::DataOwner { key } => write!(f, "owner:{key}"),
            Principal::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// What is being attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Create a tenant and its first admin token.
    CreateTenant,
    /// List tenants.
    ListTenants,
    /// Create an instance in the caller's tenant.
    CreateInstance,
    /// List the caller's instances.
    ListInstances,
    /// Read an instance's configuration and policy history.
    ReadInstance,
    /// Change an instance's policy, reference values or trust anchors, or rotate its keys.
    UpdateInstance,
    /// Delete an instance and destroy its keys.
    DeleteInstance,
    /// Export an instance to another service.
    ExportInstance,
    /// Import an instance into the caller's tenant.
    ImportInstance,
    /// Ask for a challenge and submit evidence to an instance.
    Attest,
    /// Read what relying parties need: the instance CA, JWKS and policy id.
    ReadInstancePublic,
    /// Register, list, read, revoke or delete broker keys of the caller's tenant.
    ManageKeys,
    /// Ask for a key release (decided by the key's release policy, not here).
    RequestKeyRelease,
    /// Read audit records.
    ReadAudit,
    /// Read a party's data sets, their privacy charges and the jobs recorded over them.
    ReadOwnData,
}

/// What the action is applied to: the tenant that owns it, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// The service as a whole (tenants, the whole audit log).
    Service,
    /// The caller's own tenant scope (creating or listing its instances and keys).
    OwnTenant,
    /// Something owned by a tenant: an instance, a broker key, audit records.
    OwnedBy(&'a str),
    /// What a party (a data owner, by its public key) owns: its data sets.
    Party(&'a str),
}

/// A refusal, with the words a caller gets back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {action:?} {resource}")]
pub struct Denied {
    /// Who asked.
    pub principal: String,
    /// What they tried.
    pub action: Action,
    /// On what, in words.
    pub resource: String,
}

/// The decision. Default deny: only the pairs listed grant anything.
pub fn authorize(
    principal: &Principal,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), Denied> {
    use Action as A;
    let allowed = match (principal, action, resource) {
        // Public attestation surface: anyone, on any instance (the evidence is what counts).
        (_, A::Attest | A::ReadInstancePublic | A::RequestKeyRelease, Resource::OwnedBy(_)) => true,
        (
            Principal::Operator,
            A::CreateTenant | A::ListTenants | A::ReadAudit,
            Resource::Service,
        ) => true,
        (
            Principal::TenantAdmin { .. },
            A::CreateInstance | A::ListInstances | A::ImportInstance | A::ManageKeys | A::ReadAudit,
            Resource::OwnTenant,
        ) => true,
        (
            Principal::TenantAdmin { tenant },
            A::ReadInstance
            | A::UpdateInstance
            | A::DeleteInstance
            | A::ExportInstance
            | A::ManageKeys
            | A::ReadAudit,
            Resource::OwnedBy(owner),
        ) => tenant == owner,
        (Principal::DataOwner { key }, A::ReadOwnData, Resource::Party(owner)) => key == owner,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied {
            principal: principal.to_string(),
            action,
            resource: match resource {
                Resource::Service => "the service".to_owned(),
                Resource::OwnTenant => "a tenant scope".to_owned(),
                Resource::OwnedBy(owner) => format!("a resource of tenant {owner}"),
                Resource::Party(_) => "another party's data sets".to_owned(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Action; 15] = [
        Action::CreateTenant,
        Action::ListTenants,
        Action::CreateInstance,
        Action::ListInstances,
        Action::ReadInstance,
        Action::UpdateInstance,
        Action::DeleteInstance,
        Action::ExportInstance,
        Action::ImportInstance,
        Action::Attest,
        Action::ReadInstancePublic,
        Action::ManageKeys,
        Action::RequestKeyRelease,
        Action::ReadAudit,
        Action::ReadOwnData,
    ];

    fn admin(tenant: &str) -> Principal {
        Principal::TenantAdmin { tenant: tenant.to_owned() }
    }

    #[test]
    fn a_tenant_admin_never_touches_another_tenants_resources_beyond_the_public_surface() {
        for action in ALL {
            let decision = authorize(&admin("a"), action, Resource::OwnedBy("b"));
            let public = matches!(
                action,
                Action::Attest | Action::ReadInstancePublic | Action::RequestKeyRelease
            );
            assert_eq!(decision.is_ok(), public, "{action:?}");
        }
    }

    #[test]
    fn a_tenant_admin_manages_its_own_resources() {
        for action in [
            Action::ReadInstance,
            Action::UpdateInstance,
            Action::DeleteInstance,
            Action::ExportInstance,
            Action::ManageKeys,
            Action::ReadAudit,
        ] {
            assert_eq!(
                authorize(&admin("a"), action, Resource::OwnedBy("a")),
                Ok(()),
                "{action:?}"
            );
        }
        for action in [Action::CreateInstance, Action::ListInstances, Action::ImportInstance] {
            assert_eq!(authorize(&admin("a"), action, Resource::OwnTenant), Ok(()));
        }
    }

    #[test]
    fn the_operator_manages_tenants_but_not_instances() {
        for action in [Action::CreateTenant, Action::ListTenants, Action::ReadAudit] {
            assert_eq!(authorize(&Principal::Operator, action, Resource::Service), Ok(()));
        }
        for action in [
            Action::ReadInstance,
            Action::UpdateInstance,
            Action::DeleteInstance,
            Action::ExportInstance,
            Action::ManageKeys,
        ] {
            assert!(authorize(&Principal::Operator, action, Resource::OwnedBy("a")).is_err());
        }
        for action in [Action::CreateInstance, Action::ImportInstance, Action::ManageKeys] {
            assert!(authorize(&Principal::Operator, action, Resource::OwnTenant).is_err());
        }
    }

    /// Asserts that `who` gets exactly the public attestation surface on every tenant scope.
    fn only_the_public_surface(who: &Principal) {
        for action in ALL {
            for resource in [Resource::Service, Resource::OwnTenant, Resource::OwnedBy("a")] {
                let public = matches!(
                    action,
                    Action::Attest | Action::ReadInstancePublic | Action::RequestKeyRelease
                ) && matches!(resource, Resource::OwnedBy(_));
                assert_eq!(
                    authorize(who, action, resource).is_ok(),
                    public,
                    "{who} {action:?} {resource:?}"
                );
            }
        }
    }

    #[test]
    fn anonymous_callers_get_only_the_public_surface() {
        only_the_public_surface(&Principal::Anonymous);
    }

    #[test]
    fn a_data_owner_reads_its_own_data_sets_and_nothing_beyond_the_public_surface() {
        let owner = Principal::DataOwner { key: "k1".to_owned() };
        assert_eq!(authorize(&owner, Action::ReadOwnData, Resource::Party("k1")), Ok(()));
        assert!(authorize(&owner, Action::ReadOwnData, Resource::Party("k2")).is_err());
        only_the_public_surface(&owner);
        // Nobody else reads a party's data sets: not the operator, not a tenant admin.
        for who in [Principal::Operator, admin("k1"), Principal::Anonymous] {
            for action in ALL {
                assert!(
                    authorize(&who, action, Resource::Party("k1")).is_err(),
                    "{who} {action:?}"
                );
            }
        }
    }

    #[test]
    fn tenants_cannot_act_on_the_service_scope() {
        for action in ALL {
            assert!(authorize(&admin("a"), action, Resource::Service).is_err(), "{action:?}");
        }
    }
}
