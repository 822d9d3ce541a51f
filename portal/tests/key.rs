//! `lic-portal key generate|export`.

use std::process::{Command, Output};

fn portal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lic-portal"))
        .args(args)
        .output()
        .expect("lic-portal runs")
}

#[test]
fn generate_writes_a_0600_key_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key.pem");
    let key_arg = key.to_str().unwrap();
    let out = portal(&["key", "generate", "--out", key_arg]);
    assert!(out.status.success(), "{out:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = std::fs::read(&key).unwrap();

    let again = portal(&["key", "generate", "--out", key_arg]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        first,
        "the key was left as it was"
    );

    let forced = portal(&["key", "generate", "--out", key_arg, "--force"]);
    assert!(forced.status.success(), "{forced:?}");
    assert_ne!(std::fs::read(&key).unwrap(), first);
}

#[test]
fn export_prints_the_public_key_and_never_the_private_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vendor.key.pem");
    assert!(
        portal(&["key", "generate", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let out = portal(&["key", "export", "--key", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = lic_core::keys::SecretKey::read(&key)
        .unwrap()
        .public()
        .to_pem();
    assert_eq!(stdout, expected);
    assert!(!stdout.contains("PRIVATE"));
}

#[test]
fn export_of_a_file_that_is_not_a_key_explains_the_expected_form() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("notes.txt");
    std::fs::write(&bogus, "hello").unwrap();
    let out = portal(&["key", "export", "--key", bogus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("not a usable Ed25519 private key"),
        "{stderr}"
    );
    assert!(stderr.contains("BEGIN PRIVATE KEY"), "{stderr}");
}
