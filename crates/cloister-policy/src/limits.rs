//! Bounds on evaluating tenant Rego: every engine this crate builds stops an evaluation that
//! runs longer than [`EVALUATION_TIME_LIMIT`] (an error, which callers treat as refusal), refuses
//! policy text beyond [`MAX_POLICY_BYTES`], and replaces the two builtins whose one call
//! allocates as much as its arguments ask, before any time check can run (`numbers.range` and
//! `numbers.range_step`, with versions that make at most [`MAX_RANGE_ELEMENTS`] elements;
//! `sprintf`, whose width and precision pad without bound, with one that refuses either past
//! [`MAX_FORMAT_WIDTH`] and `*` widths taken from the arguments).
//!
//! Policies come from tenant admins and run on the service's threads for every attestation
//! and key release; without a bound a policy whose cost grows with its input (or just a slow
//! one) would take the service with it. A policy that exceeds the limit on an empty input is
//! refused when it is uploaded; one that exceeds it only on real input fails closed then.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use regorus::utils::limits::{ExecutionTimerConfig, PolicyLengthConfig};
use regorus::{Engine, Value};

/// The longest one evaluation of a policy may run. The built-in policies take well under a
/// millisecond; the limit leaves two orders of magnitude for tenants' own rules.
pub const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(100);

/// The largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// How many units of interpreter work pass between two looks at the clock.
const CHECK_INTERVAL: u32 = 32;

/// The most elements `numbers.range` and `numbers.range_step` make in a Cloister policy.
pub const MAX_RANGE_ELEMENTS: u64 = 100_000;

/// The largest width or precision a `sprintf` verb may ask for in a Cloister policy (red team,
/// round 7: `sprintf("%01000000000d", [1])` allocated a gigabyte in one builtin call, which no
/// time check interrupts, and held the service's threads for seconds).
pub(crate) const MAX_FORMAT_WIDTH: u64 = 4096;

/// An engine with the time and length limits set.
pub(crate) fn engine() -> Engine {
    let mut engine = bare_engine();
    // `sprintf` within bounds is the builtin itself, run by an engine without this extension.
    let _ = engine.add_extension(
        "sprintf".to_owned(),
        2,
        Box::new(|args: Vec<Value>| bounded_sprintf(&args)),
    );
    engine
}

/// [`engine`] without the bounded `sprintf` (which delegates to this one).
fn bare_engine() -> Engine {
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
    // Extensions are looked up before builtins: these shadow the unbounded ones. Adding them to
    // a fresh engine cannot fail (the names are free).
    let _ = engine.add_extension(
        "numbers.range".to_owned(),
        2,
        Box::new(|args: Vec<Value>| bounded_range("numbers.range", &args, None)),
    );
    let _ = engine.add_extension(
        "numbers.range_step".to_owned(),
        3,
        Box::new(|args: Vec<Value>| {
            let step = args.get(2).map(Value::as_i64).transpose()?;
            bounded_range("numbers.range_step", &args, step)
        }),
    );
    engine
}

/// `sprintf(format, values)`, refusing a width or precision over [`MAX_FORMAT_WIDTH`] or taken
/// from the arguments (`*`) before anything is formatted; within bounds, the builtin's answer.
fn bounded_sprintf(args: &[Value]) -> anyhow::Result<Value> {
    let (Some(format), Some(values)) = (args.first(), args.get(1)) else {
        anyhow::bail!("sprintf takes a format string and an array of values");
    };
    check_format(format.as_string()?.as_ref())?;
    let mut inner = bare_engine();
    let mut input = Value::new_object();
    let fields = input.as_object_mut()?;
    fields.insert(Value::from("f"), format.clone());
    fields.insert(Value::from("v"), values.clone());
    inner.set_input(input);
    let results = inner.eval_query("sprintf(input.f, input.v)".to_owned(), false)?;
    let value = results
        .result
        .first()
        .and_then(|result| result.expressions.first())
        .map(|expression| expression.value.clone())
        .ok_or_else(|| anyhow::anyhow!("sprintf gave no value"))?;
    Ok(value)
}

/// Refuses a format whose verbs ask for a width or precision over [`MAX_FORMAT_WIDTH`], or for
/// one from the arguments (`*`).
fn check_format(format: &str) -> anyhow::Result<()> {
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            continue;
        }
        while chars.peek().is_some_and(|c| "+-# 0".contains(*c)) {
            chars.next();
        }
        for part in ["width", "precision"] {
            if part == "precision" {
                if chars.peek() != Some(&'.') {
                    break;
                }
                chars.next();
            }
            if chars.peek() == Some(&'*') {
                anyhow::bail!(
                    "sprintf: a {part} from the arguments (*) is not allowed in a Cloister policy"
                );
            }
            let mut number: u64 = 0;
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                chars.next();
                number = number.saturating_mul(10).saturating_add(u64::from(digit));
            }
            if number > MAX_FORMAT_WIDTH {
                anyhow::bail!(
                    "sprintf: a {part} of {number}; a Cloister policy may ask for at most \
                     {MAX_FORMAT_WIDTH}"
                );
            }
        }
    }
    Ok(())
}

