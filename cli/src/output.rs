//! What `lic` prints: text for people, JSON (versioned, documented in
//! docs/user-guide.md) for scripts.
//!
//! Strings that come from files (product, ids, feature names, reasons…) may hold
//! terminal escape sequences or bidi overrides: text output writes those characters as
//! `\u{1b}`-style escapes ([`lic_core::text::escape`]), JSON output as `\u001b`-style
//! JSON escapes ([`lic_core::text::escape_json`]), which keep the value exact.

use std::io::{self, Write as _};

use clap::ValueEnum;
use lic_core::client::{LeaseInfo, Status};
use lic_core::fingerprint::MatchReport;
use lic_core::format::{AnyFile, Bytes32, Fingerprint, Verified};
use lic_core::pool::Pool;
use lic_core::text;
use serde_json::{Value, json};

use crate::Failure;

/// The version of the JSON documents `lic` prints.
pub const JSON_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Write to standard output; a closed pipe (`lic status | head -1`) is not an error.
pub fn stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(crate::io_failure(
            "cannot write to standard output".into(),
            e,
        )),
        _ => Ok(()),
    }
}

/// Print one JSON document (a command's result) on standard output.
pub fn json(doc: &Value) -> Result<(), Failure> {
    let json = serde_json::to_string_pretty(doc).unwrap_or_default();
    let mut out = text::escape_json(&json).into_owned();
    out.push('\n');
    stdout(out.as_bytes())
}

/// Print text for people on standard output, each line's unsafe characters escaped.
pub fn text(text: &str) -> Result<(), Failure> {
    let mut t = String::with_capacity(text.len());
    for l in text.lines() {
        line(&mut t, l);
    }
    stdout(t.as_bytes())
}

/// Print one JSON document (an error) on standard error, on one line.
pub fn json_err(doc: &Value) {
    let json = serde_json::to_string(doc).unwrap_or_default();
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{}", text::escape_json(&json));
}

/// Add one line of text output, its unsafe characters escaped.
fn line(out: &mut String, text: &str) {
    out.push_str(&text::escape(text));
    out.push('\n');
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

/// The QR code of a file: its QR text (`LIC1:` + base45, all in the QR alphanumeric
/// set) at error correction M, which survives a smudged or skewed terminal photo.
pub fn qr_code(cose: &[u8]) -> Result<qrcode::QrCode, Failure> {
    let text = lic_core::format::qrtext::encode(cose);
    qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).map_err(|e| {
        Failure::new(
            format!("the request does not fit in a QR code: {e}"),
            "send the request file instead",
            "qr",
        )
    })
}

/// Print a file (binary COSE bytes) as a QR code in the terminal.
pub fn qr(cose: &[u8]) -> Result<(), Failure> {
    let code = qr_code(cose)?;
    let image = code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build();
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "{image}");
    let _ = writeln!(
        err,
        "scan this code with a phone and paste the text it holds (it starts with {}) at \
         your vendor's portal",
        lic_core::format::qrtext::PREFIX
    );
    Ok(())
}

fn lease_json(l: &LeaseInfo, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "license_id": l.license_id,
        "activation_id": l.activation_id,
        "instance": l.instance.to_string(),
        "feature": l.feature,
        "issued": time(Some(l.issued)),
        "renew_after": time(Some(l.renew_after)),
        "expires": time(Some(l.expires)),
        "offline_expiry": time(l.offline_expiry),
        "license_expires": time(l.license_expires),
        "valid_until": time(Some(l.valid_until())),
        "live": l.live(now),
    })
}

