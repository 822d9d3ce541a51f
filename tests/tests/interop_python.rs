//! An independent verifier written from docs/format.md in Python (cbor2 + cryptography)
//! must reach the same verdict as lic on every test vector.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn an_implementation_from_the_specification_agrees_on_every_vector() {
    let probe = Command::new("python3")
        .args(["-c", "import cbor2, cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("LIC_REQUIRE_INTEROP").is_none(),
            "LIC_REQUIRE_INTEROP is set but python3 with cbor2 and cryptography is missing \
             (pip install cbor2 cryptography)"
        );
        lic_fixtures::skip::loudly(
            "the Python interoperability test",
            "python3 with cbor2 and cryptography is not available (python3 -m pip install cbor2 cryptography)",
            "LIC_REQUIRE_INTEROP",
        );
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/verify_vectors.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(lic_fixtures::dir())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the independent verifier disagrees:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = lic_fixtures::generate().manifest;
    let vectors = manifest.vectors.len();
    assert!(
        stdout.contains(&format!("\n{vectors} passed, 0 failed")),
        "{stdout}"
    );
    let trust_files = manifest.trust_files.len();
    assert!(
        stdout.contains(&format!("trust files: {trust_files} passed, 0 failed")),
        "{stdout}"
    );
}