/// `numbers.range(a, b)` (every integer from `a` to `b`, both included, either direction) or,
/// with `step`, `numbers.range_step(a, b, step)` (from `a` towards `b` by `step` > 0), refusing
/// more than [`MAX_RANGE_ELEMENTS`] elements before allocating any.
fn bounded_range(name: &str, args: &[Value], step: Option<i64>) -> anyhow::Result<Value> {
    let (Some(from), Some(to)) = (args.first(), args.get(1)) else {
        anyhow::bail!("{name} takes two integers");
    };
    let (from, to) = (from.as_i64()?, to.as_i64()?);
    let step = match step {
        Some(step) if step > 0 => step.unsigned_abs(),
        Some(_) => anyhow::bail!("{name}: step must be a positive integer"),
        None => 1,
    };
    let span = from.abs_diff(to);
    let elements = span / step + 1;
    if elements > MAX_RANGE_ELEMENTS {
        anyhow::bail!(
            "{name} would make {elements} elements; a Cloister policy may make at most \
             {MAX_RANGE_ELEMENTS}"
        );
    }
    let up = to >= from;
    let values = (0..elements)
        .map(|k| {
            let offset = i128::from(k) * i128::from(step);
            let value = if up { i128::from(from) + offset } else { i128::from(from) - offset };
            Value::from(i64::try_from(value).unwrap_or(to))
        })
        .collect::<Vec<_>>();
    Ok(Value::from(values))
}

#[cfg(test)]
mod tests {
    use regorus::Value;

    use super::*;

    fn eval(rego: &str, rule: &str) -> Result<Value, String> {
        let mut engine = engine();
        engine.add_policy("p.rego".to_owned(), rego.to_owned()).map_err(|e| e.to_string())?;
        engine.set_input(Value::new_object());
        engine.eval_rule(rule.to_owned()).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn ranges_are_bounded_before_anything_is_allocated() {
        let started = std::time::Instant::now();
        let err = eval("package r\nn := count(numbers.range(1, 2000000000))\n", "data.r.n")
            .expect_err("refused");
        assert!(err.contains("would make 2000000000 elements"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        let err = eval("package r\nn := numbers.range_step(0, 9000000000, 3)\n", "data.r.n")
            .expect_err("refused");
        assert!(err.contains("3000000001 elements"), "{err}");
        // Within the bound they behave as OPA's builtins do.
        let small = eval("package r\nn := numbers.range(3, 1)\n", "data.r.n").expect("small");
        assert_eq!(
            small,
            Value::from(vec![Value::from(3i64), Value::from(2i64), Value::from(1i64)])
        );
        let stepped =
            eval("package r\nn := numbers.range_step(10, 1, 4)\n", "data.r.n").expect("stepped");
        assert_eq!(
            stepped,
            Value::from(vec![Value::from(10i64), Value::from(6i64), Value::from(2i64)])
        );
        assert!(eval("package r\nn := numbers.range_step(1, 5, 0)\n", "data.r.n").is_err());
    }

    #[test]
    fn sprintf_widths_are_bounded_before_anything_is_formatted() {
        let started = std::time::Instant::now();
        for (rego, expected) in [
            (r#"s := sprintf("%01000000000d", [1])"#, "a width of 1000000000"),
            (r#"s := sprintf("%.999999999f", [1.5])"#, "a precision of 999999999"),
            (r#"s := sprintf("%-5000s|", ["x"])"#, "a width of 5000"),
            (r#"s := sprintf("%*d", [100000000, 1])"#, "(*) is not allowed"),
            (r#"s := sprintf(concat("", ["%0", "99999", "d"]), [1])"#, "a width of 99999"),
        ] {
            let err = eval(
                &format!(
                    "package r
{rego}
"
                ),
                "data.r.s",
            )
            .expect_err(rego);
            assert!(err.contains(expected), "{rego}: {err}");
        }
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        // Within the bound it is the builtin.
        for (rego, expected) in [
            (
                r#"s := sprintf("%05d|%s|%.2f|%%|%v", [42, "ab", 3.14159, true])"#,
                "00042|ab|3.14|%|true",
            ),
            (r#"s := sprintf("%d items", [7])"#, "7 items"),
        ] {
            let got = eval(
                &format!(
                    "package r
{rego}
"
                ),
                "data.r.s",
            )
            .expect(rego);
            assert_eq!(got, Value::from(expected), "{rego}");
        }
    }

    #[test]
    fn an_evaluation_past_the_limit_stops_with_an_error() {
        let mut engine = engine();
        engine
            .add_policy(
                "slow.rego".to_owned(),
                "package slow\nn := count([x | some x in numbers.range(1, 100000); \
                 some y in numbers.range(1, 100000); x == y + 1000000])\n"
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
