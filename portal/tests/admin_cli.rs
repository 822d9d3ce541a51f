//! The `lic-portal` command as an operator runs it (the real binary): what it prints
//! about uploaded files, the permissions of what it creates, where `apply` writes.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use lic_core::format::{self, ActivationRequest, Bytes32, Credential, JournalHead, Nonce};
use lic_core::keys::SecretKey;

fn portal(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .output()
        .unwrap()
}

fn ok(data: &Path, args: &[&str]) -> String {
    let out = portal(data, args);
    assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// An activation request signed with a throwaway device key, as any customer can make.
fn request(product: &str, key: &str) -> String {
    use chrono::TimeZone as _;
    let request = ActivationRequest {
        pool_seats: None,
        product: product.into(),
        credential: Credential::LicenseKey(key.into()),
        fingerprint: [("machine-id".to_string(), Bytes32([7; 32]))].into(),
        nonce: Nonce([1; 16]),
        created: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        client: "lic 0.1.0".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
    };
    format::sign(&request, &SecretKey::generate())
        .unwrap()
        .armored()
}

// ----- strings from uploaded files ---------------------------------------------------------

/// Terminal escape sequences (7-bit and 8-bit CSI), BEL and a right-to-left override.
const RAW: [&str; 4] = ["\u{1b}", "\u{9b}", "\u{202e}", "\u{7}"];

fn assert_no_raw(bytes: &[u8], what: &str) {
    for raw in RAW {
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_bytes()),
            "{what} holds {raw:?}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_refusal_quoting_a_crafted_product_is_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    ok(&data, &["init"]);
    let file = dir.path().join("crafted.req");
    std::fs::write(
        &file,
        request("photo\u{1b}[31mpro\u{9b}2J\u{202e}gpj\u{7}", "NO-SUCH-KEY"),
    )
    .unwrap();
    let out = portal(&data, &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_no_raw(&out.stdout, "stdout");
    assert_no_raw(&out.stderr, "stderr");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "REFUSED  {}  unknown-license: no license matches this license key or user for \
             product 'photo\\u{{1b}}[31mpro\\u{{9b}}2J\\u{{202e}}gpj\\u{{7}}'\n",
            file.display()
        )
    );
}

#[test]
fn an_error_quoting_a_crafted_id_is_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    ok(&data, &["init"]);
    let out = portal(
        &data,
        &["activation", "show", "act_\u{1b}]0;x\u{7}\u{202e}"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_no_raw(&out.stdout, "stdout");
    assert_no_raw(&out.stderr, "stderr");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: ") && stderr.contains("act_\\u{1b}]0;x\\u{7}\\u{202e}"),
        "{stderr}"
    );
}

// ----- permissions ---------------------------------------------------------------------------

/// `lic-portal --data DATA ARGS…` run with umask 000, as a careless service manager
/// might start it.
#[cfg(unix)]
fn portal_umask_000(data: &Path, args: &[&str]) -> Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_lic-portal"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .output()
        .unwrap();
    assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
    out
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn the_data_keys_and_database_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("srv/portal");
    portal_umask_000(&data, &["init"]);
    // A command that writes (the database goes through its write-ahead log).
    portal_umask_000(
        &data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    portal_umask_000(&data, &["key", "rotate"]);

    assert_eq!(mode(&data), 0o700, "data directory");
    assert_eq!(mode(&data.join("keys")), 0o700, "key directory");
    let keys: Vec<_> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        assert!(key.to_string_lossy().ends_with(".key.pem"), "{key:?}");
        assert_eq!(mode(key), 0o600, "{key:?}");
    }
    assert_eq!(mode(&data.join("portal.db")), 0o600, "portal.db");
    for side in ["portal.db-wal", "portal.db-shm"] {
        let path = data.join(side);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{side}");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_database_named_by_url_is_created_private_whatever_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = dir.path().join("elsewhere.db");
    let url = format!("sqlite://{}", db.display());
    portal_umask_000(&data, &["--database", &url, "init"]);
    assert_eq!(mode(&db), 0o600);
    assert_eq!(mode(&data.join("keys")), 0o700);
}

// ----- apply --out-dir -----------------------------------------------------------------------

