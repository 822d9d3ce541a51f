//! `lic-portal key …` and `activation resign`: the vendor's signing keys.

use crate::*;

pub(crate) fn key_generate(out: &Path, force: bool, format: Format) -> anyhow::Result<ExitCode> {
    let public = lic_portal::vendor::generate(out, force)?;
    match format {
        Format::Json => print_doc(serde_json::json!({
            "kid": public.kid().to_string(),
            "out": out.display().to_string(),
        }))?,
        Format::Text => {
            eprintln!(
                "wrote vendor signing key {} to {}",
                public.kid(),
                out.display()
            );
            eprintln!(
                "keep it secret; give clients its public key: lic-portal key export --key FILE"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn key(g: &Global, c: KeyCommand, actor: &Actor) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    match c {
        KeyCommand::Export {
            key,
            out: path,
            force,
        } => {
            let (pem, kids) = match key {
                Some(file) => {
                    let public = lic_portal::vendor::export(&file)?;
                    (public.to_pem(), vec![public.kid().to_string()])
                }
                // Every key the portal signed with and did not revoke.
                None => {
                    let (db, _) = connect(g, false).await?;
                    let ring = lic_portal::vendor::keyring(&db).await?;
                    let kids = ring.iter().map(|k| k.kid().to_string()).collect();
                    (ring.to_pem(), kids)
                }
            };
            if let Some(path) = &path {
                lic_core::fsutil::write_file(
                    path,
                    pem.as_bytes(),
                    lic_core::fsutil::PUBLIC_MODE,
                    force,
                )
                .with_context(|| {
                    format!("cannot write {} (--force replaces it)", path.display())
                })?;
            }
            if json {
                print_doc(serde_json::json!({
                    "keys": kids,
                    "pem": pem,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                match &path {
                    Some(path) => {
                        println!("wrote the trusted vendor keys to {}", path.display());
                    }
                    None => out(&pem)?,
                }
            }
        }
        KeyCommand::Rotate { key } => {
            let portal = open(g).await?;
            let key = match key {
                Some(file) => {
                    let secret = lic_core::keys::SecretKey::read(&file)
                        .with_context(|| format!("cannot use {} as the new key", file.display()))?;
                    portal.rotate_key_to(secret, actor).await?
                }
                None => portal.rotate_key(actor).await?,
            };
            if json {
                let kid = key.kid().to_string();
                let (db, _) = connect(g, false).await?;
                let info = lic_portal::vendor::list(&db)
                    .await?
                    .into_iter()
                    .find(|k| k.kid == kid)
                    .context("the new key is not in the key list")?;
                let set = portal.key_sets().await?.pop();
                print_doc(serde_json::json!({ "key": info, "key_set": set }))?;
            } else {
                println!(
                    "new active vendor key {}; export the keys again for new installations \
                     (lic-portal key export), and give installed ones the key set that adds it \
                     (lic-portal key keyset --out FILE; they install it with lic install FILE)",
                    key.kid()
                );
            }
        }
        KeyCommand::Revoke {
            kid,
            reason,
            out: path,
        } => {
            let portal = open(g).await?;
            let set = portal.revoke_key(&kid, &reason, actor).await?;
            if let Some(path) = &path {
                write_response(path, &set.file)?;
            }
            if json {
                print_doc(serde_json::json!({
                    "revoked": kid,
                    "key_set": set,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                println!(
                    "revoked vendor key {kid}; published key set version {} (signed by {})",
                    set.version, set.signed_by
                );
                if let Some(path) = &path {
                    println!("wrote it to {}", path.display());
                }
                println!(
                    "devices stop trusting the key once they install it (lic install FILE; the \
                     portal serves it at /api/v1/keys/keyset). Licenses it signed stop working \
                     there: sign them again with \
                     `lic-portal activation resign --signed-by {kid} --out-dir DIR`"
                );
            }
        }
        KeyCommand::Keyset {
            version,
            out: path,
            force,
        } => {
            let portal = open(g).await?;
            let sets = portal.key_sets().await?;
            let set = match version {
                Some(v) => sets.iter().find(|s| s.version == v),
                None => sets.last(),
            }
            .with_context(|| match version {
                Some(v) => format!("there is no key set version {v}"),
                None => "no key set was published yet: one is published when the vendor key is \
                         rotated or a key is revoked"
                    .to_string(),
            })?;
            if let Some(path) = &path {
                if force {
                    lic_core::fsutil::write_file(
                        path,
                        set.file.as_bytes(),
                        lic_core::fsutil::PUBLIC_MODE,
                        true,
                    )
                    .with_context(|| format!("cannot write {}", path.display()))?;
                } else {
                    // The same key set there already is fine; another is kept.
                    write_response(path, &set.file).context("--force replaces it")?;
                }
            }
            if json {
                print_doc(serde_json::json!({
                    "key_set": set,
                    "out": path.as_ref().map(|p| p.display().to_string()),
                }))?;
            } else {
                match &path {
                    Some(path) => println!(
                        "wrote key set version {} to {}",
                        set.version,
                        path.display()
                    ),
                    None => out(&set.file)?,
                }
            }
        }
        KeyCommand::List => {
            let (db, _) = connect(g, false).await?;
            let keys = lic_portal::vendor::list(&db).await?;
            if json {
                print_doc(serde_json::json!({ "items": keys }))?;
            } else {
                out(&keys
                    .iter()
                    .map(|k| {
                        let state = match (k.active, &k.revoked_reason) {
                            (true, _) => "active".to_string(),
                            (false, Some(reason)) => {
                                format!("REVOKED {} ({reason})", when(k.revoked))
                            }
                            (false, None) => "retired".to_string(),
                        };
                        format!("{}  {state}  created {}\n", k.kid, when(Some(k.created)))
                    })
                    .collect::<String>())?;
            }
        }
        KeyCommand::Generate { out, force } => return key_generate(&out, force, g.format),
    }
    Ok(ExitCode::SUCCESS)
}

/// `activation resign`: each activation on its own; one that fails is reported and the
/// others go on (signing again is repeatable: the same files come out).
pub(crate) async fn resign(
    g: &Global,
    portal: &Portal,
    id: Option<String>,
    signed_by: Option<String>,
    out_dir: &Path,
    actor: &Actor,
) -> anyhow::Result<ExitCode> {
    let json = g.format == Format::Json;
    let ids = match (id, signed_by) {
        (Some(id), _) => vec![id],
        (None, Some(kid)) => portal.activations_signed_by(&kid).await?,
        (None, None) => bail!("give an activation id or --signed-by KID"),
    };
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        let written: anyhow::Result<(String, Vec<String>)> = async {
            let r = portal.resign(id, actor).await?;
            let license = out_dir.join(format!("{id}.lic"));
            write_response(&license, &r.license)?;
            let mut files = vec![license.display().to_string()];
            if let Some(refresh) = &r.refresh {
                let path = out_dir.join(format!("{id}.refresh.lic"));
                write_response(&path, refresh)?;
                files.push(path.display().to_string());
            }
            Ok((r.signed_by, files))
        }
        .await;
        match written {
            Ok((signed_by, files)) => {
                if !json {
                    println!("{id}: signed again by {signed_by} → {}", files.join(", "));
                }
                done.push(serde_json::json!({
                    "activation": id, "signed_by": signed_by, "files": files
                }));
            }
            Err(e) => {
                let (code, message, hint) = describe(&e);
                if !json {
                    eprintln!(
                        "{id}: NOT done: {} (run `lic-portal activation resign {id}` again once \
                         it is sorted out)",
                        escape(&message)
                    );
                }
                failed.push(serde_json::json!({
                    "activation": id,
                    "error": { "code": code, "message": message, "hint": hint },
                }));
            }
        }
    }
    if json {
        print_doc(serde_json::json!({ "items": done, "failed": failed }))?;
    } else if ids.is_empty() {
        println!("no active activation has files signed by that key");
    } else if !done.is_empty() {
        println!(
            "send each customer their files; they install them with: \
             lic install ID.lic [ID.refresh.lic]"
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
