//! `--format json` on every `lic-portal` command (docs/json-output.md): each prints one
//! document `{"format": 1, …}` with its documented members, on every backend; errors are one
//! JSON line on standard error. The commands are read from the binary's own `--help`, so
//! a command added without a case here fails `every_command_has_a_json_case`.
//! `serve` is run for real: its first line of standard output says where it listens.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{TestDb, backends};
use serde_json::Value;

/// Long-running commands, covered by their own tests below (`serve`), or by the lead's
/// (`demo`, which prints its instructions as text).
const NOT_A_DOCUMENT: [&str; 2] = ["serve", "demo"];

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
    cmd.env_remove("LIC_PORTAL_DATA")
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .env("COLUMNS", "200");
    cmd
}

/// The subcommands listed under "Commands:" in `lic-portal PATH --help`.
fn subcommands(path: &[String]) -> Vec<String> {
    let out = bin().args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help: {out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line starts with two spaces; wrapped descriptions with more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command that does something: the leaves of the command tree, as "key rotate".
fn leaves() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let children = subcommands(&path);
        if children.is_empty() {
            out.insert(path.join(" "));
        }
        for child in children {
            let mut p = path.clone();
            p.push(child);
            todo.push(p);
        }
    }
    out
}

/// The portal on one backend, run with `--format json`.
struct Portal<'a> {
    db: &'a TestDb,
    /// Each command case that ran, with the members its document was checked for.
    covered: BTreeMap<String, Vec<&'static str>>,
}

