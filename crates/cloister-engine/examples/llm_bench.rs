//! The GGUF engine's prompt processing and decode speed, measured the way llama.cpp's
//! `llama-bench` measures them (`-p 128 -n 128 -t THREADS`), through the engine's public API:
//! `scripts/bench-llm.sh` runs both side by side on the same file and threads.
//!
//! ```sh
//! cargo build --release -p cloister-engine --example llm_bench
//! target/release/examples/llm_bench MODEL.gguf [--threads 2] [--tokens 128] [--runs 5]
//! ```
//!
//! - **pp**: a plain prompt of `--tokens` tokens, generation of one token; tokens/s = prompt
//!   tokens / time to the first token. This includes what a request costs before its prompt is
//!   read (a llama.cpp context sized to the request); `llama-bench` makes its context once.
//! - **tg**: greedy generation of `--tokens` tokens from a one-token prompt (the end token is
//!   not a stop: a story prompt that runs past it); tokens/s = (tokens − 1) / time from the first
//!   generated token to the last, so the prompt is not counted. This includes the engine's own
//!   per-token work (sampling, detokenizing, stop strings), which `llama-bench` does not do.
//!
//! Prints one line per measurement, the median of `--runs`, and the process's peak RSS.

use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::time::Instant;

use cloister_engine::{GenerationParams, LlmModel};
use zeroize::Zeroizing;

struct Args {
    model: String,
    threads: NonZeroUsize,
    tokens: usize,
    runs: usize,
}

fn args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let model =
        it.next().ok_or("usage: llm_bench MODEL.gguf [--threads N] [--tokens N] [--runs N]")?;
    let mut args =
        Args { model, threads: NonZeroUsize::MIN.saturating_add(1), tokens: 128, runs: 5 };
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number: usize = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--threads" => args.threads = NonZeroUsize::new(number).ok_or("--threads 0")?,
            "--tokens" => args.tokens = number,
            "--runs" => args.runs = number,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.tokens < 2 || args.runs == 0 {
        return Err("--tokens must be at least 2 and --runs at least 1".into());
    }
    Ok(args)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Peak resident set size of this process, from `/proc/self/status` (`VmHWM`), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), String> {
    let args = args()?;
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model))?;
    let started = Instant::now();
    // As the worker loads a decrypted model: the engine takes the only copy and frees it once
    // it is in the sealed in-memory file llama.cpp maps.
    let model = LlmModel::from_gguf_owned(Zeroizing::new(bytes), args.threads)
        .map_err(|e| e.to_string())?;
    println!("load: {:.2} s, {} threads", started.elapsed().as_secs_f64(), args.threads);

    // What the model says, so that a broken file or engine does not go unnoticed.
    let answer = model
        .generate(
            "The capital of France is",
            &GenerationParams {
                max_tokens: 8,
                temperature: 0.0,
                top_p: None,
                seed: 0,
                stop: Vec::new(),
            },
            &mut |_| ControlFlow::Continue(()),
        )
        .map_err(|e| e.to_string())?;
    println!("greedy: \"The capital of France is\" → {:?}", answer.text.as_str());

    // "hello" then " hello" repeated: one token each in a byte-level BPE vocabulary.
    let pp_prompt = format!("hello{}", " hello".repeat(args.tokens - 1));
    let one_token = GenerationParams {
        max_tokens: 1,
        temperature: 0.0,
        top_p: None,
        seed: 0,
        stop: Vec::new(),
    };
    let tg_prompt = "Once upon a time, in a land far away, there lived a dragon who";
    let tg = GenerationParams { max_tokens: args.tokens, ..one_token.clone() };

    let mut pp_rates = Vec::new();
    let mut tg_rates = Vec::new();
    for run in 0..=args.runs {
        let started = Instant::now();
        let generation = model
            .generate(&pp_prompt, &one_token, &mut |_| ControlFlow::Continue(()))
            .map_err(|e| e.to_string())?;
        let pp_tokens = generation.prompt_tokens;
        let pp = pp_tokens as f64 / started.elapsed().as_secs_f64();

        let mut first = None;
        let generation = model
            .generate(tg_prompt, &tg, &mut |_| {
                first.get_or_insert_with(Instant::now);
                ControlFlow::Continue(())
            })
            .map_err(|e| e.to_string())?;
        let decode_time = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
        let tg_rate = (generation.completion_tokens - 1) as f64 / decode_time;
        // Run 0 warms caches and is not counted, as llama-bench's warm-up run.
        if run > 0 {
            pp_rates.push(pp);
            tg_rates.push(tg_rate);
        }
        println!(
            "run {run}: pp{pp_tokens} {pp:.1} tokens/s; tg{} {tg_rate:.1} tokens/s",
            generation.completion_tokens
        );
        if generation.completion_tokens < args.tokens {
            return Err(format!(
                "generation stopped after {} tokens; the tg prompt must run to {}",
                generation.completion_tokens, args.tokens
            ));
        }
    }
    println!(
        "cloister-engine pp{} {:.1} tokens/s, tg{} {:.1} tokens/s (median of {}), peak RSS {:.0} MiB",
        args.tokens,
        median(pp_rates),
        args.tokens,
        median(tg_rates),
        args.runs,
        peak_rss_mib()
    );
    Ok(())
}
