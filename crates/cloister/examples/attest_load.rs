//! Load benchmark of the attestation service: attestations per second with `sim` evidence, and
//! p50/p99 latency of one attestation (challenge + evidence + attest round trips), against a
//! `cloister serve attestation` process on SQLite or PostgreSQL.
//!
//! ```sh
//! cargo build --release -p cloister --examples
//! target/release/examples/attest_load --database sqlite:///tmp/load.db --clients 32 --seconds 10
//! target/release/examples/attest_load --database postgres://me@127.0.0.1:54329/load ...
//! ```
//!
//! The service runs as a child process (the release `cloister` binary beside this example); the
//! clients run here, on the same machine, so both share its cores.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use cloister_attest::{SimAttester, SimPlatformKey};
use cloister_client::{AuthorityClient, ServiceClient};
use cloister_types::Hex;
use cloister_types::manage::{CreateInstance, PolicySpec, TrustAnchorSpec};

const MEASUREMENT: [u8; 48] = [0x11; 48];

struct Args {
    database: String,
    clients: usize,
    seconds: u64,
}

fn args() -> Result<Args> {
    let mut args = Args { database: String::new(), clients: 32, seconds: 10 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--database" => args.database = value,
            "--clients" => args.clients = value.parse()?,
            "--seconds" => args.seconds = value.parse()?,
            other => bail!("unknown flag {other} (use --database, --clients, --seconds)"),
        }
    }
    if args.database.is_empty() {
        bail!("give --database sqlite://PATH or postgres://…");
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let binary = exe.parent().and_then(|p| p.parent()).context("examples dir")?.join("cloister");
    let token_file = dir.path().join("operator-token");
    let mut child = Command::new(&binary)
        .args(["serve", "attestation", "--listen", "127.0.0.1:0", "--database", &args.database])
        .arg("--operator-token-file")
        .arg(&token_file)
        .env("CLOISTER_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("attestation service listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).context("the service did not start")?;
    let result = run(&args, &url, &std::fs::read_to_string(&token_file)?, dir.path()).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn run(args: &Args, url: &str, operator_token: &str, dir: &std::path::Path) -> Result<()> {
    let operator = ServiceClient::new(url, Some(operator_token.trim()))?;
    let tenant = operator.create_tenant(&format!("load-{}", std::process::id())).await?;
    let key = SimPlatformKey::load_or_create(&dir.join("sim.pem"))?;
    let admin = ServiceClient::new(url, Some(&tenant.token))?;
    let instance = admin
        .create_instance(&CreateInstance {
            name: "load".to_owned(),
            policy: PolicySpec::Builtin("dev-sim".to_owned()),
            reference_values: serde_json::json!({ "measurements": [Hex(MEASUREMENT.to_vec())] }),
            trust_anchors: TrustAnchorSpec {
                sim_platform_keys: vec![key.public_key().to_string()],
                ..TrustAnchorSpec::default()
            },
            settings: Default::default(),
        })
        .await?;
    let client = AuthorityClient::for_instance(url, &instance.id)?;
    let fingerprint = client.service_key_document().await?.signing_key_sha256.to_string();
    let attester = Arc::new(SimAttester::new(key, MEASUREMENT));
    let tls = {
        use rcgen::PublicKeyData as _;
        rcgen::KeyPair::generate()?.subject_public_key_info()
    };

    // Warm up, then measure.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, attester, stop) = (client.clone(), attester.clone(), stop.clone());
        let (tls, fingerprint) = (tls.clone(), fingerprint.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let begin = Instant::now();
                let ok = async {
                    let nonce = client.challenge().await.ok()?.nonce;
                    let request = cloister::testbed::sim_attest_request(
                        &attester,
                        nonce,
                        tls.clone(),
                        &fingerprint,
                    )
                    .ok()?;
                    client.attest(&request).await.ok()
                }
                .await
                .is_some();
                if ok {
                    latencies.push(begin.elapsed());
                } else {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let backend = args.database.split(':').next().unwrap_or("?");
    println!(
        "{backend}: {} attestations in {elapsed:.1} s = {:.0}/s with {} clients; p50 {:.2} ms, p99 {:.2} ms; {failures} failed",
        latencies.len(),
        latencies.len() as f64 / elapsed,
        args.clients,
        pct(0.50),
        pct(0.99),
    );
    if failures > 0 {
        bail!("{failures} attestations failed");
    }
    Ok(())
}