impl Portal<'_> {
    fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--data")
            .arg(self.db.dir.path())
            .arg("--database")
            .arg(&self.db.url)
            .arg("--keys")
            .arg(self.db.keys_dir())
            .args(["--format", "json"])
            .args(args)
            .env("USER", "json-test")
            .output()
            .unwrap()
    }

    /// Run `args` (whose command is `command`), expect success and one document of shape
    /// version 1 with at least `members`; record the case.
    #[track_caller]
    fn doc(&mut self, command: &str, args: &[&str], members: &[&'static str]) -> Value {
        let out = self.run(args);
        self.check(command, args, members, out, true)
    }

    /// Like [`Portal::doc`], for a command that reads `input` on standard input (a
    /// password).
    #[track_caller]
    fn doc_input(
        &mut self,
        command: &str,
        args: &[&str],
        input: &str,
        members: &[&'static str],
    ) -> Value {
        use std::io::Write as _;
        let mut child = bin()
            .arg("--data")
            .arg(self.db.dir.path())
            .arg("--database")
            .arg(&self.db.url)
            .arg("--keys")
            .arg(self.db.keys_dir())
            .args(["--format", "json"])
            .args(args)
            .env("USER", "json-test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        self.check(command, args, members, out, true)
    }

    /// Like [`Portal::doc`], for a command that reports some refusal in its document with
    /// exit status 1.
    #[track_caller]
    fn doc_status_1(&mut self, command: &str, args: &[&str], members: &[&'static str]) -> Value {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        self.check(command, args, members, out, false)
    }

    #[track_caller]
    fn check(
        &mut self,
        command: &str,
        args: &[&str],
        members: &[&'static str],
        out: Output,
        success: bool,
    ) -> Value {
        let what = format!("{} {command}: {args:?}", self.db.name);
        if success {
            assert!(out.status.success(), "{what}: {out:?}");
        }
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: not one JSON document ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        let obj = doc.as_object().unwrap_or_else(|| panic!("{what}: {doc}"));
        // The version comes first, so a reader can look before reading the rest.
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.trim_start()
                .strip_prefix('{')
                .is_some_and(|rest| rest.trim_start().starts_with("\"format\": 1,")),
            "{what}: {text}"
        );
        assert_eq!(doc["format"], 1, "{what}");
        for m in members {
            assert!(obj.contains_key(*m), "{what}: no '{m}' in {doc}");
        }
        if obj.contains_key("items") {
            assert!(doc["items"].is_array(), "{what}: {doc}");
        }
        self.covered.insert(command.to_string(), members.to_vec());
        doc
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

/// An armored activation request from a new device with its store in `dir`.
fn request(dir: &Path, key: &str) -> PathBuf {
    let file = dir.join("device.req");
    std::fs::write(&file, common::request(dir, "machine", key)).unwrap();
    file
}

/// Walk every command on `db`; returns the commands covered.
fn walk(db: &TestDb) -> BTreeSet<String> {
    let mut p = Portal {
        db,
        covered: BTreeMap::new(),
    };
    let work = tempfile::tempdir().unwrap();
    let w = |name: &str| work.path().join(name).display().to_string();

    p.doc("init", &["init"], &["database", "vendor_key", "keys_dir"]);
    let product = p.doc(
        "product create",
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
        &["product"],
    );
    assert_eq!(product["product"]["code"], "photo-pro");
    let list = p.doc("product list", &["product", "list"], &["items", "next"]);
    assert_eq!(list["items"][0]["code"], "photo-pro");
    assert!(list["next"].is_null(), "{list}");
    p.doc(
        "product show",
        &["product", "show", "photo-pro"],
        &["product"],
    );

    let policy = p.doc(
        "policy create",
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "std",
            "--seats",
            "2",
            "--feature",
            "render-minutes=100",
        ],
        &["policy"],
    );
    let policy = s(&policy["policy"]["id"]);
    let list = p.doc(
        "policy list",
        &["policy", "list", "--product", "photo-pro", "--limit", "10"],
        &["items", "next"],
    );
    assert_eq!(s(&list["items"][0]["id"]), policy);
    let shown = p.doc("policy show", &["policy", "show", &policy], &["policy"]);
    assert_eq!(shown["policy"]["seats"], 2);
    assert_eq!(shown["policy"]["floating"], false);
    // A floating policy, its reclamation enabled later, and a reclamation run.
    let floating = p.doc(
        "policy create",
        &[
            "policy",
            "create",
            "--product",
            "photo-pro",
            "--name",
            "office",
            "--seats",
            "3",
            "--floating",
            "--lease-secs",
            "300",
            "--max-checkout-hours",
            "24",
            "--feature",
            "render:floating=1",
        ],
        &["policy"],
    );
    assert_eq!(floating["policy"]["floating"], true);
    assert_eq!(floating["policy"]["lease_secs"], 300);
    assert_eq!(floating["policy"]["features"]["render"]["floating"], 1);
    let edited = p.doc(
        "policy edit",
        &[
            "policy",
            "edit",
            s(&floating["policy"]["id"]).as_str(),
            "--reclaim",
            "true",
            "--inactivity-secs",
            "3600",
            "--reason",
            "reclaim idle seats",
        ],
        &["policy"],
    );
    assert_eq!(edited["policy"]["reclaim"], true);
    assert!(edited["policy"]["reclaim_since"].is_i64());
    let reclaimed = p.doc(
        "reclaim",
        &["reclaim", "--dry-run"],
        &["dry_run", "at", "seats"],
    );
    assert_eq!(reclaimed["seats"], serde_json::json!([]));

    let created = p.doc(
        "license create",
        &[
            "license",
            "create",
            "--policy",
            &policy,
            "--customer",
            "ACME Inc.",
        ],
        &["license", "key"],
    );
    assert_eq!(created["license"]["customer"], "ACME Inc.");
    let license = s(&created["license"]["id"]);
    let key = s(&created["key"]);
    lic_core::license_key::check(&key).unwrap();
    // A second license (no customer), to page through two.
    p.doc(
        "license create",
        &["license", "create", "--policy", &policy],
        &["license", "key"],
    );
    let first = p.doc(
        "license list",
        &["license", "list", "--limit", "1"],
        &["items", "next"],
    );
    let second = p.doc(
        "license list",
        &[
            "license",
            "list",
            "--limit",
            "1",
            "--after",
            &s(&first["next"]),
        ],
        &["items", "next"],
    );
    assert!(second["next"].is_null(), "{second}");
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    let acme = p.doc(
        "license list",
        &[
            "license",
            "list",
            "--customer",
            "ACME Inc.",
            "--status",
            "active",
            "--product",
            "photo-pro",
        ],
        &["items", "next"],
    );
    assert_eq!(acme["items"].as_array().unwrap().len(), 1, "{acme}");
    assert_eq!(s(&acme["items"][0]["id"]), license);
    p.doc("license show", &["license", "show", &license], &["license"]);

    // Two devices: one deactivated on the server, one that deactivates itself.
    let device_a = tempfile::tempdir().unwrap();
    let device_b = tempfile::tempdir().unwrap();
    // Device a sets variables before it asks; one would reach a terminal as an escape.
    let on_a = common::device(device_a.path(), "machine", lic_core::keys::Keyring::new());
    on_a.set_variable("site", "Lab 2").unwrap();
    on_a.set_variable("note", "\u{1b}[31mred").unwrap();
    let req_a = request(device_a.path(), &key);
    let req_b = request(device_b.path(), &key);
    let applied = p.doc(
        "apply",
        &[
            "apply",
            "--out-dir",
            &w("out"),
            req_a.to_str().unwrap(),
            req_b.to_str().unwrap(),
        ],
        &["items", "applied", "refused", "not_written"],
    );
    assert_eq!(applied["applied"], 2, "{applied}");
    let item = &applied["items"][0];
    assert_eq!(item["status"], "ok");
    assert_eq!(item["response_kind"], "license");
    let activation_a = s(&item["activation"]);
    let activation_b = s(&applied["items"][1]["activation"]);
    let license_file = s(&item["response_file"]);

    let list = p.doc(
        "activation list",
        &[
            "activation",
            "list",
            "--license",
            &license,
            "--product",
            "photo-pro",
            "--state",
            "active",
            "--customer",
            "ACME Inc.",
            "--limit",
            "1",
        ],
        &["items", "next"],
    );
    let next = s(&list["next"]);
    let rest = p.doc(
        "activation list",
        &["activation", "list", "--limit", "1", "--after", &next],
        &["items", "next"],
    );
    assert!(rest["next"].is_null(), "{rest}");
    let mut both = vec![s(&list["items"][0]["id"]), s(&rest["items"][0]["id"])];
    both.sort();
    let mut applied_ids = vec![activation_a.clone(), activation_b.clone()];
    applied_ids.sort();
    assert_eq!(both, applied_ids);
    let shown = p.doc(
        "activation show",
        &["activation", "show", &activation_a],
        &["activation"],
    );
    assert_eq!(shown["activation"]["state"], "active");
    assert_eq!(
        shown["activation"]["variables"],
        serde_json::json!({"note": "\u{1b}[31mred", "site": "Lab 2"})
    );
    // In text, under the activation's line, escaped.
    let text = bin()
        .arg("--data")
        .arg(db.dir.path())
        .arg("--database")
        .arg(&db.url)
        .arg("--keys")
        .arg(db.keys_dir())
        .args(["activation", "show", &activation_a])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("    site = Lab 2\n"), "{text}");
    assert!(text.contains("    note = \\u{1b}[31mred\n"), "{text}");
    let resigned = p.doc(
        "activation resign",
        &[
            "activation",
            "resign",
            &activation_a,
            "--out-dir",
            &w("resigned"),
        ],
        &["items", "failed"],
    );
    assert_eq!(resigned["items"][0]["activation"], activation_a.as_str());
    let refreshed = p.doc(
        "refresh",
        &[
            "refresh",
            "--activation",
            &activation_a,
            "--reason",
            "ticket 1",
            "--extend-days",
            "1",
            "--out",
            &w("a.refresh.lic"),
        ],
        &["activation", "out", "refresh"],
    );
    assert!(s(&refreshed["refresh"]).starts_with("-----BEGIN LIC REFRESH-----"));

    // An edit of the license; its two devices are then out of date, and refreshed in bulk.
    let edited = p.doc(
        "license edit",
        &[
            "license",
            "edit",
            &license,
            "--seats",
            "3",
            "--feature",
            "render-minutes=200+",
            "--reason",
            "upgrade",
        ],
        &["license", "changes", "outdated"],
    );
    assert_eq!(edited["license"]["seats"], 3, "{edited}");
    assert_eq!(edited["license"]["revision"], 1, "{edited}");
    assert_eq!(edited["changes"][0]["field"], "seats", "{edited}");
    assert_eq!(edited["changes"][0]["before"], 2, "{edited}");
    assert_eq!(edited["outdated"], 2, "{edited}");
    let outdated = p.doc(
        "license outdated",
        &["license", "outdated", &license],
        &["license", "items"],
    );
    assert_eq!(outdated["items"].as_array().unwrap().len(), 2, "{outdated}");
    assert_eq!(outdated["items"][0]["differs"][0], "features", "{outdated}");
    let bulk = p.doc(
        "refresh",
        &[
            "refresh",
            "--license",
            &license,
            "--all-outdated",
            "--out-dir",
            &w("bulk"),
            "--reason",
            "upgrade",
        ],
        &["license", "items", "failed", "up_to_date"],
    );
    assert_eq!(bulk["items"].as_array().unwrap().len(), 2, "{bulk}");
    for item in bulk["items"].as_array().unwrap() {
        let text = std::fs::read_to_string(s(&item["out"])).unwrap();
        assert!(text.starts_with("-----BEGIN LIC REFRESH-----"), "{item}");
    }
    let closed = p.doc(
        "activation deactivate",
        &[
            "activation",
            "deactivate",
            &activation_b,
            "--reason",
            "lost",
        ],
        &["activation"],
    );
    assert_eq!(closed["activation"]["state"], "deactivated");

    // Device A installs its license and deactivates; the receipt says what it is.
    let trust = p.doc("key export", &["key", "export"], &["keys", "pem", "out"]);
    let ring = lic_core::keys::Keyring::from_pem(&s(&trust["pem"])).unwrap();
    let device = common::device(device_a.path(), "machine", ring);
    device
        .install(&std::fs::read(&license_file).unwrap())
        .unwrap();
    device.consume("render-minutes", 7).unwrap();
    let deactivation = work.path().join("a.deact");
    std::fs::write(&deactivation, device.deactivate().unwrap().armored()).unwrap();
    // From standard input: the receipt in the document, not before it.
    let out = {
        let mut child = bin()
            .arg("--data")
            .arg(db.dir.path())
            .arg("--database")
            .arg(&db.url)
            .arg("--keys")
            .arg(db.keys_dir())
            .args(["--format", "json", "apply", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(&std::fs::read(&deactivation).unwrap())
            .unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let item = &doc["items"][0];
    assert_eq!(item["kind"], "deactivation", "{doc}");
    assert_eq!(item["response_file"], Value::Null);
    assert!(s(&item["response"]).starts_with("-----BEGIN LIC RECEIPT-----"));
    let note = s(&item["note"]);
    assert!(
        note.contains(&activation_a)
            && note.contains("render-minutes=7")
            && note.contains("nothing needs to be installed"),
        "{note}"
    );
    // A refused file: in the document, exit status 1.
    let refused = p.doc_status_1(
        "apply",
        &["apply", req_a.to_str().unwrap(), "no-such-file.req"],
        &["items", "applied", "refused", "not_written"],
    );
    assert_eq!(refused["refused"], 1, "{refused}");
    assert_eq!(refused["items"][1]["status"], "refused");
    assert_eq!(refused["items"][1]["error"]["code"], "error");

    // Keys.
    let old = s(&p.doc("key list", &["key", "list"], &["items"])["items"][0]["kid"]);
    let rotated = p.doc("key rotate", &["key", "rotate"], &["key", "key_set"]);
    assert_eq!(rotated["key"]["active"], true);
    let set = p.doc(
        "key keyset",
        &["key", "keyset", "--out", &w("set.keys")],
        &["key_set", "out"],
    );
    assert!(s(&set["key_set"]["file"]).contains("BEGIN LIC KEY SET"));
    let revoked = p.doc(
        "key revoke",
        &["key", "revoke", &old, "--reason", "leaked"],
        &["revoked", "key_set", "out"],
    );
    assert_eq!(revoked["revoked"], old.as_str());
    let generated = p.doc(
        "key generate",
        &["key", "generate", "--out", &w("new.key.pem")],
        &["kid", "out"],
    );
    assert!(generated["kid"].is_string());

    // Tokens.
    let token = p.doc(
        "token create",
        &["token", "create", "--name", "ci", "--role", "read-only"],
        &["token", "secret"],
    );
    assert!(s(&token["secret"]).starts_with("lict_"));
    let id = s(&token["token"]["id"]);
    p.doc("token list", &["token", "list"], &["items"]);
    let revoked = p.doc("token revoke", &["token", "revoke", &id], &["token"]);
    assert!(revoked["token"]["revoked"].is_i64(), "{revoked}");

    // Accounts for the pages: passwords on standard input, never in the output.
    let password = "a long enough password\n";
    let staff = p.doc_input(
        "staff add",
        &["staff", "add", "--name", "sam", "--role", "support"],
        password,
        &["staff"],
    );
    assert_eq!(staff["staff"]["role"], "support");
    assert!(!staff.to_string().contains("a long enough password"));
    p.doc_input(
        "staff password",
        &["staff", "password", "--name", "sam"],
        password,
        &["staff"],
    );
    let disabled = p.doc(
        "staff disable",
        &["staff", "disable", "--name", "sam"],
        &["staff"],
    );
    assert!(disabled["staff"]["disabled"].is_i64(), "{disabled}");
    p.doc("staff list", &["staff", "list"], &["items"]);
    p.doc_input(
        "user set-password",
        &["user", "set-password", "--user", "ann@example.com"],
        password,
        &["user", "password_set"],
    );

    let revoked = p.doc(
        "license revoke",
        &["license", "revoke", &license, "--reason", "chargeback"],
        &["license"],
    );
    assert_eq!(revoked["license"]["status"], "revoked");
    let page = p.doc("audit", &["audit", "--limit", "2"], &["items", "next"]);
    let after = p.doc(
        "audit",
        &["audit", "--limit", "2", "--after", &s(&page["next"])],
        &["items", "next"],
    );
    assert_ne!(page["items"][1]["id"], after["items"][0]["id"]);
    let audit = p.doc("audit", &["audit", "--limit", "1000"], &["items", "next"]);
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == "cli:json-test" && e["action"] == "license.revoke"),
        "{audit}"
    );

    // Errors: one JSON line on standard error, nothing on standard output, status 2.
    for (args, code) in [
        (&["license", "show", "lic_nope"][..], "not-found"),
        (&["license", "list", "--limit", "0"][..], "invalid"),
        (
            &["activation", "list", "--after", "bogus"][..],
            "invalid-cursor",
        ),
        (&["license", "list", "--status", "expired"][..], "usage"),
        (&["license", "show"][..], "usage"),
        (
            &[
                "license", "edit", "lic_nope", "--seats", "2", "--reason", "x",
            ][..],
            "not-found",
        ),
        (
            &["policy", "create", "--product", "nope", "--name", "x"][..],
            "not-found",
        ),
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let err: Value = serde_json::from_str(&stderr).unwrap();
        assert_eq!(err["format"], 1);
        assert_eq!(err["error"]["code"], code, "{args:?}: {stderr}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(err["error"]["hint"].as_str().is_some_and(|h| !h.is_empty()));
        if code == "usage" && args.contains(&"show") {
            // clap's report names what is missing.
            assert!(s(&err["error"]["message"]).contains("<ID>"), "{stderr}");
        } else if args.contains(&"expired") {
            // … or what it takes.
            assert!(
                s(&err["error"]["message"])
                    .contains("[possible values: active, suspended, revoked]"),
                "{stderr}"
            );
        } else if code == "invalid" {
            assert!(
                s(&err["error"]["message"]).contains("give 1 to 1000"),
                "{stderr}"
            );
        } else if code == "invalid-cursor" {
            assert!(
                s(&err["error"]["message"]).contains("for the activations list"),
                "{stderr}"
            );
        }
    }

    p.covered.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_has_a_json_case() {
    let commands = leaves();
    // The walk of the tree found the commands (a change in clap's help would show here).
    for known in [
        "init",
        "apply",
        "key rotate",
        "token revoke",
        "activation resign",
    ] {
        assert!(commands.contains(known), "{known} not in {commands:?}");
    }
    let expected: BTreeSet<String> = commands
        .iter()
        .filter(|c| !NOT_A_DOCUMENT.contains(&c.as_str()))
        .cloned()
        .collect();
    for db in backends().await {
        let covered = tokio::task::spawn_blocking({
            let db = std::sync::Arc::new(db);
            move || walk(&db)
        })
        .await
        .unwrap();
        assert_eq!(
            covered, expected,
            "every lic-portal command needs a --format json case here (and a section in \
             docs/json-output.md)"
        );
    }
}

#[test]
fn every_command_is_documented_in_json_output_md() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/json-output.md"
    ))
    .unwrap();
    for command in leaves() {
        let heading = format!("`{command}`");
        assert!(
            doc.lines()
                .any(|l| l.starts_with("### ") && l.contains(&heading)),
            "docs/json-output.md has no section for {heading}"
        );
    }
}

// ----- serve ---------------------------------------------------------------------------------

/// `serve --listen 127.0.0.1:0` (with `extra` arguments) on a fresh portal, its standard
/// error going to `log`; returns the child and its first line of standard output.
fn serve(data: &Path, log: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let init = bin().arg("--data").arg(data).arg("init").output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut child = bin()
        .arg("--data")
        .arg(data)
        .args(extra)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("NO_COLOR")
        .env("LIC_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    (child, first)
}

/// GET `path` from `addr` (host:port); the status line and body.
fn get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// SIGTERM, as a service manager stops it, and wait for the exit (the log is complete).
fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[cfg(unix)]
#[test]
fn serve_prints_where_it_listens_and_logs_to_a_file_without_colour() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (child, first) = serve(&dir.path().join("portal"), &log, &[]);
    let addr = first
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix("listening on http://"))
        .unwrap_or_else(|| panic!("{first:?}"));
    assert_ne!(addr, "127.0.0.1:0", "the port bound, not the one asked for");
    let response = get(addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(r#"{"status":"ok"}"#), "{response}");
    stop(child);
    let log = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&log);
    assert!(text.contains("path=/healthz"), "{text}");
    assert!(
        !log.windows(2).any(|w| w == b"\x1b["),
        "ANSI escapes in a log file: {text:?}"
    );
}

#[cfg(unix)]
#[test]
fn serve_with_format_json_prints_a_json_line_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let (child, first) = serve(&dir.path().join("portal"), &log, &["--format", "json"]);
    assert!(first.starts_with(r#"{"format":1,"#), "{first:?}");
    let doc: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(doc["format"], 1, "{first}");
    let url = s(&doc["listening"]);
    let addr = url.strip_prefix("http://").unwrap();
    let response = get(addr, "/healthz");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    stop(child);
}
