//! `lic-portal token …`: API tokens for staff and scripts.

use crate::*;

pub(crate) async fn token(g: &Global, c: TokenCommand) -> anyhow::Result<ExitCode> {
    use lic_portal::auth;
    let (db, _) = connect(g, false).await?;
    match c {
        TokenCommand::Create {
            name,
            role,
            products,
        } => {
            let role: auth::Role = role.parse().map_err(|_| {
                anyhow::anyhow!("unknown role '{role}': use admin, support or read-only")
            })?;
            let scope = if products.is_empty() {
                None
            } else {
                Some(products)
            };
            let (id, secret) =
                auth::create_token(&db, &name, role, scope, chrono::Utc::now().timestamp()).await?;
            match g.format {
                Format::Json => {
                    let info = auth::list_tokens(&db)
                        .await?
                        .into_iter()
                        .find(|t| t.id == id)
                        .context("the new token is not in the token list")?;
                    print_doc(serde_json::json!({ "token": info, "secret": secret }))?;
                }
                Format::Text => {
                    println!("created token {id} ({role}) for {name}");
                    println!("token: {secret}");
                    println!(
                        "(shown only now: the portal stores it hashed; send it as 'Authorization: Bearer TOKEN')"
                    );
                }
            }
        }
        TokenCommand::List => {
            let list = auth::list_tokens(&db).await?;
            match g.format {
                Format::Json => print_doc(serde_json::json!({ "items": list }))?,
                Format::Text => out(&list
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {}  {}  {}{}\n",
                            t.id,
                            t.name,
                            t.role,
                            t.products
                                .as_ref()
                                .map_or("all products".to_string(), |p| p.join(",")),
                            if t.revoked.is_some() { "  REVOKED" } else { "" }
                        )
                    })
                    .collect::<String>())?,
            }
        }
        TokenCommand::Revoke { id } => {
            let info = auth::revoke_token(&db, &id, chrono::Utc::now().timestamp()).await?;
            match g.format {
                Format::Json => print_doc(serde_json::json!({ "token": info }))?,
                Format::Text => println!("revoked token {id}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