pub fn status(s: &Status, fmt: OutputFormat) -> Result<(), Failure> {
    match fmt {
        OutputFormat::Json => {
            let e = s.entitlements.as_ref();
            json(&json!({
                "format": JSON_FORMAT_VERSION,
                "product": s.product,
                "valid": s.is_valid(),
                "now": time(Some(s.now)),
                "violations": s.violations.iter().map(|v| json!({
                    "code": v.code(), "message": v.to_string(), "hint": v.hint(),
                })).collect::<Vec<_>>(),
                "license": e.map(|e| json!({
                    "license_id": e.license_id,
                    "activation_id": e.activation_id,
                    "type": serde_json::to_value(e.license_type).unwrap_or(Value::Null),
                    "serial": e.serial,
                    "not_before": time(Some(e.not_before)),
                    "expires": time(e.expires),
                    "offline_expiry": time(e.offline_expiry),
                    "clock_tolerance_secs": e.clock_tolerance,
                })),
                "features": s.features,
                "last_seen": time(s.last_seen),
                "device_kid": s.device_kid,
                "lease": s.lease.as_ref().map(|l| lease_json(l, s.now)),
                "leases": s.leases.iter().map(|l| lease_json(l, s.now)).collect::<Vec<_>>(),
                "instances": s.live_instances(),
            }))
        }
        OutputFormat::Text => {
            let mut t = String::new();
            if s.is_valid() {
                line(&mut t, &format!("{}: licensed", s.product));
            } else {
                line(&mut t, &format!("{}: NOT licensed", s.product));
                for v in &s.violations {
                    line(&mut t, &format!("  problem: {v}"));
                    line(&mut t, &format!("    what to do: {}", v.hint()));
                }
            }
            if let Some(e) = &s.entitlements {
                let ty = serde_json::to_value(e.license_type)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                if s.lease.is_some() {
                    line(
                        &mut t,
                        &format!("  license:    {} ({ty}, leased)", e.license_id),
                    );
                } else {
                    line(
                        &mut t,
                        &format!("  license:    {} ({ty}, serial {})", e.license_id, e.serial),
                    );
                }
                line(&mut t, &format!("  activation: {}", e.activation_id));
                let when = |d: Option<chrono::DateTime<chrono::Utc>>| {
                    d.map_or("never".to_string(), |d| {
                        d.format("%Y-%m-%d %H:%M UTC").to_string()
                    })
                };
                line(&mut t, &format!("  expires:    {}", when(e.expires)));
                if e.offline_expiry.is_some() {
                    line(
                        &mut t,
                        &format!(
                            "  offline until: {} (checked out; `lic checkin` returns the seat \
                             earlier)",
                            when(e.offline_expiry)
                        ),
                    );
                }
                let secs = |d: chrono::DateTime<chrono::Utc>| {
                    d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                };
                if let Some(l) = &s.lease {
                    line(
                        &mut t,
                        &format!(
                            "  lease:      renews after {}, lapses at {}",
                            secs(l.renew_after),
                            secs(l.expires)
                        ),
                    );
                    if let Some(oed) = l.offline_expiry {
                        line(&mut t, &format!("  seat kept offline until: {}", secs(oed)));
                    }
                    line(
                        &mut t,
                        &format!(
                            "  instances:  {} on this machine hold a live lease",
                            s.live_instances()
                        ),
                    );
                }
                for f in &s.features {
                    // The policy's own notation: `100+` is a limit of 100 that use may
                    // pass, the units beyond it reported as overage.
                    let limit = match (f.limit, f.overage_allowed) {
                        (None, _) => "unlimited".to_string(),
                        (Some(l), false) => l.to_string(),
                        (Some(l), true) => match f.max_overage {
                            Some(cap) => format!("{l}+{cap} (overage up to {cap} more)"),
                            None => format!("{l}+ (overage allowed)"),
                        },
                    };
                    let overage = if f.overage > 0 {
                        format!(", {} overage", f.overage)
                    } else {
                        String::new()
                    };
                    let floating = match f.floating {
                        Some(n) => format!(" (floating: {n} device(s) at once, with a lease)"),
                        None => String::new(),
                    };
                    line(
                        &mut t,
                        &format!(
                            "  feature {}: used {} of {limit}{overage}{floating}",
                            f.name, f.used
                        ),
                    );
                }
            }
            stdout(t.as_bytes())
        }
    }
}

