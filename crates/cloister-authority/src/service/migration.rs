//! Moving an instance between services: bundles sealed to the target service's key.

use super::*;

impl Service {
    /// Seals the whole instance to the target service's key, for `target_tenant` there only.
    /// A target whose document carries an attestation must pass this instance's own
    /// appraisal; one without must be allowed explicitly.
    pub async fn export_instance(
        &self,
        who: &Principal,
        id: &str,
        target: &ServiceKeyDocument,
        target_tenant: &str,
        allow_unattested: bool,
        now: i64,
    ) -> Result<Vec<u8>> {
        let tenant = self.owned_instance(who, Action::ExportInstance, id, now).await?;
        let instance = self.instance(id).await?.instance.clone();
        // An instance created with `attested_exports_only` never consents to an unattested
        // target, whoever asks, and appraises targets only with what its admin cannot change
        // later: the production policy, the vendors' own roots (no sim platform keys, no roots
        // or test roots the instance lists) and the service measurements fixed at creation
        // (never the instance's reference values, which its admin updates).
        let vendor_only = cloister_verify::TrustAnchors::new();
        let production = AppraisalPolicy::production_default();
        let settings = instance.settings();
        let check = if settings.attested_exports_only {
            if target.attestation.is_none() {
                Err(BundleError::UnattestedTargetForbidden)
            } else {
                migrate::check_target(
                    target,
                    &vendor_only,
                    &production,
                    &export_reference_values(settings),
                    false,
                    now,
                )
                .and_then(|check| migrate::check_export_measurement(check, settings))
            }
        } else {
            migrate::check_target(
                target,
                instance.anchors(),
                instance.policy(),
                &instance.reference_values,
                allow_unattested,
                now,
            )
        };
        let check = match check {
            Ok(check) => check,
            Err(error) => {
                let detail =
                    serde_json::json!({ "target": target.key_id, "reason": error.to_string() });
                self.record(
                    who,
                    AuditKind::InstanceExported,
                    Some(&tenant),
                    id,
                    Outcome::Refused,
                    detail,
                    now,
                )
                .await?;
                return Err(error.into());
            }
        };
        let target_key = RecipientPublicKey::from_text(&target.public_key)
            .map_err(|e| ServiceError::BadRequest(format!("the target's public key: {e}")))?;
        let bundle = self.bundle(id, &target_key, target_tenant, now).await?;
        let sealed = migrate::seal_bundle(&bundle, &target_key, &self.signing_key)?;
        self.record(
            who,
            AuditKind::InstanceExported,
            Some(&tenant),
            id,
            Outcome::Success,
            serde_json::json!({ "target": target.key_id, "target_tenant": target_tenant,
                                "target_check": format!("{check:?}"),
                                "bundle_sha256": hex::encode(Sha256::digest(&sealed)) }),
            now,
        )
        .await?;
        Ok(sealed)
    }

    /// Opens a bundle sealed to this service, signed by a source service this one trusts
    /// ([`Service::with_trusted_bundle_sources`]), checks its contents as a create would, and
    /// restores the instance into the caller's tenant — the one the source named — with the same
    /// id, policy history and keys: what it issued before still verifies. An id that exists or ever
    /// existed here is refused (ids are never reused).
    pub async fn import_instance(
        &self,
        who: &Principal,
        sealed: &[u8],
        now: i64,
    ) -> Result<InstanceView> {
        let tenant = self.tenant_of(who, Action::ImportInstance, now).await?;
        let opened =
            match migrate::open_bundle(sealed, &self.service_key, &self.trusted_bundle_sources)
                .and_then(|opened| check_bundle_contents(&opened.bundle).map(|()| opened))
                .and_then(|opened| {
                    if opened.bundle.target_tenant == tenant {
                        Ok(opened)
                    } else {
                        Err(BundleError::ForAnotherTenant { importer: tenant.clone() })
                    }
                }) {
                Ok(opened) => opened,
                Err(error) => {
                    let detail = serde_json::json!({ "reason": error.to_string(),
                    "bundle_sha256": hex::encode(Sha256::digest(sealed)) });
                    self.record(
                        who,
                        AuditKind::InstanceImported,
                        Some(&tenant),
                        "-",
                        Outcome::Refused,
                        detail,
                        now,
                    )
                    .await?;
                    return Err(error.into());
                }
            };
        let bundle = &opened.bundle;
        let (instance, versions, keys) = self.rows_from_bundle(bundle, &tenant, now)?;
        self.store.import_instance(&instance, &versions, &keys).await?;
        self.forget(&instance.id);
        self.record(
            who,
            AuditKind::InstanceImported,
            Some(&tenant),
            &instance.id,
            Outcome::Success,
            serde_json::json!({ "source": bundle.source_service,
                                "source_signing_key_sha256": opened.signer.fingerprint_hex(),
                                "policy_versions": versions.len(), "token_keys": keys.len() }),
            now,
        )
        .await?;
        // The copy signs with a token key of its own from now on; the imported keys only verify
        // what the source issued before, for as long as those tokens live. Signing on with the
        // source's key would let the copy — whose policy and trust anchors the importing tenant
        // may change — issue tokens the source's key broker accepts as the source's (red team,
        // round 7).
        self.rotate_keys(who, &instance.id, now).await
    }

