//! The real `lic-portal serve` over a real socket, fed raw bytes: every error answer is
//! JSON, also those hyper gives by itself to requests it cannot parse (which never reach
//! the router) and those of the router's extractors.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running `lic-portal serve` on a fresh data directory, stopped on drop.
struct Server {
    child: Child,
    addr: String,
    data: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn portal(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lic-portal"));
    cmd.arg("--data")
        .arg(data)
        .env_remove("LIC_PORTAL_DATABASE")
        .env_remove("LIC_PORTAL_KEYS");
    cmd
}

fn serve() -> Server {
    let data = tempfile::tempdir().unwrap();
    let init = portal(data.path()).arg("init").output().unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut child = portal(data.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut child);
    Server { child, addr, data }
}

impl Server {
    fn admin_token(&self) -> String {
        let out = portal(self.data.path())
            .args([
                "--format", "json", "token", "create", "--name", "t", "--role", "admin",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["secret"].as_str().unwrap().to_string()
    }

    /// Send `bytes` (then end the request side if `end`), read until the portal closes.
    fn raw(&self, bytes: &[u8], end: bool) -> Vec<u8> {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        // A guard against a hang, not a measurement.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        if end {
            stream.shutdown(Shutdown::Write).unwrap();
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    }
}

/// One HTTP/1.1 answer: status, lowercase head, body; and what follows it.
fn answer(bytes: &[u8]) -> (u16, String, Vec<u8>, Vec<u8>) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {text:?}"));
    let head = text[..end].to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap_or_else(|| panic!("no content-length in {head}"))
        .parse()
        .unwrap();
    let body = &bytes[end + 4..end + 4 + length];
    (
        status,
        head,
        body.to_vec(),
        bytes[end + 4 + length..].to_vec(),
    )
}

/// The answer is the API's JSON error with `status` and `code`, and nothing after it.
#[track_caller]
fn assert_json_error(bytes: &[u8], status: u16, code: &str, what: &str) {
    let (got, head, body, rest) = answer(bytes);
    assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(bytes));
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{what}: {head}"
    );
    let doc: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["error"]["code"], code, "{what}: {doc}");
    for field in ["message", "hint"] {
        assert!(
            doc["error"][field].as_str().is_some_and(|s| !s.is_empty()),
            "{what}: {doc}"
        );
    }
    assert!(
        rest.is_empty(),
        "{what}: {}",
        String::from_utf8_lossy(&rest)
    );
}

#[test]
fn requests_hyper_cannot_parse_are_answered_in_json() {
    let server = serve();
    let cases: [(&str, Vec<u8>, u16, &str); 7] = [
        (
            "a URI longer than hyper takes",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
            "uri-too-long",
        ),
        (
            "a malformed request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "bad-request",
        ),
        (
            "an invalid method",
            b"G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad-request",
        ),
        (
            "a malformed header name",
            b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec(),
            400,
            "bad-request",
        ),
        (
            "an invalid Content-Length",
            b"POST /api/v1/activate HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
            "bad-request",
        ),
        (
            "bytes that are not HTTP (a TLS ClientHello)",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03".to_vec(),
            400,
            "bad-request",
        ),
        (
            "more header fields than hyper takes",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..200)
                    .map(|i| format!("X-{i}: a\r\n"))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
            "headers-too-large",
        ),
    ];
    for (what, request, status, code) in cases {
        assert_json_error(&server.raw(&request, false), status, code, what);
    }
}

#[test]
fn a_header_section_larger_than_hyper_buffers_is_answered_in_json() {
    let server = serve();
    // hyper's default read buffer limit (`http1_max_buf_size`): a head that fills it
    // without ending is refused. Exactly that many bytes, so all of them are read.
    const HYPER_MAX_BUF: usize = 8192 + 4096 * 100;
    let mut request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.resize(HYPER_MAX_BUF, b'a');
    assert_json_error(
        &server.raw(&request, true),
        431,
        "headers-too-large",
        "a header section over hyper's buffer",
    );
}

#[test]
fn a_bad_request_after_a_good_one_on_the_same_connection() {
    let server = serve();
    let answers = server.raw(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nNOT A REQUEST LINE\r\n\r\n",
        false,
    );
    let (status, _, body, rest) = answer(&answers);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["status"],
        "ok"
    );
    assert_json_error(&rest, 400, "bad-request", "the second, malformed request");
}

#[test]
fn invalid_percent_encoding_in_a_path_or_query_is_answered_in_json() {
    let server = serve();
    let token = server.admin_token();
    for (path, code) in [
        ("/api/v1/products/%ff%fe", "bad-request"),
        ("/api/v1/audit?limit=%ff", "bad-request"),
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        );
        assert_json_error(&server.raw(request.as_bytes(), false), 400, code, path);
    }
}
