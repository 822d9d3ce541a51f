//! The real binaries as a vendor and a customer run them: `lic-portal` on a data
//! directory, `lic` on a store, and a server process stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// `lic`, built once per test binary (cargo builds only this package's binaries for its
/// tests).
pub fn lic_binary() -> &'static Path {
    static LIC: OnceLock<PathBuf> = OnceLock::new();
    LIC.get_or_init(|| lic_fixtures::binaries::workspace_binary("lic", "lic"))
}

/// `lic-portal` on the SQLite store in `data`, whatever the environment says.
pub fn portal(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
    cmd.arg("--data")
        .arg(data)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS");
    cmd
}

/// `lic-portal --format json ARGS…`, which must succeed: its document.
pub fn vendor(data: &Path, args: &[&str]) -> serde_json::Value {
    let out = portal(data)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `lic` command on `store`, trusting `trust`.
pub fn lic(store: &Path, trust: &Path) -> Command {
    let mut cmd = Command::new(lic_binary());
    cmd.arg("--store")
        .arg(store)
        .arg("--trust")
        .arg(trust)
        .env_remove("LIC_STORE")
        .env_remove("LIC_TRUST")
        .env_remove("LIC_PRODUCT")
        .env("NO_COLOR", "1");
    cmd
}

/// A server process, killed when dropped.
pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lic-portal` on `data` (its keys) with the database at `database` (a URL).
pub fn cmd(data: &Path, database: &str) -> Command {
    let mut cmd = portal(data);
    cmd.args(["--database", database]);
    cmd
}

/// `cmd --format json ARGS…`, which must succeed: its document.
pub fn json(mut cmd: Command, args: &[&str]) -> serde_json::Value {
    let out = cmd.args(["--format", "json"]).args(args).output().unwrap();
    assert!(out.status.success(), "lic-portal {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `lic-portal serve` on `listen` without an upload limit: the process and the address
/// it printed.
pub fn serve(data: &Path, database: &str, listen: &str) -> (Serve, String) {
    let mut child = cmd(data, database)
        .args(["serve", "--listen", listen, "--uploads-per-minute", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = super::listening_addr(&mut child);
    (Serve(child), addr)
}

/// `lic-portal init` and the product `photo-pro`, run by the commands `make` gives (a
/// portal on its data directory, or on a database).
pub fn init_with_product(make: impl Fn() -> Command) {
    let out = make().arg("init").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    json(
        make(),
        &["product", "create", "photo-pro", "--name", "Photo Pro"],
    );
}

/// The portal's trusted keys (`lic-portal key export`) written to `out`.
pub fn export_trust(mut portal: Command, out: &Path) {
    let done = portal
        .args(["key", "export", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(done.status.success(), "{done:?}");
}

/// Run `cmd` with `secret` (a password) on its standard input; it must succeed.
pub fn with_secret(mut cmd: Command, secret: &str) {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}
