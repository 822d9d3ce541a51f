//! `lic-portal demo`: a portal in a directory of its own, started afresh each time, with
//! instructions that work as printed.

use crate::*;

/// The quick start: a portal with a demo product, policy and license; prints what to try.
/// The file that marks a directory as the demo's own: only such a directory is emptied.
pub(crate) const DEMO_MARK: &str = ".lic-demo";

/// Empty the demo's directory for a fresh run (it must be the demo's own, or empty, or
/// absent) and mark it.
pub(crate) fn fresh_demo_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            let empty = entries.next().is_none();
            if !empty {
                if !dir.join(DEMO_MARK).is_file() {
                    bail!(
                        "{} exists and was not made by the demo, so the demo does not empty \
                         it: choose another directory with --dir",
                        dir.display()
                    );
                }
                std::fs::remove_dir_all(dir).with_context(|| {
                    format!("cannot empty the demo directory {}", dir.display())
                })?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context(format!("cannot read the demo directory {}", dir.display())));
        }
    }
    lic_core::fsutil::create_dir_all(dir, 0o755)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    lic_core::fsutil::write_file(
        &dir.join(DEMO_MARK),
        b"made by lic-portal demo: emptied at each demo start\n",
        lic_core::fsutil::PUBLIC_MODE,
        true,
    )?;
    Ok(())
}

/// The `lic` binary for the printed commands: beside this executable. Run from the
/// source tree (`cargo run`), it is built first — its progress shown — so the printed
/// commands start at once instead of compiling in silence.
pub(crate) fn demo_lic_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let lic = exe
        .parent()?
        .join(format!("lic{}", std::env::consts::EXE_SUFFIX));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    if let (Some(cargo), true) = (std::env::var_os("CARGO"), manifest.is_file()) {
        eprintln!("building lic for the commands below (cargo build -p lic)…");
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "-p", "lic", "--bin", "lic", "--manifest-path"])
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        match build.status() {
            Ok(status) if status.success() => {}
            _ => eprintln!("warning: building lic failed; the commands below need it"),
        }
    }
    lic.is_file().then_some(lic)
}

