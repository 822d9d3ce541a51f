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
                created: 0,
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
