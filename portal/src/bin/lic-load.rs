//! `lic-load`: a load generator for a running portal. It makes N activation requests
//! (each from its own device key) for one license key, then posts them over C
//! keep-alive HTTP/1.1 connections to `/api/v1/activate`, and reports activations per
//! second and latency percentiles. Only for addresses on this machine or the operator's
//! own test hosts; every run is bounded by --requests.
//!
//! With `--write-to DIR` it writes the requests as files instead, for a bulk
//! `lic-portal apply` (portal/bench/apply.sh); `--requests-from DIR` posts such files.
//!
//! It is also the instrument of the crash tests (portal/tests/crash_serve.rs): it counts
//! each request as acknowledged (200), refused (4xx) or failed (no answer, or 5xx), keeps
//! going when the portal goes away (reconnecting for up to `--patience` seconds), and
//! `--record FILE` writes what became of each request, with the activation ids the
//! portal acknowledged, for a check against the database.
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
    /// Post the requests written earlier with --write-to (`req-N.req` in DIR, N from 0
    /// to --requests − 1) instead of making new ones: the same requests can be posted
    /// again, e.g. to retry those not acknowledged after a crash.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["heartbeat", "write_to"])]
    requests_from: Option<std::path::PathBuf>,
    /// Lease renewals (heartbeats) instead of activations: each connection holds a lease
    /// on the floating license and renews it; --requests renewals in total.
    #[arg(long)]
    heartbeat: bool,
    /// Write what became of each request to FILE, one JSON object a line:
    /// `{"i": N, "outcome": "acknowledged"|"refused"|"failed", "status": 200,
    /// "activation": "act_…", "error": "code"}` — the acknowledged ids, to compare
    /// with the database after a crash test.
    #[arg(long, value_name = "FILE")]
    record: Option<std::path::PathBuf>,
    /// How long a connection keeps trying to reach a portal that went away before the
    /// rest of its requests fail without waiting.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    patience: u64,
    /// The summary as text or as one JSON document (`{"format": 1, "requests", ...}`).
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
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

/// What became of one request.
#[derive(Debug, Clone, serde::Serialize)]
struct Record {
    /// The request's number (0-based): `req-N.req` with --write-to.
    i: usize,
    /// `acknowledged` (200), `refused` (4xx: the portal said no), or `failed` (no
    /// answer, or 5xx: whether it was applied is unknown).
    outcome: &'static str,
    /// The HTTP status, if there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// The activation an acknowledged activation request holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    activation: Option<String>,
    /// The error code of a refusal or a 5xx, or why there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Record {
    fn acknowledged(&self) -> bool {
        self.outcome == "acknowledged"
    }
}

/// A keep-alive connection.
struct Conn {
    read: BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    Ok(Conn {
        read: BufReader::new(read),
        write,
    })
}

