//! Fuzz target: the privacy ledger's rule on untrusted numbers. A charge statement (as JSON, the
//! way the attestation service receives it) and earlier charges (as the ledger stores them) must
//! give an account or a refusal, never a panic; an account never states a non-finite or negative
//! ε, and a budget is never exceeded by an account it accepted.
#![no_main]

use cloister_types::api::PrivacyChargeStatement;
use cloister_types::job::PrivacyCharge;
use libfuzzer_sys::fuzz_target;

type Earlier = Vec<(String, Option<Vec<f64>>)>;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<PrivacyChargeStatement>(data);
    let Ok((charge, earlier)) = serde_json::from_slice::<(PrivacyCharge, Earlier)>(data) else {
        return;
    };
    let Ok(account) = charge.account(&earlier) else { return };
    for stated in [account.job, account.total].into_iter().flatten() {
        assert!(stated.epsilon.is_finite() && stated.epsilon >= 0.0, "{stated:?}");
    }
    if let (Some(budget), Some(total)) = (charge.budget, account.total) {
        if total.delta == budget.delta {
            assert!(total.epsilon <= budget.epsilon, "{total:?} over {budget:?}");
        }
    }
    assert_eq!(account.jobs, earlier.len() as u64 + 1);
});
