//! `lic-load`: a load generator for a running portal. It makes N activation requests
//! (each from its own device key) for one license key, then posts them over C
//! keep-alive HTTP/1.1 connections to `/api/v1/activate`, and reports activations per
//! second and latency percentiles. Only for addresses on this machine or the operator's
//! own test hosts; every run is bounded by --requests.
//!
//! With `--write-to DIR` it writes the requests as files instead, for a bulk
//! `lic-portal apply` (portal/bench/apply.sh).
//!
//! With `--heartbeat` the key must be a floating license's (at least --connections seats):
//! each connection is one client that takes a lease (`POST /api/v1/leases`, not timed),
//! then renews it as fast as it can (`POST /api/v1/leases/renew`, each a new signed lease
//! request, made before the clock starts); renewals per second and latency are reported
//! (portal/bench/heartbeat.sh).
//!
//! See docs/performance.md ("Portal activations", "Heartbeats") for the procedure and
//! results.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use lic_core::format::{
    self, ActivationRequest, Bytes32, Credential, JournalHead, LeaseAction, LeaseRequest, Nonce,
};
use lic_core::keys::SecretKey;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

/// Post activation requests to a portal and report throughput and latency.
#[derive(Debug, Parser)]
#[command(name = "lic-load", version)]
struct Args {
    /// The portal's address (host:port).
    #[arg(long, default_value = "127.0.0.1:8477")]
    addr: SocketAddr,
    /// The license key to activate (its license needs at least --requests seats).
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "photo-pro")]
    product: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Activation requests in total.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Write the requests as files into this directory (`req-N.req`) instead of posting
    /// them: the input of a bulk `lic-portal apply` benchmark.
    #[arg(long, value_name = "DIR", conflicts_with = "heartbeat")]
    write_to: Option<std::path::PathBuf>,
    /// Lease renewals (heartbeats) instead of activations: each connection holds a lease
    /// on the floating license and renews it; --requests renewals in total.
    #[arg(long)]
    heartbeat: bool,
}

/// A client of the heartbeat mode: its device key, fingerprint and instance.
struct Leaser {
    key: SecretKey,
    fingerprint: format::Fingerprint,
    instance: Nonce,
}

impl Leaser {
    fn new(i: usize) -> Leaser {
        let mut instance = [0u8; 16];
        instance[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Leaser {
            key: SecretKey::generate(),
            fingerprint: [(
                "machine-id".to_string(),
                Bytes32(sha2_of(&format!("heartbeat device {i}"))),
            )]
            .into(),
            instance: Nonce(instance),
        }
    }

    fn request(
        &self,
        product: &str,
        key: &str,
        action: LeaseAction,
        n: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&n.to_le_bytes());
        nonce[8..].copy_from_slice(&self.instance.0[..8]);
        let request = LeaseRequest {
            product: product.into(),
            credential: Credential::LicenseKey(key.into()),
            fingerprint: self.fingerprint.clone(),
            action,
            instance: self.instance,
            feature: None,
            hours: None,
            journal: None,
            nonce: Nonce(nonce),
            created: chrono::Utc::now(),
            client: "lic-load".into(),
            variables: Default::default(),
        };
        Ok(format::sign(&request, &self.key)?.armored().into_bytes())
    }
}

fn make_request(product: &str, key: &str, i: usize) -> anyhow::Result<Vec<u8>> {
    let device = SecretKey::generate();
    let fp: format::Fingerprint = [(
        "machine-id".to_string(),
        Bytes32(sha2_of(&format!("load device {i}"))),
    )]
    .into();
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&(i as u64).to_le_bytes());
    let request = ActivationRequest {
        pool_seats: None,
        product: product.into(),
        credential: Credential::LicenseKey(key.into()),
        fingerprint: fp,
        nonce: Nonce(nonce),
        created: chrono::Utc::now(),
        client: "lic-load".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
    };
    Ok(format::sign(&request, &device)?.armored().into_bytes())
}

fn sha2_of(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// One keep-alive connection posting its share of the requests; returns latencies and
/// the number of non-200 answers.
async fn worker(
    addr: SocketAddr,
    path: &'static str,
    bodies: Vec<Vec<u8>>,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut failures = 0;
    let mut line = String::new();
    for body in bodies {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let start = Instant::now();
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await?;
        line.clear();
        read.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if read.read_line(&mut line).await? == 0 {
                bail!("the portal closed the connection");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut response = vec![0u8; length];
        read.read_exact(&mut response).await?;
        latencies.push(start.elapsed());
        if status != 200 {
            failures += 1;
            if failures == 1 {
                eprintln!(
                    "first failure: HTTP {status}: {}",
                    String::from_utf8_lossy(&response)
                );
            }
        }
    }
    Ok((latencies, failures))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.write_to {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for i in 0..args.requests {
            let path = dir.join(format!("req-{i}.req"));
            std::fs::write(&path, make_request(&args.product, &args.key, i)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!(
            "wrote {} activation requests to {}",
            args.requests,
            dir.display()
        );
        return Ok(());
    }
    if !args.addr.ip().is_loopback() {
        eprintln!(
            "note: {} is not a loopback address; load only your own test hosts",
            args.addr
        );
    }
    let mut shares: Vec<Vec<Vec<u8>>> = vec![Vec::new(); args.connections.max(1)];
    let n = shares.len();
    let (path, what) = if args.heartbeat {
        let leasers: Vec<Leaser> = (0..n).map(Leaser::new).collect();
        eprintln!("taking {n} leases…");
        let takes: Vec<_> = leasers
            .iter()
            .map(|l| l.request(&args.product, &args.key, LeaseAction::Take, 0))
            .collect::<anyhow::Result<_>>()?;
        let tasks: Vec<_> = takes
            .into_iter()
            .map(|t| tokio::spawn(worker(args.addr, "/api/v1/leases", vec![t])))
            .collect();
        for t in tasks {
            let (_, failed) = t.await??;
            if failed > 0 {
                bail!("a client could not take a lease (the license needs --connections seats)");
            }
        }
        eprintln!("making {} renewals…", args.requests);
        for i in 0..args.requests {
            shares[i % n].push(leasers[i % n].request(
                &args.product,
                &args.key,
                LeaseAction::Renew,
                i as u64 + 1,
            )?);
        }
        ("/api/v1/leases/renew", "renewals")
    } else {
        eprintln!("making {} activation requests…", args.requests);
        for i in 0..args.requests {
            shares[i % n].push(make_request(&args.product, &args.key, i)?);
        }
        ("/api/v1/activate", "activations")
    };
    eprintln!(
        "posting them over {} connections to {}…",
        shares.len(),
        args.addr
    );
    let start = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|s| tokio::spawn(worker(args.addr, path, s)))
        .collect();
    let mut latencies = Vec::with_capacity(args.requests);
    let mut failures = 0;
    for t in tasks {
        let (l, f) = t.await??;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let ok = latencies.len() - failures;
    println!("requests:       {}", latencies.len());
    println!("{:<15} {ok} ({failures} failed)", format!("{what}:"));
    println!("elapsed:        {:.2} s", elapsed.as_secs_f64());
    println!(
        "throughput:     {:.0} {what}/s",
        ok as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50:    {:.2} ms",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0
    );
    println!(
        "latency p99:    {:.2} ms",
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0
    );
    println!(
        "latency max:    {:.2} ms",
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
