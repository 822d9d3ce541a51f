//! Activations: `lic-portal activation …` (list, show, server-side deactivation) and
//! support's `refresh`.

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
                out(&show_activation(&a))?;
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
        reason,
        extend_days,
        expires,
        clock_floor,
        features,
        out: path,
    } = args;
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
