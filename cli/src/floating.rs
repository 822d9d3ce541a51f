//! The floating commands: `lic lease -- COMMAND` (hold a seat while a command runs),
//! `lic checkout` and `lic checkin`. The exchanges and the background renewal are
//! `lic_core::lease`'s; this is the glue to arguments, processes and output.

use std::path::Path;
use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lic_core::client::ClientError;
use lic_core::floating::Grant;
use lic_core::format::Credential;
use lic_core::lease::{
    self, Granted, HolderEvent, HolderOptions, HttpTransport, LeaseError, LeaseHolder,
};
use lic_core::rules::Violation;
use serde_json::{Value, json};

use crate::{
    CheckinArgs, CheckoutArgs, EXIT_ERROR, EXIT_OK, Failure, Global, LeaseArgs, OutputFormat,
    client, describe_out, output, store_dir,
};

/// The longest wait between two asks for a seat with `--wait`: well within the two lease
/// periods a server keeps a waiting device's place for (the shortest lease is 10 s).
const MAX_WAIT_STEP_SECS: u64 = 15;

/// A failure to exchange with the license server, as lic reports it: the server's
/// refusal in its own words and code; the client's errors as everywhere else.
pub(crate) fn lease_failure(e: LeaseError) -> Failure {
    match e {
        LeaseError::Client(c) => c.into(),
        e => Failure::new(e.to_string(), e.hint(), e.code().to_string()),
    }
}

fn transport(server: &str) -> Result<HttpTransport, Failure> {
    HttpTransport::new(server).map_err(|e| {
        Failure::new(
            e.to_string(),
            "give the address your vendor or license administrator told you, starting with \
             https://",
            "usage",
        )
    })
}

/// The credential given on the command line, if any: leases and checkouts remember the
/// one given first.
fn optional_credential(
    key: Option<&str>,
    user: Option<&str>,
) -> Result<Option<Credential>, Failure> {
    match (key, user) {
        (None, None) => Ok(None),
        (key, user) => crate::credential(key, user).map(Some),
    }
}

/// The product of a floating command: --product, else the only product of the store;
/// before the first lease the store knows none, so it must be named.
fn floating_product(g: &Global) -> Result<String, Failure> {
    crate::product(g).map_err(|f| {
        if f.code == "not-activated" {
            Failure::new(
                "which product? the license store knows none yet",
                "name the product with --product PRODUCT (the product code your vendor gave \
                 you)",
                "usage",
            )
        } else {
            f
        }
    })
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn grant_name(grant: Grant) -> &'static str {
    match grant {
        Grant::Held => "held",
        Grant::Revived => "revived",
        _ => "taken",
    }
}

/// A line of progress on standard error: text, or with `--format json` one JSON
/// document per line (`{"format": 1, "event": …, "message": …}` and the event's fields).
fn progress(fmt: OutputFormat, event: &str, message: &str, fields: Value) {
    if fmt == OutputFormat::Json {
        let mut doc = json!({
            "format": output::JSON_FORMAT_VERSION,
            "event": event,
            "message": message,
        });
        if let (Some(doc), Value::Object(fields)) = (doc.as_object_mut(), fields) {
            doc.extend(fields);
        }
        output::json_err(&doc);
    } else {
        eprintln!("lic: {}", lic_core::text::escape(message));
    }
}

fn violation_json(v: &Violation) -> Value {
    json!({ "code": v.code(), "message": v.to_string(), "hint": v.hint() })
}

/// What the holder reports while the command runs, on standard error.
fn report_event(fmt: OutputFormat, what: &str, event: &HolderEvent) {
    match event {
        HolderEvent::Renewed(_) => {}
        HolderEvent::Retrying { error, until } => progress(
            fmt,
            "retrying",
            &format!(
                "cannot renew the {what} lease ({error}); retrying — it holds until {}",
                when(*until)
            ),
            json!({ "until": time(Some(*until)) }),
        ),
        HolderEvent::Retaken { lease, grant } => progress(
            fmt,
            "retaken",
            &format!(
                "took the {what} seat again (activation {}); it lapses at {} unless renewed",
                lease.activation_id,
                when(lease.expires)
            ),
            json!({ "grant": grant_name(*grant), "activation_id": lease.activation_id }),
        ),
        HolderEvent::Violation(v) => progress(
            fmt,
            "violation",
            &format!(
                "the {what} seat is lost: {v} ({}) — {}; the command goes on, and lic keeps \
                 trying to take a seat again",
                v.code(),
                v.hint()
            ),
            json!({ "violation": violation_json(v) }),
        ),
        _ => {}
    }
}