/// A portal with product `photo-pro` and a one-seat license of it: the license key.
fn one_seat_license(data: &Path) -> String {
    ok(data, &["init"]);
    ok(
        data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let out = ok(
        data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "std",
        ],
    );
    let policy = out.split_whitespace().nth(2).unwrap().to_string();
    let created: serde_json::Value = serde_json::from_str(&ok(
        data,
        &["--format", "json", "license", "create", "--policy", &policy],
    ))
    .unwrap();
    created["key"].as_str().unwrap().to_string()
}

fn seats_used(data: &Path) -> i64 {
    let list: serde_json::Value =
        serde_json::from_str(&ok(data, &["--format", "json", "license", "list"])).unwrap();
    list["items"][0]["seats_used"].as_i64().unwrap()
}

#[test]
fn apply_creates_a_missing_out_dir_and_writes_the_response_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let key = one_seat_license(&data);
    let file = dir.path().join("machine1.req");
    std::fs::write(&file, request("photo-pro", &key)).unwrap();
    let out_dir = dir.path().join("out/today");
    let out = portal(
        &data,
        &[
            "apply",
            "--out-dir",
            out_dir.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let license = std::fs::read_to_string(out_dir.join("machine1.lic")).unwrap();
    assert!(
        license.starts_with("-----BEGIN LIC LICENSE-----"),
        "{license}"
    );
    #[cfg(unix)]
    for d in [dir.path().join("out"), out_dir] {
        assert_eq!(mode(&d), 0o755, "{}", d.display());
    }
    assert_eq!(seats_used(&data), 1);
}

#[test]
fn apply_refuses_everything_when_the_out_dir_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let key = one_seat_license(&data);
    let file = dir.path().join("machine1.req");
    std::fs::write(&file, request("photo-pro", &key)).unwrap();
    // Under a regular file: no one can create that directory, not even root.
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out_dir = blocker.join("out");
    let out = portal(
        &data,
        &[
            "apply",
            "--out-dir",
            out_dir.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "error: cannot create the output directory {}; nothing was applied",
            out_dir.display()
        )) && stderr.contains("--out-dir"),
        "{stderr}"
    );
    assert_eq!(seats_used(&data), 0, "nothing was applied");
    assert!(!dir.path().join("machine1.lic").exists());
}

// ----- the audit actor --------------------------------------------------------------------

#[cfg(unix)]
#[test]
fn without_user_or_logname_the_audit_names_the_system_user() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
            .arg("--data")
            .arg(&data)
            .args(args)
            .env_remove("LIC_PORTAL_DATABASE")
            .env_remove("LIC_PORTAL_KEYS")
            .env_remove("USER")
            .env_remove("LOGNAME")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["init"]);
    run(&["product", "create", "photo-pro", "--name", "Photo Pro"]);
    // What the system calls this user, asked another way.
    let id = |flag: &str| {
        let out = Command::new("id").arg(flag).output().unwrap();
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    };
    let expected = match id("-un") {
        Some(name) => format!("cli:{name}"),
        None => format!("cli:uid:{}", id("-u").unwrap()),
    };
    let audit = run(&["audit", "--subject", "photo-pro"]);
    assert!(
        audit.contains(&format!("  {expected}  product.create")),
        "{expected}: {audit}"
    );
    assert!(!audit.contains("cli:unknown"), "{audit}");
}

// ----- mistyped license keys ----------------------------------------------------------------

#[test]
fn a_request_with_a_mistyped_key_is_refused_naming_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let key = one_seat_license(&data);
    // The third character of group 2 typed wrong (a lic that does not check keys yet).
    let mut typo: Vec<char> = key.chars().collect();
    typo[8] = if typo[8] == 'X' { 'Y' } else { 'X' };
    let typo: String = typo.into_iter().collect();
    let file = dir.path().join("typo.req");
    std::fs::write(&file, request("photo-pro", &typo)).unwrap();
    let out = portal(&data, &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("unknown-license")
            && stdout.contains("the key looks mistyped: group 2 of the license key"),
        "{stdout}"
    );
    // A key of another shape is refused as before, with nothing about groups.
    std::fs::write(&file, request("photo-pro", "NO-SUCH-KEY")).unwrap();
    let out = portal(&data, &["apply", file.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains("mistyped"), "{stdout}");
}

