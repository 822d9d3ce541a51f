//! Activations: `lic-portal activation …` (list, show, server-side deactivation),
//! support's `refresh`, and `reclaim` (inactive floating seats).

use crate::*;

pub(crate) async fn activation(
    g: &Global,
    c: ActivationCommand,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let portal = open(g).await?;
    match c {
        ActivationCommand::List {
            license,
            product,
            state,
            customer,
            page,
        } => {
            let filter = ActivationFilter {
                product,
                license,
                state,
                customer,
            };
            let page = portal.list_activations(&filter, None, &page.into()).await?;
            print_page(&page, json, show_activation)?;
        }
        ActivationCommand::Show { id } => {
            let a = portal.activation(&id).await?;
            if json {
                print_doc(serde_json::json!({ "activation": a }))?;
            } else {
                out(&format!("{}{}", show_activation(&a), show_variables(&a)))?;
            }
        }
        ActivationCommand::Deactivate { id, reason } => {
            let a = portal.deactivate(&id, &reason, actor).await?;
            if json {
                print_doc(serde_json::json!({ "activation": a }))?;
            } else {
                println!("deactivated {id}: its seat is free");
            }
        }
        ActivationCommand::Resign {
            id,
            signed_by,
            out_dir,
        } => {
            return resign(g, &portal, id, signed_by, &out_dir, actor).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn refresh(
    g: &Global,
    args: RefreshArgs,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let RefreshArgs {
        activation,
        license,
        all_outdated: _,
        out_dir,
        reason,
        extend_days,
        expires,
        clock_floor,
        features,
        seats,
        out: path,
    } = args;
    if let (Some(license), Some(out_dir)) = (license, out_dir) {
        return refresh_outdated(g, &license, &out_dir, &reason, actor, json).await;
    }
    let activation = activation.context("give --activation ID, or --license ID --all-outdated")?;
    let portal = open(g).await?;
    let spec = RefreshSpec {
        reason,
        features: if features.is_empty() {
            None
        } else {
            Some(parse_features(&features)?)
        },
        expires: expires.as_deref().map(parse_time).transpose()?,
        extend_days,
        clock_floor: clock_floor.as_deref().map(parse_time).transpose()?,
        pool_seats: seats,
    };
    // Refuse an existing output file before the refresh is made: making one uses
    // up a serial and is audited.
    let to_stdout = path == Path::new("-");
    if !to_stdout && path.exists() {
        bail!(
            "{} already exists; choose another file with --out",
            path.display()
        );
    }
    let refresh = portal.refresh(&activation, &spec, actor).await?;
    if json {
        // With `--out -` the file goes into the document, not before it.
        if !to_stdout {
            write_response(&path, &refresh)?;
        }
        print_doc(serde_json::json!({
            "activation": activation,
            "out": (!to_stdout).then(|| path.display().to_string()),
            "refresh": refresh,
        }))?;
    } else {
        write_response(&path, &refresh)?;
        let place = if to_stdout {
            "standard output".to_string()
        } else {
            path.display().to_string()
        };
        // Beside the file on standard output, the words go to standard error.
        let say = |line: String| {
            if to_stdout {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        say(format!(
            "wrote the refresh for {activation} to {place}; send it to the customer"
        ));
        say(format!(
            "they install it with: lic install {}",
            path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `refresh --license L --all-outdated --out-dir DIR`: a refresh for each active device of
/// the license that is out of date, each on its own (audited as a single refresh); one that
/// fails is reported and the others go on. Files are never replaced.
async fn refresh_outdated(
    g: &Global,
    license: &str,
    out_dir: &Path,
    reason: &str,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if reason.trim().is_empty() {
        return Err(PortalError::Invalid {
            field: "reason",
            reason: "a refresh needs a reason (it is audited)".into(),
        }
        .into());
    }
    let portal = open(g).await?;
    let outdated = portal.outdated(license).await?;
    // Before any refresh is made: a refresh made whose file has nowhere to go uses a
    // serial for nothing.
    lic_core::fsutil::create_dir_all(out_dir, lic_core::fsutil::PUBLIC_DIR_MODE).with_context(
        || {
            format!(
                "cannot create the output directory {}; no refresh was made",
                out_dir.display()
            )
        },
    )?;
    let bar = if !json && std::io::stderr().is_terminal() && outdated.len() > 1 {
        indicatif::ProgressBar::new(outdated.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut written, mut failed, mut current) = (Vec::new(), Vec::new(), Vec::new());
    for o in &outdated {
        let path = out_dir.join(format!("{}.refresh.lic", o.activation));
        let result: anyhow::Result<Option<PathBuf>> = async {
            if path.exists() {
                bail!(
                    "{} already exists and was left as it is; move it away and run the \
                     command again (no refresh was made for this device)",
                    path.display()
                );
            }
            let Some(text) = portal
                .refresh_to_license(&o.activation, reason, actor)
                .await?
            else {
                return Ok(None);
            };
            lic_core::fsutil::write_new(&path, text.as_bytes(), lic_core::fsutil::PUBLIC_MODE)
                .with_context(|| {
                    format!(
                        "the refresh was made (and audited) but {} could not be written; \
                         `lic-portal activation resign {} --out-dir DIR` writes the device's \
                         files again",
                        path.display(),
                        o.activation
                    )
                })?;
            Ok(Some(path.clone()))
        }
        .await;
        match result {
            Ok(Some(path)) => {
                if !json {
                    let line = format!(
                        "{}  device {} → {} ({})",
                        o.activation,
                        o.device_kid,
                        path.display(),
                        o.differs.join(", ")
                    );
                    bar.suspend(|| println!("{}", escape(&line)));
                }
                written.push(serde_json::json!({
                    "activation": o.activation,
                    "device_kid": o.device_kid,
                    "out": path.display().to_string(),
                    "differs": o.differs,
                }));
            }
            Ok(None) => {
                // Refreshed by someone else meanwhile, or the license was edited back.
                current.push(o.activation.clone());
            }
            Err(e) => {
                let (code, message, hint) = describe(&e);
                if !json {
                    bar.suspend(|| {
                        eprintln!(
                            "{}  device {}: NOT refreshed: {}",
                            o.activation,
                            o.device_kid,
                            escape(&message)
                        )
                    });
                }
                failed.push(serde_json::json!({
                    "activation": o.activation,
                    "device_kid": o.device_kid,
                    "error": { "code": code, "message": message, "hint": hint },
                }));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        print_doc(serde_json::json!({
            "license": license,
            "items": written,
            "failed": failed,
            "up_to_date": current,
        }))?;
    } else {
        if outdated.is_empty() {
            println!("every active device of license {license} has what the license grants");
        } else if !written.is_empty() {
            println!(
                "send each customer the file named after their activation (`lic status` shows \
                 it); they install it with: lic install ACTIVATION.refresh.lic"
            );
        }
        eprintln!(
            "{} device(s) out of date: {} refresh file(s) written, {} failed{}",
            outdated.len(),
            written.len(),
            failed.len(),
            if current.is_empty() {
                String::new()
            } else {
                format!(", {} up to date meanwhile", current.len())
            }
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `lic-portal reclaim [--dry-run]`.
pub(crate) async fn reclaim(
    g: &Global,
    dry_run: bool,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let portal = open(g).await?;
    let done = portal.reclaim(dry_run, None, None, actor).await?;
    if json {
        print_doc(serde_json::json!({
            "dry_run": done.dry_run,
            "at": done.at,
            "seats": done.seats,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    for s in &done.seats {
        out(&format!(
            "{}  license {}  device {}  last seen {}: {}\n",
            s.activation,
            s.license,
            s.device_kid,
            when(Some(s.last_accessed)),
            s.reason
        ))?;
    }
    let n = done.seats.len();
    println!(
        "{}",
        match (dry_run, n) {
            (true, 0) => "no seat would be reclaimed".to_string(),
            (true, n) => format!("{n} seat(s) would be reclaimed (dry run: nothing changed)"),
            (false, 0) => "no seat was inactive: nothing reclaimed".to_string(),
            (false, n) => format!("{n} seat(s) reclaimed (see `lic-portal audit`)"),
        }
    );
    Ok(ExitCode::SUCCESS)
}
