//! Fuzz target: the privacy ledger's rule on untrusted numbers. Arbitrary bytes are read as a
//! charge statement (JSON, the way the attestation service receives one), and also drive a charge
//! and earlier charges directly (curves of the right length or not, any floats, any budget), so
//! that the rule itself is reached on every input. It must give an account or a refusal, never a
//! panic; an account never states a non-finite or negative ε, and never a total over the budget
//! it was checked against.
#![no_main]

use cloister_types::api::PrivacyChargeStatement;
use cloister_types::job::{PrivacyBudget, PrivacyCharge};
use cloister_types::privacy::ORDERS;
use cloister_types::{Hex, InputRef};
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fn curve(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<Vec<f64>>> {
    if !bool::arbitrary(u)? {
        return Ok(None);
    }
    let len = if u8::arbitrary(u)? < 240 { ORDERS.count() } else { usize::from(u8::arbitrary(u)?) };
    let scale = f64::arbitrary(u)?;
    // A realistic shape (growing with the order) scaled by an arbitrary float, or raw floats.
    if bool::arbitrary(u)? {
        return Ok(Some((0..len).map(|i| scale * (i as f64 + 2.0) / 100.0).collect()));
    }
    (0..len).map(|_| f64::arbitrary(u)).collect::<arbitrary::Result<Vec<_>>>().map(Some)
}

fn case(
    u: &mut Unstructured<'_>,
) -> arbitrary::Result<(PrivacyCharge, Vec<(String, Option<Vec<f64>>)>)> {
    let budget = if bool::arbitrary(u)? {
        Some(PrivacyBudget { epsilon: f64::arbitrary(u)?, delta: f64::arbitrary(u)? })
    } else {
        None
    };
    let charge = PrivacyCharge {
        input: InputRef { object_id: "rows".into(), sha256: Hex(vec![0; 32]), owner: "o".into() },
        rdp: curve(u)?,
        budget,
        delta: Option::<f64>::arbitrary(u)?,
        grant: String::new(),
    };
    let mut earlier = Vec::new();
    for n in 0..u8::arbitrary(u)? % 8 {
        earlier.push((format!("job-{n}"), curve(u)?));
    }
    Ok((charge, earlier))
}

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<PrivacyChargeStatement>(data);
    let Ok((charge, earlier)) = case(&mut Unstructured::new(data)) else { return };
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