#[test]
fn list_prints_where_the_next_page_starts_and_pages_walk_every_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    ok(&data, &["init"]);
    for i in 0..5 {
        ok(
            &data,
            &["product", "create", &format!("p-{i}"), "--name", "P"],
        );
    }
    // Text: one line per product on standard output; where the next page starts on
    // standard error, as the option to give.
    let mut seen = Vec::new();
    let mut args = vec![
        "product".to_string(),
        "list".into(),
        "--limit".into(),
        "2".into(),
    ];
    loop {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = portal(&data, &argv);
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        seen.extend(
            stdout
                .lines()
                .map(|l| l.split_whitespace().next().unwrap().to_string()),
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        let Some(after) = stderr
            .split_once("--after ")
            .map(|(_, rest)| rest.split_whitespace().next().unwrap().to_string())
        else {
            assert!(stderr.is_empty(), "{stderr}");
            break;
        };
        assert!(stderr.starts_with("more: "), "{stderr}");
        args.truncate(4);
        args.extend(["--after".into(), after]);
    }
    assert_eq!(seen, ["p-0", "p-1", "p-2", "p-3", "p-4"]);

    // Out of range, a bad cursor: an error that says what to give, status 2.
    for (args, words) in [
        (
            &["product", "list", "--limit", "1001"][..],
            "give 1 to 1000",
        ),
        (&["audit", "--limit", "0"][..], "give 1 to 1000"),
        (
            &["product", "list", "--after", "xyz"][..],
            "not a cursor this portal gave out for the products list",
        ),
    ] {
        let out = portal(&data, args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(words), "{args:?}: {stderr}");
        assert!(stderr.contains("what to do:"), "{stderr}");
    }
}

// ----- pools -------------------------------------------------------------------------------

/// An on-premise floating server's request for a pool of `seats`, signed with `key`.
fn pool_request(license_key: &str, seats: u32, key: &SecretKey) -> String {
    let request = ActivationRequest {
        pool_seats: Some(seats),
        product: "photo-pro".into(),
        credential: Credential::LicenseKey(license_key.into()),
        fingerprint: [("machine-id".to_string(), Bytes32(key.public().to_bytes()))].into(),
        nonce: Nonce([2; 16]),
        created: chrono::Utc::now(),
        client: "lic 0.1.0".into(),
        journal: JournalHead::first(),
        variables: Default::default(),
    };
    format::sign(&request, key).unwrap().armored()
}

#[test]
fn staff_see_a_pool_and_refresh_its_seats_at_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    ok(&data, &["init"]);
    ok(
        &data,
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
    let out = ok(
        &data,
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "site",
            "--seats",
            "10",
            "--floating",
        ],
    );
    let policy = out.split_whitespace().nth(2).unwrap().to_string();
    let created: serde_json::Value = serde_json::from_str(&ok(
        &data,
        &["--format", "json", "license", "create", "--policy", &policy],
    ))
    .unwrap();
    let key = created["key"].as_str().unwrap();
    let file = dir.path().join("server.req");
    std::fs::write(&file, pool_request(key, 4, &SecretKey::generate())).unwrap();
    let out_dir = dir.path().join("out");
    ok(
        &data,
        &[
            "apply",
            file.to_str().unwrap(),
            "--out-dir",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(seats_used(&data), 4);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&data, &["--format", "json", "activation", "list"])).unwrap();
    let act = listed["items"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed["items"][0]["pool_seats"], 4, "{listed}");
    let shown = ok(&data, &["activation", "show", &act]);
    assert!(shown.contains("pool: 4 seat(s)"), "{shown}");

    let refresh = dir.path().join("pool.refresh.lic");
    ok(
        &data,
        &[
            "refresh",
            "--activation",
            &act,
            "--seats",
            "6",
            "--reason",
            "order 4711",
            "--out",
            refresh.to_str().unwrap(),
        ],
    );
    assert_eq!(seats_used(&data), 6);
    let too_many = portal(
        &data,
        &[
            "refresh",
            "--activation",
            &act,
            "--seats",
            "11",
            "--reason",
            "order 4712",
            "--out",
            dir.path().join("no.lic").to_str().unwrap(),
        ],
    );
    assert!(!too_many.status.success());
    let stderr = String::from_utf8_lossy(&too_many.stderr);
    assert!(stderr.contains("no-seat"), "{stderr}");
    assert_eq!(seats_used(&data), 6);
}