pub(crate) async fn demo(
    g: &Global,
    listen: std::net::SocketAddr,
    dir: &Path,
    no_serve: bool,
) -> anyhow::Result<()> {
    if g.database.is_some() {
        bail!(
            "the demo runs on its own SQLite database in its directory (--dir): drop \
             --database (and LIC_PORTAL_DATABASE)"
        );
    }
    fresh_demo_dir(dir)?;
    // Absolute paths: the commands are for another terminal, maybe in another directory.
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let customer = dir.join("customer");
    lic_core::fsutil::create_dir_all(&customer, 0o755)
        .with_context(|| format!("cannot create {}", customer.display()))?;
    let portal_data = dir.join("portal");
    let g = Global {
        data: portal_data.clone(),
        database: None,
        keys: None,
        format: g.format,
    };
    let (db, p) = connect(&g, true).await?;
    Portal::init(&db, &p.keys).await?;
    let portal = Portal::open(db, &p.keys).await?;
    let actor = Actor::cli();
    portal
        .create_product("photo-pro", "Photo Pro (demo)", &actor)
        .await?;
    let policy = Policy {
        id: String::new(),
        product: "photo-pro".into(),
        name: "demo".into(),
        license_type: LicenseType::TimeLimited,
        allow_offline: true,
        seats: 3,
        validity_days: Some(365),
        features: parse_features(&[
            "export-pdf".into(),
            "render-minutes=600".into(),
            "batch-jobs=100+".into(),
        ])?,
        match_rule: MatchRule {
            required: vec!["machine-id".into()],
            max_changed: 2,
        },
        clock_tolerance_secs: 86_400,
        max_offline_days: None,
        inactivity_secs: None,
        max_deactivations: Some(5),
        deactivation_period_days: Some(30),
        total_limits: Default::default(),
        refuse_over_total: false,
        created: 0,
        ..Policy::default()
    };
    let policy = portal.create_policy(policy, &actor).await?;
    let created = portal
        .create_license(
            NewLicense {
                policy: policy.id,
                ..Default::default()
            },
            &actor,
        )
        .await?;
    let key = created.key.context("a key-based demo license has a key")?;
    let trust = dir.join("trusted-keys.pem");
    lic_core::fsutil::write_file(
        &trust,
        portal.trusted_keys().await?.to_pem().as_bytes(),
        lic_core::fsutil::PUBLIC_MODE,
        true,
    )?;
    let lic = demo_lic_binary();
    // Bound before anything is printed: the printed address is the one served (port 0
    // included).
    let listener = if no_serve {
        None
    } else {
        Some(
            tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!(
                        "cannot serve on {listen} (is another portal or demo running? --listen \
                 chooses another address)"
                    )
                })?,
        )
    };
    let addr = match &listener {
        Some(l) => l.local_addr()?,
        None => listen,
    };
    let url = format!("http://{addr}");
    let vendor = std::env::current_exe()
        .map_or_else(|_| "lic-portal".to_string(), |e| e.display().to_string());
    let lic_cmd = lic.map_or_else(|| "lic".to_string(), |l| l.display().to_string());
    let (dir, trust, customer, portal_data) = (
        dir.display(),
        trust.display(),
        customer.display(),
        portal_data.display(),
    );
    let text = format!(
        "\
lic portal demo — everything in {dir}/ (made afresh at each start), API at {url}/

  product:      photo-pro   (3 seats; features export-pdf, render-minutes 600,
                             batch-jobs 100+ = 100 and more allowed, counted as overage)
  license key:  {key}
  vendor keys:  {trust}   (what the lic command trusts)

Try it in another terminal. First the demo customer's machine: a directory and a license
store of its own, and a lic that trusts this portal's keys (an installed lic trusts the
trusted-keys.pem the vendor puts beside it, and nothing a user can add):

  cd {customer} && export LIC_STORE={customer}/store
  lic() {{ {lic_cmd} --trust {trust} \"$@\"; }}

Online, in one step each way (lic sends the files and installs the answer):

  lic activate --server {url} --product photo-pro --key {key}
  lic status
  lic consume render-minutes 42
  lic deactivate --server {url}

Offline, as on a machine without network (the files travel by USB stick or mail; curl
stands in for the vendor's upload page and prints the portal's refusal if there is one):

  lic offline-activate --product photo-pro --key {key} --out demo.req
  curl -sS --fail-with-body -H 'Accept: text/plain' --data-binary @demo.req -o demo.lic {url}/api/v1/activate
  lic install demo.lic
  lic consume batch-jobs 120
  lic status
  lic offline-deactivate --out demo.deact
  curl -sS --fail-with-body -H 'Accept: text/plain' --data-binary @demo.deact -o demo.receipt {url}/api/v1/deactivate
  lic inspect demo.receipt
      (the receipt is the vendor's signed confirmation that the seat is free and the usage
       counted: keep it; there is nothing to install)

The vendor's side, from any directory:

  {vendor} --data {portal_data} license list
  {vendor} --data {portal_data} activation list

Run the demo again to start over: it empties {dir}/ first.
"
    );
    if g.format == Format::Json {
        print_doc(serde_json::json!({
            "dir": dir.to_string(),
            "url": url,
            "serving": listener.is_some(),
            "product": "photo-pro",
            "license_key": key,
            "trusted_keys": trust.to_string(),
            "customer_dir": customer.to_string(),
            "portal_data": portal_data.to_string(),
            "lic": lic_cmd,
        }))?;
    } else {
        out(&text)?;
    }
    let Some(listener) = listener else {
        return Ok(());
    };
    if g.format == Format::Text {
        println!("serving on {url}/ — Ctrl-C stops it");
    }
    let _ = std::io::stdout().flush();
    init_logging();
    let state = lic_portal::http::AppState::new(std::sync::Arc::new(portal));
    lic_portal::http::serve_on(listener, state, shutdown_signal())
        .await
        .context("the demo portal stopped")
}
