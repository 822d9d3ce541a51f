//! Key files interoperate with OpenSSL (and Python's `cryptography`): what lic writes
//! they read, and what they write lic reads.

use std::path::Path;
use std::process::Command;

use lic_core::keys::{Keyring, PublicKey, SecretKey};

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it: apt-get install openssl)")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn openssl_loads_the_fixture_keys() {
    let keys = lic_fixtures::dir().join("keys");
    for public in ["vendor.pub.pem", "device.pub.pem"] {
        let out = openssl(&["pkey", "-pubin", "-in", path(&keys.join(public)), "-noout"]);
        assert!(out.status.success(), "{public}: {out:?}");
    }
    for private in [
        "vendor.key.pem",
        "device.key.pem",
        "untrusted-vendor.key.pem",
        "next-vendor.key.pem",
    ] {
        let out = openssl(&["pkey", "-in", path(&keys.join(private)), "-noout"]);
        assert!(out.status.success(), "{private}: {out:?}");
    }
}

#[test]
fn openssl_reads_a_new_lic_key_and_derives_the_same_public_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("vendor.key.pem");
    let key = SecretKey::generate();
    key.write(&key_path, false).unwrap();
    let out = openssl(&["pkey", "-in", path(&key_path), "-pubout"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        key.public().to_pem()
    );
}

#[test]
fn lic_reads_keys_that_openssl_generates() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.pem");
    let pub_path = dir.path().join("k.pub.pem");
    assert!(
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&key_path)])
            .status
            .success()
    );
    assert!(
        openssl(&[
            "pkey",
            "-in",
            path(&key_path),
            "-pubout",
            "-out",
            path(&pub_path)
        ])
        .status
        .success()
    );
    let key = SecretKey::read(&key_path).unwrap();
    assert_eq!(key.public(), PublicKey::read(&pub_path).unwrap());
}

#[test]
fn lic_reads_key_files_that_openssl_writes_with_a_text_dump_after_the_pem() {
    // `openssl pkey -text` writes the PEM block followed by a readable dump of the key:
    // text after the block, which lic ignores for public keys, private keys and trust
    // files alike.
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.pem");
    let pub_text = dir.path().join("k.pub.txt");
    let key_text = dir.path().join("k.key.txt");
    assert!(
        openssl(&["genpkey", "-algorithm", "ed25519", "-out", path(&key_path)])
            .status
            .success()
    );
    for (args, out) in [
        (vec!["-pubout", "-text"], &pub_text),
        (vec!["-text"], &key_text),
    ] {
        let mut all = vec!["pkey", "-in", path(&key_path), "-out", path(out)];
        all.extend(args);
        assert!(openssl(&all).status.success());
    }
    let dump = std::fs::read_to_string(&pub_text).unwrap();
    assert!(
        dump.contains("-----END PUBLIC KEY-----\nED25519 Public-Key:"),
        "{dump}"
    );
    let key = SecretKey::read(&key_path).unwrap();
    assert_eq!(PublicKey::read(&pub_text).unwrap(), key.public());
    assert_eq!(
        Keyring::read(&pub_text).unwrap(),
        Keyring::with([key.public()])
    );
    assert_eq!(SecretKey::read(&key_text).unwrap().public(), key.public());
}

#[test]
fn python_cryptography_loads_lic_keys_when_available() {
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("LIC_REQUIRE_INTEROP").is_none(),
            "LIC_REQUIRE_INTEROP is set but python3 with `cryptography` is not available"
        );
        lic_fixtures::skip::loudly(
            "the Python key-loading test",
            "python3 with cryptography is not available (python3 -m pip install cryptography)",
            "LIC_REQUIRE_INTEROP",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("k.pem");
    let key = SecretKey::generate();
    key.write(&key_path, false).unwrap();
    let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
key = s.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
sys.stdout.write(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo).decode())
"#;
    let out = Command::new("python3")
        .args(["-c", script, path(&key_path)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        key.public().to_pem()
    );
}

/// docs/format.md §3.4: a reader must decode and check a device key itself, because
/// OpenSSL imports keys that are no points of the curve and verifies the identity-key
/// forgery. If this test fails because OpenSSL became stricter, soften §3.4's warning.
#[test]
fn openssl_imports_keys_lic_refuses_and_verifies_the_identity_key_forgery() {
    let dir = tempfile::tempdir().unwrap();
    // SPKI PEM of A = 01 00…00 (the neutral element) and of y = 2 (not a point).
    let identity = "-----BEGIN PUBLIC KEY-----\n\
                    MCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
                    -----END PUBLIC KEY-----\n";
    let not_a_point = "-----BEGIN PUBLIC KEY-----\n\
                       MCowBQYDK2VwAyEAAgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\
                       -----END PUBLIC KEY-----\n";
    for (name, pem) in [("identity", identity), ("not-a-point", not_a_point)] {
        assert!(PublicKey::from_pem(pem).is_err(), "lic reads {name}");
        let file = dir.path().join(format!("{name}.pem"));
        std::fs::write(&file, pem).unwrap();
        let out = openssl(&["pkey", "-pubin", "-in", path(&file), "-noout"]);
        assert!(out.status.success(), "OpenSSL refuses {name}: {out:?}");
    }
    // R = A, S = 0: [S]B - [k]A = R whatever the message.
    let key = dir.path().join("identity.pem");
    let (message, signature) = (dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&message, b"any message, say a license").unwrap();
    let mut forged = vec![0u8; 64];
    forged[0] = 1;
    std::fs::write(&signature, &forged).unwrap();
    let out = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path(&key),
        "-rawin",
        "-in",
        path(&message),
        "-sigfile",
        path(&signature),
    ]);
    assert!(
        out.status.success(),
        "OpenSSL no longer verifies the identity-key forgery: {out:?}"
    );
    // lic refuses the same forgery in a file, before it verifies anything.
    let vector = lic_fixtures::dir().join("invalid/identity-key-forgery.req");
    let err = lic_core::format::open::<lic_core::format::ActivationRequest>(
        &std::fs::read(vector).unwrap(),
        &Keyring::new(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "weak-key");
}
