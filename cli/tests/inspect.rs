//! `lic inspect` against the test vectors: arguments, stdin, stdout, stderr, exit status.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    lic_fixtures::dir().join(name)
}

fn lic(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic"));
    cmd.args(args)
        .env_remove("LIC_TRUST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("lic starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).expect("lic reads its input");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("lic runs")
}

fn trust() -> String {
    fixture("keys/vendor.pub.pem").display().to_string()
}

#[test]
fn a_valid_license_is_shown_with_exit_status_0() {
    let out = lic(
        &[
            "inspect",
            "--trust",
            &trust(),
            fixture("valid/license.lic").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("license file: signature valid\n"),
        "{stdout}"
    );
    assert!(stdout.contains("product: photo-pro"), "{stdout}");
    assert!(stdout.contains("expires: 2027-11-02T10:00:00Z"), "{stdout}");
    assert!(out.stderr.is_empty());
}

#[test]
fn json_output_is_parseable_and_complete() {
    let out = lic(
        &[
            "inspect",
            "--format",
            "json",
            "--trust",
            &trust(),
            fixture("valid/refresh.lic").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kind"], "refresh");
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["signer"]["role"], "vendor");
    assert_eq!(
        doc["signer"]["kid"],
        lic_fixtures::vendor_key().kid().to_string()
    );
    assert_eq!(doc["payload"]["serial"], 2);
    assert_eq!(doc["payload"]["features"]["render-minutes"]["limit"], 1200);
    assert_eq!(doc["payload"]["expires"], "2028-11-02T10:00:00Z");
}

#[test]
fn a_device_signed_file_needs_no_trust_file_and_reads_from_stdin() {
    let request = std::fs::read(fixture("valid/activation-request.req")).unwrap();
    let out = lic(&["inspect", "--format", "json", "-"], Some(&request));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["kind"], "activation-request");
    assert_eq!(doc["signer"]["role"], "device");
    assert_eq!(
        doc["signer"]["kid"],
        lic_fixtures::device_key().kid().to_string()
    );
    assert_eq!(
        doc["payload"]["credential"]["license-key"],
        lic_fixtures::LICENSE_KEY
    );
}

#[test]
fn a_tampered_file_is_refused_with_exit_status_2_and_advice() {
    let out = lic(
        &[
            "inspect",
            "--trust",
            &trust(),
            fixture("invalid/tampered-payload.lic").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("error: the signature is not valid"),
        "{stderr}"
    );
    assert!(
        stderr.contains("what to do: do not use this file"),
        "{stderr}"
    );
    assert!(stderr.contains("(error code: bad-signature)"), "{stderr}");
}

#[test]
fn a_vendor_file_without_trusted_keys_names_the_unknown_key() {
    let out = lic(
        &["inspect", fixture("valid/license.lic").to_str().unwrap()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let kid = lic_fixtures::vendor_key().kid().to_string();
    assert!(stderr.contains(&format!("signed by key {kid}")), "{stderr}");
    assert!(stderr.contains("(error code: unknown-key)"), "{stderr}");
}

#[test]
fn every_invalid_vector_is_refused_with_its_code() {
    let manifest: lic_fixtures::Manifest = serde_json::from_slice(
        &std::fs::read(lic_fixtures::dir().join(lic_fixtures::MANIFEST)).unwrap(),
    )
    .unwrap();
    for v in manifest.vectors.iter().filter(|v| v.error.is_some()) {
        // `inspect` reads whatever kind the armor names, so "wrong kind" is not an error
        // for it; every other refusal must come through unchanged.
        let expected = v.error.as_ref().unwrap();
        if expected.code == "wrong-kind" {
            continue;
        }
        let out = lic(
            &[
                "inspect",
                "--trust",
                &trust(),
                fixture(&v.file).to_str().unwrap(),
            ],
            None,
        );
        assert_eq!(out.status.code(), Some(2), "{}", v.file);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains(&format!("error: {}\n", expected.message)),
            "{}: {stderr}",
            v.file
        );
        assert!(
            stderr.contains(&format!("(error code: {})", expected.code)),
            "{}: {stderr}",
            v.file
        );
    }
}

#[test]
fn a_missing_file_is_an_error_that_names_it() {
    let out = lic(&["inspect", "/nonexistent/license.lic"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("cannot read /nonexistent/license.lic"),
        "{stderr}"
    );
}
