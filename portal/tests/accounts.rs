//! Accounts for the portal's pages, on SQLite and PostgreSQL: staff and end-user
//! passwords (Argon2id, never stored in clear), sessions stored hashed, ended by
//! sign-out, by a new password, by disabling the account and by time; and the
//! `lic-portal staff` / `lic-portal user` commands.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use lic_portal::accounts::{self, SessionKind};
use lic_portal::auth::Role;
use lic_portal::db::Db;
use lic_portal::{Actor, PortalError};

const PASSWORD: &str = "correct horse battery";

async fn db(test: &common::TestDb) -> Db {
    let db = Db::connect(&test.url).await.unwrap();
    lic_portal::Portal::init(&db, &test.keys_dir())
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn staff_sign_in_checks_the_password_and_the_account() {
    for test in common::backends().await {
        let db = db(&test).await;
        let actor = Actor::cli();
        let alice = accounts::create_staff(
            &db,
            "alice",
            Role::Support,
            Some(vec!["photo-pro".into()]),
            PASSWORD,
            1000,
            &actor,
        )
        .await
        .unwrap();
        assert_eq!(alice.principal().role, Role::Support);
        assert!(alice.principal().sees("photo-pro") && !alice.principal().sees("video-pro"));

        // The database holds an Argon2id hash, not the password.
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM staff")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{}: {stored}", test.name);
        assert!(!stored.contains(PASSWORD));

        let signed = accounts::staff_sign_in(&db, "alice", PASSWORD)
            .await
            .unwrap();
        assert_eq!(signed, alice);
        // A wrong password and an unknown name get the same answer.
        for (name, password) in [("alice", "wrong password!"), ("bob", PASSWORD)] {
            let e = accounts::staff_sign_in(&db, name, password)
                .await
                .unwrap_err();
            assert!(matches!(e, PortalError::SignInFailed), "{}: {e}", test.name);
        }
        // A second account with the same name is refused; so is a short password.
        let e = accounts::create_staff(&db, "alice", Role::Admin, None, PASSWORD, 1000, &actor)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "already-exists", "{}", test.name);
        let e = accounts::create_staff(&db, "carol", Role::Admin, None, "short", 1000, &actor)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid", "{}", test.name);

        // Disabled: no sign-in, even with the right password; a new password enables it.
        accounts::disable_staff(&db, "alice", 2000, &actor)
            .await
            .unwrap();
        let e = accounts::staff_sign_in(&db, "alice", PASSWORD)
            .await
            .unwrap_err();
        assert!(matches!(e, PortalError::SignInFailed), "{}", test.name);
        accounts::set_staff_password(&db, "alice", "another good one", 3000, &actor)
            .await
            .unwrap();
        assert!(
            accounts::staff_sign_in(&db, "alice", PASSWORD)
                .await
                .is_err()
        );
        accounts::staff_sign_in(&db, "alice", "another good one")
            .await
            .unwrap();

        // Every change is audited, without the password.
        let audit: Vec<String> = sqlx::query_scalar(
            "SELECT action FROM audit WHERE action LIKE 'staff.%' ORDER BY at, action",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        assert_eq!(
            audit,
            ["staff.create", "staff.disable", "staff.password"],
            "{}",
            test.name
        );
        let details: Vec<Option<String>> = sqlx::query_scalar("SELECT detail FROM audit")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert!(details.iter().flatten().all(|d| !d.contains(PASSWORD)));
    }
}