fn holder_options(g: &Global, what: String) -> HolderOptions {
    let fmt = g.format;
    HolderOptions::default().on_event(move |e| report_event(fmt, &what, e))
}

/// Take the seat for `instance`; with `wait`, ask again (with backoff) while every seat
/// is in use, saying so on standard error.
fn take_seat(
    g: &Global,
    client: &lic_core::client::Client,
    transport: &HttpTransport,
    credential: Option<Credential>,
    instance: lic_core::format::Nonce,
    wait: bool,
) -> Result<Granted, Failure> {
    let mut step = 1;
    let mut asked = 0u32;
    loop {
        match lease::take(client, transport, credential.clone(), instance, None, wait) {
            Ok(granted) => return Ok(granted),
            Err(LeaseError::Refused { code, message, .. }) if wait && code == "no-seat" => {
                asked += 1;
                progress(
                    g.format,
                    "waiting",
                    &format!(
                        "{message}; waiting in the queue for a seat (asking again in {step} s, \
                         ask {asked}; Ctrl-C gives up)"
                    ),
                    json!({ "retry_secs": step, "asked": asked }),
                );
                std::thread::sleep(Duration::from_secs(step));
                step = (step * 2).min(MAX_WAIT_STEP_SECS);
            }
            Err(e) => return Err(lease_failure(e)),
        }
    }
}

/// `lic lease --server URL [--wait] -- COMMAND ARGS`.
pub fn lease(g: &Global, args: &LeaseArgs) -> Result<u8, Failure> {
    let product = floating_product(g)?;
    let credential = optional_credential(args.key.as_deref(), args.user.as_deref())?;
    let transport = transport(&args.server)?;
    let client = Arc::new(client(g, Some(product.clone()))?);
    let store = store_dir(g)?;
    let Some((program, program_args)) = args.command.split_first() else {
        return Err(Failure::new(
            "no command to run",
            "give the command after `--`: lic lease --server URL -- COMMAND ARGS",
            "usage",
        ));
    };

    let instance = lic_core::client::new_instance();
    let granted = take_seat(g, &client, &transport, credential, instance, args.wait)?;
    let activation_id = granted.lease.activation_id.clone();
    progress(
        g.format,
        "leased",
        &format!(
            "holding a seat of '{product}' (activation {activation_id}, {}): it lapses at {} \
             unless renewed; renewing in the background while the command runs",
            grant_name(granted.grant),
            when(granted.lease.expires)
        ),
        json!({
            "activation_id": activation_id,
            "grant": grant_name(granted.grant),
            "expires": time(Some(granted.lease.expires)),
        }),
    );
    let mut holders = vec![
        LeaseHolder::with_lease(
            client.clone(),
            transport.clone(),
            holder_options(g, "floating".into()),
            instance,
            granted.clone(),
        )
        .spawn(),
    ];
    for feature in &args.features {
        let options = holder_options(g, format!("feature '{feature}'")).feature(feature);
        match LeaseHolder::start(client.clone(), transport.clone(), options) {
            Ok(holder) => holders.push(holder),
            Err(e) => {
                release_all(holders);
                let f = lease_failure(e);
                return Err(Failure {
                    message: format!("feature '{feature}': {}", f.message),
                    ..f
                });
            }
        }
    }

    let run = Process::new(program)
        .args(program_args)
        .env("LIC_STORE", &store)
        .env("LIC_PRODUCT", &product)
        .status();
    let violations: Vec<Violation> = holders
        .iter()
        .filter_map(|h| h.status().violation)
        .collect();
    let released = release_all(holders);
    let status = match run {
        Ok(status) => status,
        Err(e) => {
            let (exit, hint) = match e.kind() {
                std::io::ErrorKind::NotFound => (
                    127,
                    "check the command's name (and PATH); the seat was released",
                ),
                _ => (
                    126,
                    "check that the command may be run (its permissions); the seat was \
                     released",
                ),
            };
            return Err(Failure {
                exit,
                ..Failure::new(
                    format!("cannot run {}: {e}", Path::new(program).display()),
                    hint,
                    "command-failed",
                )
            });
        }
    };
    let exit = exit_code(&status);
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product,
            "activation_id": activation_id,
            "grant": grant_name(granted.grant),
            "exit_status": exit,
            "released": released,
            "violations": violations.iter().map(violation_json).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Text => progress(
            g.format,
            "released",
            &if released {
                format!("released the seat of '{product}'; the command exited with {exit}")
            } else {
                format!(
                    "the command exited with {exit}; the seat of '{product}' could not be \
                     released (the server was not reached): it frees itself when the lease \
                     lapses"
                )
            },
            Value::Null,
        ),
    }
    Ok(exit)
}