    async fn bundle(
        &self,
        id: &str,
        target: &RecipientPublicKey,
        target_tenant: &str,
        now: i64,
    ) -> Result<migrate::InstanceBundle> {
        let row = self.instance_row(id).await?;
        let policies = self
            .store
            .policy_versions(id)
            .await?
            .into_iter()
            .map(|p| migrate::BundledPolicy {
                version: p.version,
                rego: p.rego,
                builtin: p.builtin,
                created_at: p.created_at,
            })
            .collect();
        let mut token_keys = Vec::new();
        for key in self.store.instance_keys(id).await? {
            let secret = unseal_secret(&self.service_key, &key.secret_sealed)?;
            token_keys.push(migrate::BundledTokenKey {
                kid: key.kid,
                public_jwk: from_json(&key.public_jwk, "token key")?,
                secret: SecretText::new(Zeroizing::new(
                    String::from_utf8_lossy(&secret).into_owned(),
                )),
                created_at: key.created_at,
                retired_at: key.retired_at,
                keep_until: key.keep_until,
            });
        }
        let ca_key = unseal_secret(&self.service_key, &row.ca_key_sealed)?;
        Ok(migrate::InstanceBundle {
            format: migrate::BUNDLE_FORMAT,
            exported_at: now,
            source_service: Hex(self.service_key.public_key().key_id().0.to_vec()),
            target_service: Hex(target.key_id().0.to_vec()),
            target_tenant: target_tenant.to_owned(),
            instance: migrate::BundledInstance {
                id: row.id,
                name: row.name,
                settings: from_json(&row.settings, "settings")?,
                reference_values: from_json(&row.reference_values, "reference values")?,
                trust_anchors: from_json(&row.trust_anchors, "trust anchors")?,
                policy_version: row.policy_version,
            },
            policies,
            token_keys,
            ca: migrate::BundledCa {
                certificate_pem: row.ca_certificate_pem,
                key_pem: SecretText::new(Zeroizing::new(
                    String::from_utf8_lossy(&ca_key).into_owned(),
                )),
            },
        })
    }

    #[allow(clippy::type_complexity)]
    fn rows_from_bundle(
        &self,
        bundle: &migrate::InstanceBundle,
        tenant: &str,
        now: i64,
    ) -> Result<(InstanceRow, Vec<PolicyVersionRow>, Vec<InstanceKeyRow>)> {
        let public = self.service_key.public_key();
        let id = &bundle.instance.id;
        let instance = InstanceRow {
            id: id.clone(),
            tenant_id: tenant.to_owned(),
            name: bundle.instance.name.clone(),
            revision: 1,
            policy_version: bundle.instance.policy_version,
            reference_values: bundle.instance.reference_values.to_string(),
            trust_anchors: bundle.instance.trust_anchors.to_string(),
            settings: bundle.instance.settings.to_string(),
            ca_certificate_pem: bundle.ca.certificate_pem.clone(),
            ca_key_sealed: seal_secret(&public, bundle.ca.key_pem.expose().as_bytes())?,
            created_at: now,
        };
        let versions = bundle
            .policies
            .iter()
            .map(|p| PolicyVersionRow {
                instance_id: id.clone(),
                version: p.version,
                rego: p.rego.clone(),
                builtin: p.builtin.clone(),
                created_at: p.created_at,
            })
            .collect();
        let mut keys = Vec::new();
        for key in &bundle.token_keys {
            keys.push(InstanceKeyRow {
                instance_id: id.clone(),
                kid: key.kid.clone(),
                public_jwk: key.public_jwk.to_string(),
                secret_sealed: seal_secret(&public, key.secret.expose().as_bytes())?,
                created_at: key.created_at,
                retired_at: key.retired_at,
                keep_until: key.keep_until,
            });
        }
        Ok((instance, versions, keys))
    }
}

/// Checks what a bundle brings as a create checks what a tenant admin sends: the instance's
/// name, every policy version's Rego, the trust anchors, the reference values and the settings.
/// A bundle's signature says which service made it, not that its contents are sound.
fn check_bundle_contents(bundle: &migrate::InstanceBundle) -> Result<(), BundleError> {
    let invalid = |what: String| BundleError::Incomplete(what);
    let instance = &bundle.instance;
    check_name("instance", &instance.name).map_err(|e| invalid(e.to_string()))?;
    for policy in &bundle.policies {
        compile_policy(&instance.id, policy.version, &policy.rego)
            .map_err(|e| invalid(format!("policy version {}: {e}", policy.version)))?;
    }
    let anchors: TrustAnchorSpec = serde_json::from_value(instance.trust_anchors.clone())
        .map_err(|e| invalid(format!("the trust anchors: {e}")))?;
    config::trust_anchors(&anchors).map_err(|e| invalid(format!("the trust anchors: {e}")))?;
    check_reference_values(&instance.reference_values)
        .map_err(|e| invalid(format!("the reference values: {e}")))?;
    let settings = serde_json::from_value::<InstanceSettings>(instance.settings.clone())
        .map_err(|e| invalid(format!("the settings: {e}")))?;
    check_settings(&settings).map_err(|e| invalid(e.to_string()))?;
    Ok(())
}

/// The reference values an `attested_exports_only` instance appraises export targets with:
/// the service measurements fixed at its creation, nothing its admin can update.
fn export_reference_values(settings: &InstanceSettings) -> serde_json::Value {
    serde_json::json!({ "measurements": settings.export_measurements })
}