#[tokio::test]
async fn sessions_end_at_sign_out_new_password_disabling_and_time() {
    for test in common::backends().await {
        let db = db(&test).await;
        let actor = Actor::cli();
        let staff = accounts::create_staff(&db, "alice", Role::Admin, None, PASSWORD, 0, &actor)
            .await
            .unwrap();
        let now = 1_000_000;

        // Stored hashed: the cookie's secret is not in the database.
        let s = accounts::start_session(&db, SessionKind::Staff, &staff.id, now)
            .await
            .unwrap();
        let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM web_sessions")
            .fetch_all(db.pool())
            .await
            .unwrap();
        assert!(!stored.iter().any(|h| h == s.secret.as_str()));
        assert!(
            !format!("{s:?}").contains(s.secret.as_str()),
            "Debug shows no secret"
        );

        let (found, session) = accounts::staff_session(&db, &s.secret, now + 1)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, staff.id);
        assert_eq!(session.csrf, s.csrf);
        // Not a user's session, however it is asked for.
        assert!(
            accounts::session(&db, SessionKind::User, &s.secret, now)
                .await
                .unwrap()
                .is_none()
        );
        // It ends with time.
        let end = now + SessionKind::Staff.lifetime_secs();
        assert!(
            accounts::staff_session(&db, &s.secret, end)
                .await
                .unwrap()
                .is_none(),
            "{}",
            test.name
        );
        // At sign-out.
        let s = accounts::start_session(&db, SessionKind::Staff, &staff.id, now)
            .await
            .unwrap();
        accounts::end_session(&db, &s.secret).await.unwrap();
        assert!(
            accounts::staff_session(&db, &s.secret, now)
                .await
                .unwrap()
                .is_none()
        );
        // When the account is disabled, and when its password changes.
        let s = accounts::start_session(&db, SessionKind::Staff, &staff.id, now)
            .await
            .unwrap();
        accounts::disable_staff(&db, "alice", now, &actor)
            .await
            .unwrap();
        assert!(
            accounts::staff_session(&db, &s.secret, now)
                .await
                .unwrap()
                .is_none()
        );
        accounts::set_staff_password(&db, "alice", "a new password", now, &actor)
            .await
            .unwrap();
        let s = accounts::start_session(&db, SessionKind::Staff, &staff.id, now)
            .await
            .unwrap();
        accounts::set_staff_password(&db, "alice", "yet another one", now, &actor)
            .await
            .unwrap();
        assert!(
            accounts::staff_session(&db, &s.secret, now)
                .await
                .unwrap()
                .is_none(),
            "{}",
            test.name
        );
        // A made-up cookie finds nothing.
        assert!(
            accounts::staff_session(&db, &"ab".repeat(32), now)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn end_users_sign_in_once_staff_set_their_password() {
    for test in common::backends().await {
        let db = db(&test).await;
        let actor = Actor::cli();
        assert!(
            !accounts::user_has_password(&db, "ann@example.com")
                .await
                .unwrap()
        );
        let e = accounts::user_sign_in(&db, "ann@example.com", PASSWORD)
            .await
            .unwrap_err();
        assert!(matches!(e, PortalError::SignInFailed));

        accounts::set_user_password(&db, "ann@example.com", PASSWORD, 10, &actor)
            .await
            .unwrap();
        assert!(
            accounts::user_has_password(&db, "ann@example.com")
                .await
                .unwrap()
        );
        accounts::user_sign_in(&db, "ann@example.com", PASSWORD)
            .await
            .unwrap();
        let s = accounts::start_session(&db, SessionKind::User, "ann@example.com", 20)
            .await
            .unwrap();
        // A reset: the old password and the open sessions stop working.
        accounts::set_user_password(&db, "ann@example.com", "reset by support", 30, &actor)
            .await
            .unwrap();
        assert!(
            accounts::user_sign_in(&db, "ann@example.com", PASSWORD)
                .await
                .is_err()
        );
        assert!(
            accounts::session(&db, SessionKind::User, &s.secret, 30)
                .await
                .unwrap()
                .is_none(),
            "{}",
            test.name
        );
        let e = accounts::set_user_password(&db, " ", PASSWORD, 40, &actor)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid");
    }
}

fn lic_portal(data: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_staff_and_user_commands_read_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let out = lic_portal(&data, &["init"], "");
    assert!(out.status.success(), "{out:?}");

    let out = lic_portal(
        &data,
        &[
            "--format",
            "json",
            "staff",
            "add",
            "--name",
            "sam",
            "--role",
            "support",
            "--product",
            "photo-pro",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["staff"]["name"], "sam");
    assert_eq!(doc["staff"]["role"], "support");
    assert_eq!(doc["staff"]["products"], serde_json::json!(["photo-pro"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(PASSWORD));

    // No password: a clear error, nothing created.
    let out = lic_portal(
        &data,
        &["staff", "add", "--name", "kim", "--role", "admin"],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no password given"), "{err}");
    // A short one: the rule, in words.
    let out = lic_portal(
        &data,
        &["staff", "add", "--name", "kim", "--role", "admin"],
        "short\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("10 to 1024 characters"), "{err}");

    let out = lic_portal(&data, &["--format", "json", "staff", "list"], "");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sam"]);

    let out = lic_portal(
        &data,
        &["--format", "json", "staff", "disable", "--name", "sam"],
        "",
    );
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["staff"]["disabled"].is_i64());

    let out = lic_portal(
        &data,
        &[
            "--format",
            "json",
            "user",
            "set-password",
            "--user",
            "ann@example.com",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["user"], "ann@example.com");
    assert_eq!(doc["password_set"], true);
}

/// Run `lic-portal ARGS` on a terminal (a pseudo-terminal, through python3's `pty`),
/// answering each of `answers` (prompt, what is typed) once the prompt has been shown,
/// as a person at a keyboard would. Returns the exit code and all the terminal showed.
/// None (the test skips, loudly) without python3, unless LIC_REQUIRE_INTEROP is set.
fn on_a_terminal(
    data: &std::path::Path,
    args: &[&str],
    answers: &[(&str, &str)],
) -> Option<(i32, String)> {
    const DRIVER: &str = r#"
import os, pty, sys, json, termios, time
answers = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
seen = b""
def read():
    global seen
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        chunk = b""
    seen += chunk
    return chunk
for prompt, typed in answers:
    while prompt.encode() not in seen:
        if not read():
            break
    # A person reads the prompt, then types: by then the program has turned echo off
    # (it does so right after the prompt). Wait for that, 10 s at most: a program that
    # never turns it off shows what is typed, and the test says so.
    deadline = time.monotonic() + 10
    while termios.tcgetattr(fd)[3] & termios.ECHO and time.monotonic() < deadline:
        pass
    os.write(fd, (typed + "\n").encode())
while read():
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(seen)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    if Command::new("python3").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("LIC_REQUIRE_INTEROP").is_none(),
            "LIC_REQUIRE_INTEROP is set but python3 is missing"
        );
        lic_fixtures::skip::loudly(
            "the terminal password test",
            "python3 is missing",
            "LIC_REQUIRE_INTEROP",
        );
        return None;
    }
    let answers = serde_json::to_string(answers).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            DRIVER,
            &answers,
            env!("CARGO_BIN_EXE_lic-portal"),
            "--data",
        ])
        .arg(data)
        .args(args)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS")
        .output()
        .unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

#[tokio::test]
async fn a_password_typed_at_a_terminal_is_not_shown_and_is_asked_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("portal");
    let out = lic_portal(&data, &["init"], "");
    assert!(out.status.success(), "{out:?}");
    let add = ["staff", "add", "--name", "sam", "--role", "support"];
    let prompt = "password for the new account: ";
    let again = "password for the new account again: ";

    // Typed twice the same: the account is made, and the password never appears.
    let Some((code, shown)) = on_a_terminal(&data, &add, &[(prompt, PASSWORD), (again, PASSWORD)])
    else {
        return;
    };
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains(prompt) && shown.contains(again), "{shown}");
    assert!(shown.contains("staff account sam"), "{shown}");
    assert!(
        !shown.contains(PASSWORD),
        "the password was echoed: {shown}"
    );
    let db = Db::connect(&format!("sqlite://{}", data.join("portal.db").display()))
        .await
        .unwrap();
    accounts::staff_sign_in(&db, "sam", PASSWORD).await.unwrap();

    // Typed differently the second time: refused, nothing changed.
    let other = "another password 123";
    let (code, shown) = on_a_terminal(
        &data,
        &["staff", "password", "--name", "sam"],
        &[
            ("new password: ", other),
            ("new password again: ", "a typo 12345"),
        ],
    )
    .unwrap();
    assert_ne!(code, 0, "{shown}");
    assert!(shown.contains("the two passwords differ"), "{shown}");
    assert!(shown.contains("nothing was changed"), "{shown}");
    accounts::staff_sign_in(&db, "sam", PASSWORD).await.unwrap();
    assert!(accounts::staff_sign_in(&db, "sam", other).await.is_err());
}