pub fn fingerprint(
    product: &str,
    fp: &Fingerprint,
    report: Option<&MatchReport>,
    explain: bool,
    fmt: OutputFormat,
) -> Result<(), Failure> {
    match fmt {
        OutputFormat::Json => json(&json!({
            "format": JSON_FORMAT_VERSION,
            "product": product,
            "components": fp,
            "match": report.map(|r| json!({
                "ok": r.ok,
                "matched": r.matched,
                "differing": r.differing,
                "missing": r.missing,
                "required_failed": r.required_failed,
                "changed_allowed": r.changed_allowed,
            })),
        })),
        OutputFormat::Text => {
            let mut t = String::new();
            line(
                &mut t,
                &format!(
                    "fingerprint of this machine for '{product}' (hashes keyed by the device key):"
                ),
            );
            for (name, hash) in fp {
                let verdict = report.map_or("", |r| {
                    if r.matched.contains(name) {
                        "  matches the license"
                    } else if r.differing.contains(name) {
                        "  DIFFERS from the license"
                    } else {
                        "  not in the license"
                    }
                });
                line(&mut t, &format!("  {name:<12} {hash}{verdict}"));
            }
            match report {
                Some(r) => {
                    for name in &r.missing {
                        line(
                            &mut t,
                            &format!("  {name:<12} (not found on this machine)  in the license"),
                        );
                    }
                    if r.ok {
                        t.push_str("the license's match rule is satisfied\n");
                    } else {
                        let mut verdict = "the license's match rule is NOT satisfied".to_string();
                        if !r.required_failed.is_empty() {
                            verdict.push_str(&format!(
                                " (required and different: {})",
                                r.required_failed.join(", ")
                            ));
                        }
                        line(&mut t, &verdict);
                    }
                }
                None if explain => t.push_str("no license is installed to compare with\n"),
                None => {}
            }
            stdout(t.as_bytes())
        }
    }
}

fn describe<T: serde::Serialize>(v: &Verified<T>) -> (Value, Value) {
    let summary = json!({
        "kid": v.signer().kid().to_string(),
        "public_key": Bytes32(v.signer().to_bytes()).to_string(),
        "file_hash": v.file_hash().to_string(),
    });
    (
        summary,
        serde_json::to_value(v.payload()).unwrap_or(Value::Null),
    )
}

/// What `inspect` says of the pool a file verified through: the pool license that makes
/// the floating server's key its signer.
fn pool_summary(pool: &Pool) -> Value {
    json!({
        "license_id": pool.license_id,
        "activation_id": pool.activation_id,
        "product": pool.product,
        "server_kid": pool.server_key.kid().to_string(),
        "seats": pool.seats,
        "expires": pool.expires,
        "serial": pool.serial,
    })
}

/// Show a verified file; `pool` is the pool it verified through (a lease or license
/// signed by an on-premise floating server), whose key is then the signer.
pub fn inspect(any: &AnyFile, pool: Option<&Pool>, fmt: OutputFormat) -> Result<(), Failure> {
    let (summary, payload) = match any {
        AnyFile::ActivationRequest(v) => describe(v),
        AnyFile::License(v) => describe(v),
        AnyFile::Refresh(v) => describe(v),
        AnyFile::Deactivation(v) => describe(v),
        AnyFile::UsageReport(v) => describe(v),
        AnyFile::Receipt(v) => describe(v),
        AnyFile::KeySet(v) => describe(v),
        AnyFile::LeaseRequest(v) => describe(v),
        AnyFile::Lease(v) => describe(v),
        AnyFile::CheckIn(v) => describe(v),
        _ => (json!({}), Value::Null),
    };
    let kind = any.kind();
    let role = match (pool, kind.signer()) {
        (Some(_), _) => "floating-server",
        (None, lic_core::format::SignerRole::Vendor) => "vendor",
        (None, lic_core::format::SignerRole::Device) => "device",
    };
    match fmt {
        OutputFormat::Json => json(&json!({
            "format": JSON_FORMAT_VERSION,
            "kind": kind.name(),
            "valid": true,
            "signer": { "role": role, "kid": summary["kid"], "public_key": summary["public_key"] },
            "pool": pool.map(pool_summary),
            "file_hash": summary["file_hash"],
            "payload": payload,
        })),
        OutputFormat::Text => {
            let mut t = String::new();
            line(&mut t, &format!("{kind} file: signature valid"));
            let signer = match pool {
                Some(_) => "floating server",
                None => role,
            };
            line(
                &mut t,
                &format!(
                    "  signed by:  {signer} key {}",
                    summary["kid"].as_str().unwrap_or_default()
                ),
            );
            if let Some(p) = pool {
                line(
                    &mut t,
                    &format!(
                        "  pool:       license {} ({} seats, pool serial {}{}), signed by a \
                         vendor key",
                        p.license_id,
                        p.seats,
                        p.serial,
                        p.expires
                            .map(|at| format!(
                                ", until {}",
                                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                            ))
                            .unwrap_or_default()
                    ),
                );
            }
            line(
                &mut t,
                &format!(
                    "  file hash:  {}",
                    summary["file_hash"].as_str().unwrap_or_default()
                ),
            );
            if let Value::Object(fields) = &payload {
                for (name, value) in fields {
                    // Strings as they are (escaped by `line`), other values (maps of
                    // features, lists…) as compact JSON, with JSON's escapes.
                    let shown = match value {
                        Value::String(s) => s.clone(),
                        other => text::escape_json(&other.to_string()).into_owned(),
                    };
                    line(&mut t, &format!("  {name}: {shown}"));
                }
            }
            stdout(t.as_bytes())
        }
    }
}

