//! The catalog: `lic-portal product …`, `policy …` and `license …`.

use crate::*;

pub(crate) async fn product(
    g: &Global,
    c: ProductCommand,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let portal = open(g).await?;
    match c {
        ProductCommand::Create { code, name } => {
            let p = portal.create_product(&code, &name, actor).await?;
            if json {
                print_doc(serde_json::json!({ "product": p }))?;
            } else {
                println!("created product {} ({})", p.code, p.name);
            }
        }
        ProductCommand::List { page } => {
            let page = portal.list_products(None, &page.into()).await?;
            print_page(&page, json, |p| format!("{}  {}\n", p.code, p.name))?;
        }
        ProductCommand::Show { code } => {
            let p = portal.product(&code).await?;
            if json {
                print_doc(serde_json::json!({ "product": p }))?;
            } else {
                print_json(&p)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn policy(
    g: &Global,
    c: PolicyCommand,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let portal = open(g).await?;
    match c {
        PolicyCommand::Create(a) => {
            let defaults = Policy::default();
            let spec = Policy {
                id: String::new(),
                product: a.product,
                name: a.name,
                license_type: a.license_type,
                allow_offline: !a.no_offline,
                seats: a.seats,
                validity_days: a.validity_days,
                features: parse_features(&a.features)?,
                match_rule: MatchRule {
                    required: a.match_required,
                    max_changed: a.match_max_changed,
                },
                clock_tolerance_secs: a.clock_tolerance,
                max_offline_days: a.max_offline_days,
                inactivity_secs: a.inactivity_secs,
                max_deactivations: a.max_deactivations,
                deactivation_period_days: a.deactivation_period_days,
                total_limits: parse_totals(&a.totals)?,
                refuse_over_total: a.refuse_over_total,
                created: 0,
                floating: a.floating.floating,
                lease_secs: a.floating.lease_secs.unwrap_or(defaults.lease_secs),
                renew_percent: a.floating.renew_percent.unwrap_or(defaults.renew_percent),
                max_processes: a.floating.max_processes,
                revival_secs: a.floating.revival_secs.unwrap_or(0),
                max_checkout_hours: a.floating.max_checkout_hours,
                lease_oed_hours: a.floating.lease_oed_hours,
                reclaim: a.floating.reclaim,
                reclaim_every_secs: a.floating.reclaim_every_secs,
                reclaim_since: None,
            };
            let p = portal.create_policy(spec, actor).await?;
            if json {
                print_doc(serde_json::json!({ "policy": p }))?;
            } else {
                println!("created policy {} ({} / {})", p.id, p.product, p.name);
            }
        }
        PolicyCommand::List { product, page } => {
            let filter = PolicyFilter { product };
            let page = portal.list_policies(&filter, None, &page.into()).await?;
            print_page(&page, json, |p| {
                format!("{}  {}  {}  {} seat(s)\n", p.id, p.product, p.name, p.seats)
            })?;
        }
        PolicyCommand::Edit {
            id,
            reclaim,
            inactivity_secs,
            reclaim_every_secs,
            reason,
        } => {
            let edit = lic_portal::ops::ReclaimEdit {
                reclaim,
                inactivity_secs,
                reclaim_every_secs,
                reason,
            };
            let p = portal.edit_reclamation(&id, &edit, actor).await?;
            if json {
                print_doc(serde_json::json!({ "policy": p }))?;
            } else {
                println!(
                    "policy {}: reclamation {}",
                    p.id,
                    match (p.reclaim, p.inactivity_secs, p.reclaim_every_secs) {
                        (true, Some(i), Some(e)) => format!(
                            "on: seats inactive for more than {i} s are reclaimed, checked every \
                             {e} s (inactivity counted from {} at the earliest)",
                            when(p.reclaim_since)
                        ),
                        _ => "off".to_string(),
                    }
                );
            }
        }
        PolicyCommand::Show { id } => {
            let p = portal.policy(&id).await?;
            if json {
                print_doc(serde_json::json!({ "policy": p }))?;
            } else {
                print_json(&p)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn license(
    g: &Global,
    c: LicenseCommand,
    actor: &Actor,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let portal = open(g).await?;
    match c {
        LicenseCommand::Create {
            policy,
            user,
            customer,
            seats,
            offline,
            expires,
            features,
            totals,
        } => {
            let spec = NewLicense {
                policy,
                user_id: user,
                customer,
                seats,
                allow_offline: offline,
                features: if features.is_empty() {
                    None
                } else {
                    Some(parse_features(&features)?)
                },
                expires: expires.as_deref().map(parse_time).transpose()?,
                total_limits: if totals.is_empty() {
                    None
                } else {
                    Some(parse_totals(&totals)?)
                },
            };
            let created = portal.create_license(spec, actor).await?;
            if json {
                print_doc(serde_json::json!({
                    "license": created.license,
                    "key": created.key,
                }))?;
            } else {
                println!("created license {}", created.license.id);
                if let Some(key) = &created.key {
                    println!("license key: {key}");
                    println!("(shown only now: the portal stores it hashed)");
                }
            }
        }
        LicenseCommand::List {
            product,
            status,
            customer,
            page,
        } => {
            let filter = LicenseFilter {
                product,
                status,
                customer,
            };
            let page = portal.list_licenses(&filter, None, &page.into()).await?;
            print_page(&page, json, show_license)?;
        }
        LicenseCommand::Show { id } => {
            let l = portal.license(&id).await?;
            if json {
                print_doc(serde_json::json!({ "license": l }))?;
            } else {
                out(&show_license(&l))?;
            }
        }
        LicenseCommand::Edit(a) => {
            let edit = LicenseEdit {
                seats: a.seats,
                expires: a.expires.as_deref().map(parse_expiry).transpose()?,
                features: if a.features.is_empty() {
                    None
                } else {
                    Some(parse_features(&a.features)?)
                },
                allow_offline: a.allow_offline,
                status: a.status,
                total_limits: if a.no_totals {
                    Some(Default::default())
                } else if a.totals.is_empty() {
                    None
                } else {
                    Some(parse_totals(&a.totals)?)
                },
                refuse_over_total: a.refuse_over_total,
            };
            let edited = portal.edit_license(&a.id, edit, &a.reason, actor).await?;
            let outdated = portal.outdated(&a.id).await?;
            if json {
                print_doc(serde_json::json!({
                    "license": edited.license,
                    "changes": edited.changes,
                    "outdated": outdated.len(),
                }))?;
            } else {
                if edited.changes.is_empty() {
                    println!("license {} already was so: nothing changed", a.id);
                } else {
                    println!("edited license {}:", a.id);
                }
                for c in &edited.changes {
                    println!(
                        "  {}: {} → {}",
                        c.field,
                        shown_value(&c.field, &c.before),
                        shown_value(&c.field, &c.after)
                    );
                }
                if !outdated.is_empty() {
                    println!(
                        "{} active device(s) have other features or another expiry than the \
                         license now grants; they learn of it from a refresh:",
                        outdated.len()
                    );
                    println!("  lic-portal license outdated {}", a.id);
                    println!(
                        "  lic-portal refresh --license {} --all-outdated --out-dir DIR --reason …",
                        a.id
                    );
                }
            }
        }
        LicenseCommand::Outdated { id } => {
            let list = portal.outdated(&id).await?;
            if json {
                print_doc(serde_json::json!({ "license": id, "items": list }))?;
            } else if list.is_empty() {
                println!("every active device of license {id} has what the license grants");
            } else {
                out(&list.iter().map(show_outdated).collect::<String>())?;
            }
        }
        LicenseCommand::Revoke { id, reason } => {
            let l = portal.revoke_license(&id, &reason, actor).await?;
            if json {
                print_doc(serde_json::json!({ "license": l }))?;
            } else {
                println!("revoked license {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A changed value as a person reads it: times as dates, features as specs.
fn shown_value(field: &str, v: &serde_json::Value) -> String {
    match (field, v) {
        (_, serde_json::Value::Null) if field == "expires" => "never".into(),
        (_, serde_json::Value::Null) => "the policy's".into(),
        ("expires", serde_json::Value::Number(n)) => when(n.as_i64()),
        ("features", features) => serde_json::from_value::<Features>(features.clone())
            .map(|f| feature_specs(&f))
            .unwrap_or_else(|_| features.to_string()),
        (_, serde_json::Value::String(s)) => s.clone(),
        (_, other) => other.to_string(),
    }
}

/// Features as the command line writes them: `a b=10 c=5+` (`none` for no feature).
pub(crate) fn feature_specs(features: &Features) -> String {
    if features.is_empty() {
        return "none".into();
    }
    features
        .iter()
        .map(|(name, f)| {
            let spec = match f.limit {
                None => name.clone(),
                Some(limit) if f.overage => format!("{name}={limit}+"),
                Some(limit) => format!("{name}={limit}"),
            };
            match f.floating {
                Some(n) => format!("{spec}:floating={n}"),
                None => spec,
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One out-of-date device: what it has, and what the license grants.
pub(crate) fn show_outdated(o: &Outdated) -> String {
    let mut parts = Vec::new();
    for field in &o.differs {
        match field.as_str() {
            "features" => parts.push(format!(
                "features {} → {}",
                feature_specs(&o.issued.features),
                feature_specs(&o.granted.features)
            )),
            "expires" => parts.push(format!(
                "expires {} → {}",
                when_or_never(o.issued.expires),
                when_or_never(o.granted.expires)
            )),
            other => parts.push(other.to_string()),
        }
    }
    format!(
        "{}  device {}  serial {}  last seen {}  {}\n",
        o.activation,
        o.device_kid,
        o.serial,
        when(Some(o.last_accessed)),
        parts.join("; ")
    )
}

fn when_or_never(t: Option<i64>) -> String {
    match t {
        Some(_) => when(t),
        None => "never".into(),
    }
}