/// Stop every holder (each releases its lease): whether all were released.
fn release_all(holders: Vec<LeaseHolder>) -> bool {
    // Every holder is stopped, whatever the others answer.
    let released: Vec<bool> = holders
        .into_iter()
        .rev()
        .map(|h| h.stop().unwrap_or(false))
        .collect();
    released.into_iter().all(|one| one)
}

/// The exit status to pass on: the command's, or 128 + the signal that ended it.
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(EXIT_ERROR);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + (signal & 0x7f)).unwrap_or(EXIT_ERROR);
        }
    }
    EXIT_ERROR
}

/// `lic checkout --server URL --hours H`.
pub fn checkout(g: &Global, args: &CheckoutArgs) -> Result<u8, Failure> {
    let product = floating_product(g)?;
    let credential = optional_credential(args.key.as_deref(), args.user.as_deref())?;
    let transport = transport(&args.server)?;
    let client = client(g, Some(product.clone()))?;
    let out = lease::checkout(&client, &transport, credential, args.hours).map_err(|e| {
        match e {
            // A refused license file is an error (exit 2), as `lic install` says.
            LeaseError::Client(c @ ClientError::Violation(_)) => Failure {
                exit: EXIT_ERROR,
                ..Failure::from(c)
            },
            e => lease_failure(e),
        }
    })?;
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product,
            "activation_id": out.activation_id,
            "offline_expiry": time(out.offline_expiry),
            "hours_asked": args.hours,
        }))?,
        OutputFormat::Text => output::text(&format!(
            "checked out a seat of '{product}' (activation {}) for offline use until {}\n\
             the seat stays yours until then; return it earlier with `lic checkin --server URL`\n",
            out.activation_id,
            out.offline_expiry
                .map_or("(no date given)".to_string(), when)
        ))?,
    }
    Ok(EXIT_OK)
}

/// `lic checkin --server URL` or `lic checkin --out FILE`.
pub fn checkin(g: &Global, args: &CheckinArgs) -> Result<u8, Failure> {
    let client = client(g, None)?;
    let product = client.product().to_string();
    if let Some(out) = &args.out {
        crate::check_writable(out, args.force)?;
        let file = client.check_in()?;
        crate::write_file(&file, out, args.force)?;
        eprintln!(
            "'{product}' is checked in on this machine; the check-in file is {}",
            describe_out(out)
        );
        eprintln!(
            "next: send it to your vendor (upload it at their portal) to free the seat before \
             its Offline Expiry Date"
        );
        crate::wrote_json(g, &product, "check_in", out, &file)?;
        return Ok(EXIT_OK);
    }
    let Some(server) = &args.server else {
        return Err(Failure::new(
            "give --server URL (check in online) or --out FILE (write the check-in file)",
            "lic checkin --server https://licensing.example.com",
            "usage",
        ));
    };
    let transport = transport(server)?;
    // Made (or found again) first: once made, the license is gone from this machine, and a
    // failure to send it says how to send it later.
    client.check_in()?;
    let done = lease::check_in(&client, &transport).map_err(|e| {
        let f = lease_failure(e);
        Failure {
            hint: format!(
                "{} — the checkout is removed from this machine and its check-in file is kept: \
                 run this command again later, or write the file with `lic checkin --out FILE` \
                 and send it to your vendor",
                f.hint
            ),
            ..f
        }
    })?;
    match g.format {
        OutputFormat::Json => output::json(&json!({
            "format": output::JSON_FORMAT_VERSION,
            "product": product,
            "activation_id": done.activation_id,
            "seat_freed": true,
            "replay": done.replay,
            "receipt": done.receipt,
            "flags": done.flags,
            "file_hash": done.check_in.hash().to_string(),
        }))?,
        OutputFormat::Text => {
            let mut t = format!(
                "'{product}' is checked in: the server confirmed that the seat of activation {} \
                 is free{}\n",
                done.activation_id,
                if done.replay { " (it had already)" } else { "" }
            );
            for flag in &done.flags {
                t.push_str(&format!(
                    "note: the server noted on this activation: {flag}\n"
                ));
            }
            output::text(&t)?;
        }
    }
    Ok(EXIT_OK)
}