/// The components this machine has, without hashes (there is no store, so no device key
/// to key them with). In JSON, `components` maps each name to `null`.
pub fn fingerprint_names(
    product: &str,
    names: &[&str],
    explain: bool,
    fmt: OutputFormat,
) -> Result<(), Failure> {
    match fmt {
        OutputFormat::Json => json(&json!({
            "format": JSON_FORMAT_VERSION,
            "product": product,
            "components": names.iter().map(|n| (n.to_string(), Value::Null)).collect::<serde_json::Map<_, _>>(),
            "match": Value::Null,
        })),
        OutputFormat::Text => {
            let mut t = String::new();
            line(
                &mut t,
                &format!("components of this machine for '{product}' (no store: no hashes):"),
            );
            for name in names {
                line(&mut t, &format!("  {name}"));
            }
            if explain {
                line(&mut t, "no license is installed to compare with");
            }
            stdout(t.as_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use lic_core::format::{self, ActivationRequest, Bytes32, Credential, JournalHead, Nonce};
    use lic_core::keys::SecretKey;

    /// The budget of docs/format.md: a request's QR code is at most version 20 at error
    /// correction M, for a request as large as customers make them — every fingerprint
    /// component (the declared id included), a product code of 24 characters and a
    /// license key of 35.
    #[test]
    fn a_request_at_its_largest_fits_a_version_20_qr_code_at_level_m() {
        let request = ActivationRequest {
            pool_seats: None,
            product: "product-code-of-24-chars".into(),
            credential: Credential::LicenseKey("ABCD1-EFGH2-JKMN3-PQRS4-TVWX5-YZ012".into()),
            fingerprint: lic_core::fingerprint::component::ALL
                .iter()
                .zip(1u8..)
                .map(|(c, i)| {
                    (
                        c.to_string(),
                        Bytes32(std::array::from_fn(|j| i ^ (j as u8).wrapping_mul(37))),
                    )
                })
                .collect(),
            nonce: Nonce([7; 16]),
            created: chrono::Utc::now(),
            client: format!("lic {}", env!("CARGO_PKG_VERSION")),
            journal: JournalHead::first(),
            // (Device variables make a request larger; with many, it may not fit a QR
            // code, and `lic offline-activate --qr` says to send the file instead.)
            variables: Default::default(),
        };
        let file = format::sign(&request, &SecretKey::generate()).unwrap();
        let code = super::qr_code(file.bytes()).unwrap();
        let qrcode::Version::Normal(version) = code.version() else {
            panic!("a micro QR code");
        };
        assert!(
            version <= 20,
            "{} bytes need QR version {version}",
            file.bytes().len()
        );
        // And the text is what the portal reads back.
        let text = format::qrtext::encode(file.bytes());
        assert_eq!(format::unarmor(text.as_bytes()).unwrap().1, file.bytes());
    }
}