/// Post one body and read the answer: (status, body).
async fn exchange(
    conn: &mut Conn,
    addr: SocketAddr,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.write.write_all(head.as_bytes()).await?;
    conn.write.write_all(body).await?;
    let mut line = String::new();
    if conn.read.read_line(&mut line).await? == 0 {
        bail!("the portal closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if conn.read.read_line(&mut line).await? == 0 {
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
    conn.read.read_exact(&mut response).await?;
    Ok((status, response))
}

/// One keep-alive connection posting its share of the requests (numbered). It keeps
/// going when the portal goes away: a request without an answer is `failed`, and the
/// connection is made again (every 50 ms) for the next one; after `patience` without
/// reaching the portal, the rest of its share fails without waiting.
async fn worker(
    addr: SocketAddr,
    path: &'static str,
    bodies: Vec<(usize, Vec<u8>)>,
    patience: Duration,
) -> (Vec<Duration>, Vec<Record>) {
    let mut latencies = Vec::with_capacity(bodies.len());
    let mut records = Vec::with_capacity(bodies.len());
    let mut conn: Option<Conn> = None;
    let mut unreachable_since: Option<Instant> = None;
    for (i, body) in bodies {
        while conn.is_none() {
            if unreachable_since.is_some_and(|t| t.elapsed() >= patience) {
                break;
            }
            match connect(addr).await {
                Ok(c) => {
                    conn = Some(c);
                    unreachable_since = None;
                }
                Err(_) => {
                    unreachable_since.get_or_insert_with(Instant::now);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let Some(c) = conn.as_mut() else {
            records.push(Record {
                i,
                outcome: "failed",
                status: None,
                activation: None,
                error: Some(format!("{addr} unreachable for {} s", patience.as_secs())),
            });
            continue;
        };
        let start = Instant::now();
        match exchange(c, addr, path, &body).await {
            Ok((status, response)) => {
                latencies.push(start.elapsed());
                let json: serde_json::Value = serde_json::from_slice(&response).unwrap_or_default();
                let code = json["error"]["code"].as_str().map(str::to_owned);
                let (outcome, error) = match status {
                    200 => ("acknowledged", None),
                    400..=499 => ("refused", code),
                    _ => ("failed", code.or_else(|| Some(format!("HTTP {status}")))),
                };
                records.push(Record {
                    i,
                    outcome,
                    status: Some(status),
                    activation: json["activation"].as_str().map(str::to_owned),
                    error,
                });
            }
            Err(e) => {
                conn = None;
                records.push(Record {
                    i,
                    outcome: "failed",
                    status: None,
                    activation: None,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    (latencies, records)
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
    let patience = Duration::from_secs(args.patience);
    let mut shares: Vec<Vec<(usize, Vec<u8>)>> = vec![Vec::new(); args.connections.max(1)];
    let n = shares.len();
    let (path, what) = if args.heartbeat {
        let leasers: Vec<Leaser> = (0..n).map(Leaser::new).collect();
        eprintln!("taking {n} leases…");
        let tasks: Vec<_> = leasers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let take = l.request(&args.product, &args.key, LeaseAction::Take, 0)?;
                Ok(tokio::spawn(worker(
                    args.addr,
                    "/api/v1/leases",
                    vec![(i, take)],
                    patience,
                )))
            })
            .collect::<anyhow::Result<_>>()?;
        for t in tasks {
            let (_, records) = t.await?;
            if let Some(r) = records.iter().find(|r| !r.acknowledged()) {
                bail!(
                    "client {} could not take a lease ({}; the license needs --connections seats)",
                    r.i,
                    r.error.as_deref().unwrap_or(r.outcome)
                );
            }
        }
        eprintln!("making {} renewals…", args.requests);
        for i in 0..args.requests {
            shares[i % n].push((
                i,
                leasers[i % n].request(
                    &args.product,
                    &args.key,
                    LeaseAction::Renew,
                    i as u64 + 1,
                )?,
            ));
        }
        ("/api/v1/leases/renew", "renewals")
    } else {
        if let Some(dir) = &args.requests_from {
            for i in 0..args.requests {
                let path = dir.join(format!("req-{i}.req"));
                let body = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                shares[i % n].push((i, body));
            }
        } else {
            eprintln!("making {} activation requests…", args.requests);
            for i in 0..args.requests {
                shares[i % n].push((i, make_request(&args.product, &args.key, i)?));
            }
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
        .map(|s| tokio::spawn(worker(args.addr, path, s, patience)))
        .collect();
    let mut latencies = Vec::with_capacity(args.requests);
    let mut records = Vec::with_capacity(args.requests);
    for t in tasks {
        let (l, r) = t.await?;
        latencies.extend(l);
        records.extend(r);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    records.sort_by_key(|r| r.i);
    if let Some(file) = &args.record {
        let mut out = String::new();
        for r in &records {
            out.push_str(&serde_json::to_string(r)?);
            out.push('\n');
        }
        std::fs::write(file, out).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let count = |outcome: &str| records.iter().filter(|r| r.outcome == outcome).count();
    let (acknowledged, refused, failed) =
        (count("acknowledged"), count("refused"), count("failed"));
    if let Some(r) = records.iter().find(|r| !r.acknowledged()) {
        eprintln!(
            "first not acknowledged: request {}: {} ({})",
            r.i,
            r.outcome,
            r.error.as_deref().unwrap_or("-")
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let throughput = acknowledged as f64 / elapsed.as_secs_f64();
    let max = latencies.last().copied().unwrap_or_default();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "format": 1,
                "requests": records.len(),
                "what": what,
                "acknowledged": acknowledged,
                "refused": refused,
                "failed": failed,
                "elapsed_secs": elapsed.as_secs_f64(),
                "throughput": throughput,
                "latency_ms": {
                    "p50": ms(percentile(&latencies, 50.0)),
                    "p99": ms(percentile(&latencies, 99.0)),
                    "max": ms(max),
                },
            })
        ),
        Format::Text => {
            println!("requests:       {}", records.len());
            println!(
                "{:<15} {acknowledged} ({refused} refused, {failed} failed)",
                format!("{what}:")
            );
            println!("elapsed:        {:.2} s", elapsed.as_secs_f64());
            println!("throughput:     {throughput:.0} {what}/s");
            println!("latency p50:    {:.2} ms", ms(percentile(&latencies, 50.0)));
            println!("latency p99:    {:.2} ms", ms(percentile(&latencies, 99.0)));
            println!("latency max:    {:.2} ms", ms(max));
        }
    }
    if acknowledged < records.len() {
        std::process::exit(1);
    }
    Ok(())
}
