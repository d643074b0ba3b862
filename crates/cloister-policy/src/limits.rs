//! Bounds on evaluating tenant Rego: every engine this crate builds stops an evaluation that
//! runs longer than [`EVALUATION_TIME_LIMIT`] (an error, which callers treat as refusal), and
//! refuses policy text beyond [`MAX_POLICY_BYTES`].
//!
//! Policies come from tenant admins and run on the service's threads for every attestation
//! and key release; without a bound a policy whose cost grows with its input (or just a slow
//! one) would take the service with it. A policy that exceeds the limit on an empty input is
//! refused when it is uploaded; one that exceeds it only on real input fails closed then.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use regorus::Engine;
use regorus::utils::limits::{ExecutionTimerConfig, PolicyLengthConfig};

/// The longest one evaluation of a policy may run. The built-in policies take well under a
/// millisecond; the limit leaves two orders of magnitude for tenants' own rules.
pub const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(100);

/// The largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// How many units of interpreter work pass between two looks at the clock.
const CHECK_INTERVAL: u32 = 32;

/// An engine with the time and length limits set.
pub(crate) fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVALUATION_TIME_LIMIT,
        check_interval: NonZeroU32::new(CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    });
    engine.set_policy_length_config(PolicyLengthConfig {
        max_col: NonZeroU32::new(4096).unwrap_or(NonZeroU32::MIN),
        max_file_bytes: NonZeroUsize::new(MAX_POLICY_BYTES).unwrap_or(NonZeroUsize::MIN),
        max_lines: NonZeroUsize::new(20_000).unwrap_or(NonZeroUsize::MIN),
    });
    engine
}

#[cfg(test)]
mod tests {
    use regorus::Value;

    use super::*;

    #[test]
    fn an_evaluation_past_the_limit_stops_with_an_error() {
        let mut engine = engine();
        engine
            .add_policy(
                "slow.rego".to_owned(),
                "package slow\nn := count([x | some x in numbers.range(1, 100000000)])\n"
                    .to_owned(),
            )
            .expect("parses");
        engine.set_input(Value::new_object());
        let started = std::time::Instant::now();
        let err = engine.eval_rule("data.slow.n".to_owned()).expect_err("stopped");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert!(format!("{err:#}").to_lowercase().contains("time"), "{err:#}");
    }
}
