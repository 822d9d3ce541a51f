//! `lic-portal staff …` and `lic-portal user …`: the accounts that sign in to the
//! portal's pages (the console's staff, and end users of user-based licenses).

use crate::*;
use lic_portal::accounts;
use zeroize::Zeroizing;

/// The password: typed twice at a terminal, without echo; else the first line of
/// standard input (a script pipes it in).
fn read_password(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let typed = |prompt: &str| {
            rpassword::prompt_password(prompt)
                .map(Zeroizing::new)
                .context("cannot read the password from the terminal")
        };
        let first = typed(&format!("{what}: "))?;
        let again = typed(&format!("{what} again: "))?;
        if first != again {
            bail!("the two passwords differ: nothing was changed; run the command again");
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        stdin
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string())
    };
    if password.is_empty() {
        bail!(
            "no password given: type one, or pipe it in, e.g. `printf '%s\\n' \"$PASSWORD\" | lic-portal …`"
        );
    }
    Ok(password)
}

fn show_staff(g: &Global, staff: &accounts::Staff, done: &str) -> anyhow::Result<()> {
    match g.format {
        Format::Json => print_doc(serde_json::json!({ "staff": staff })),
        Format::Text => {
            println!(
                "{done} staff account {} ({}, {}){}",
                staff.name,
                staff.role,
                staff
                    .products
                    .as_ref()
                    .map_or("all products".to_string(), |p| p.join(",")),
                if staff.disabled.is_some() {
                    ", disabled"
                } else {
                    ""
                }
            );
            Ok(())
        }
    }
}

pub(crate) async fn staff(g: &Global, c: StaffCommand, actor: &Actor) -> anyhow::Result<ExitCode> {
    let (db, _) = connect(g, false).await?;
    let now = chrono::Utc::now().timestamp();
    match c {
        StaffCommand::Add {
            name,
            role,
            products,
        } => {
            let role: lic_portal::auth::Role = role.parse().map_err(|_| {
                anyhow::anyhow!("unknown role '{role}': use admin, support or read-only")
            })?;
            let scope = (!products.is_empty()).then_some(products);
            let password = read_password("password for the new account")?;
            let staff =
                accounts::create_staff(&db, &name, role, scope, &password, now, actor).await?;
            show_staff(g, &staff, "created")?;
            if matches!(g.format, Format::Text) {
                println!("they sign in at /console/signin");
            }
        }
        StaffCommand::Password { name } => {
            let password = read_password("new password")?;
            let staff = accounts::set_staff_password(&db, &name, &password, now, actor).await?;
            show_staff(g, &staff, "new password for")?;
        }
        StaffCommand::Disable { name } => {
            let staff = accounts::disable_staff(&db, &name, now, actor).await?;
            show_staff(g, &staff, "disabled")?;
        }
        StaffCommand::List => {
            let list = accounts::list_staff(&db).await?;
            match g.format {
                Format::Json => print_doc(serde_json::json!({ "items": list }))?,
                Format::Text => out(&list
                    .iter()
                    .map(|s| {
                        format!(
                            "{}  {}  {}{}\n",
                            s.name,
                            s.role,
                            s.products
                                .as_ref()
                                .map_or("all products".to_string(), |p| p.join(",")),
                            if s.disabled.is_some() {
                                "  DISABLED"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<String>())?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn user(g: &Global, c: UserCommand, actor: &Actor) -> anyhow::Result<ExitCode> {
    let (db, _) = connect(g, false).await?;
    let now = chrono::Utc::now().timestamp();
    match c {
        UserCommand::SetPassword { user } => {
            let password = read_password("password for the user")?;
            accounts::set_user_password(&db, &user, &password, now, actor).await?;
            match g.format {
                Format::Json => {
                    print_doc(serde_json::json!({ "user": user.trim(), "password_set": true }))?
                }
                Format::Text => println!(
                    "password set for user {}: they sign in at /signin before activating",
                    user.trim()
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
