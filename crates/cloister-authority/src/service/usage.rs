//! Online inference quotas and rate limits: attested enclaves reserve tokens of a requester's
//! quota, and take requests from its per-minute allowance, here, where the compute provider
//! cannot reset the count by restarting its worker or running more of them.

use super::*;

/// The longest model owner, model or requester text a reservation may name.
const MAX_METER_FIELD: usize = 512;

impl Service {
    /// Reserves tokens of a requester's quota for an online enclave attested by instance `id`:
    /// the statement ([`UsageReservation`]) must be signed by the receipt key bound in the
    /// enclave's EAR token, which must verify with the instance's keys. Grants what was asked,
    /// or what is left of the quota, never more in total than the quota on this meter; the
    /// answer is signed ([`Answer::UsageReserved`]) and bound to the request. Counts are kept
    /// per instance: an enclave of another tenant's instance cannot spend them.
    pub async fn reserve_usage(
        &self,
        id: &str,
        request: &RecordJob,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<SignedAnswer> {
        let (_, _, statement, expires_at) = self
            .enclave_statement::<UsageReservation>(id, request, "usage reservation", now)
            .await?;
        let meter = &statement.meter;
        check_meter(meter)?;
        check_reservation_id(&statement.id)?;
        let as_i64 = |what: &str, n: u64| {
            i64::try_from(n).map_err(|_| {
                ServiceError::BadRequest(format!("the reservation's {what} is too large"))
            })
        };
        let tokens = as_i64("tokens", statement.tokens)?;
        let quota = as_i64("quota", statement.quota)?;
        let (granted, total) = self
            .store
            .reserve_usage(
                id,
                &meter.model_owner,
                &meter.model,
                &meter.requester,
                tokens,
                quota,
                (&statement.id, clamp_expiry(expires_at)),
                now,
            )
            .await?;
        let answer = Answer::UsageReserved {
            meter: statement.meter,
            granted: granted.unsigned_abs(),
            reserved_total: total.unsigned_abs(),
        };
        let checkpoint = self.checkpoint_ref().await?;
        Ok(SignedAnswer { answer: self.sign_answer(id, request_sha256, checkpoint, answer, now)? })
    }

    /// Takes requests from a requester's per-minute allowance for an online enclave attested by
    /// instance `id`: the statement ([`RequestReservation`]) must be signed by the receipt key
    /// bound in the enclave's EAR token, which must verify with the instance's keys. The
    /// allowance is a token bucket per meter (capacity and rate `per_minute`) shared by every
    /// enclave of the instance; grants what was asked or what the bucket holds (possibly 0). The
    /// answer is signed ([`Answer::RequestsReserved`]) and bound to the request.
    pub async fn reserve_requests(
        &self,
        id: &str,
        request: &RecordJob,
        request_sha256: &[u8; 32],
        now: i64,
    ) -> Result<SignedAnswer> {
        let (_, _, statement, expires_at) = self
            .enclave_statement::<RequestReservation>(id, request, "request reservation", now)
            .await?;
        check_meter(&statement.meter)?;
        check_reservation_id(&statement.id)?;
        if statement.per_minute == 0 || !(1..=statement.per_minute).contains(&statement.requests) {
            return Err(ServiceError::BadRequest(format!(
                "the reservation asks for {} requests of {} a minute: it must ask for 1 to \
                 per_minute, and per_minute must be at least 1",
                statement.requests, statement.per_minute
            )));
        }
        let meter = &statement.meter;
        let granted = self
            .store
            .reserve_requests(
                id,
                &meter.model_owner,
                &meter.model,
                &meter.requester,
                statement.requests,
                statement.per_minute,
                (&statement.id, clamp_expiry(expires_at)),
                now,
            )
            .await?;
        let answer = Answer::RequestsReserved { meter: statement.meter, granted };
        let checkpoint = self.checkpoint_ref().await?;
        Ok(SignedAnswer { answer: self.sign_answer(id, request_sha256, checkpoint, answer, now)? })
    }
}

/// A reservation id is 32 to 128 hexadecimal digits (at least 16 random bytes).
fn check_reservation_id(id: &str) -> Result<()> {
    if (32..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    Err(ServiceError::BadRequest(
        "the reservation's id must be 32 to 128 hexadecimal digits (16 or more random bytes)"
            .into(),
    ))
}

/// Until when a reservation id is kept: the statement's expiry (after which it no longer
/// verifies), plus the clock skew verification allows.
fn clamp_expiry(expires_at: u64) -> i64 {
    i64::try_from(expires_at).unwrap_or(i64::MAX).saturating_add(RESERVATION_ID_SKEW)
}

/// Seconds kept past a statement's expiry: more than the 60 s of clock skew `cloister_sign`
/// tolerates when it verifies one.
const RESERVATION_ID_SKEW: i64 = 120;

/// A meter's fields are 1 to [`MAX_METER_FIELD`] bytes each.
fn check_meter(meter: &UsageMeter) -> Result<()> {
    for (what, value) in [
        ("model_owner", &meter.model_owner),
        ("model", &meter.model),
        ("requester", &meter.requester),
    ] {
        if value.is_empty() || value.len() > MAX_METER_FIELD {
            return Err(ServiceError::BadRequest(format!(
                "the reservation's {what} must be 1 to {MAX_METER_FIELD} bytes"
            )));
        }
    }
    Ok(())
}
