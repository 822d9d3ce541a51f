//! What the entry-point targets share: every input is tried as it came and as the
//! customer could send it — signed again with their own device key, so that what lies
//! behind the signature check is reached too (the customer owns the device key and can
//! sign any request they like; docs/security.md).

#![allow(dead_code)]

pub mod portal;

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use lic_core::format::{self, Credential, FileKind, Payload, SignerRole};
use lic_core::keys::SecretKey;

/// The fixtures' device key: the customer's own.
pub fn device_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(lic_fixtures::device_key)
}

/// A fresh directory for a target's files: under `LIC_FUZZ_TMP` (fuzz/run.sh makes one
/// per run and removes it: libFuzzer exits without running destructors), else on tmpfs
/// where there is one.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    let base = std::env::var_os("LIC_FUZZ_TMP")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            if std::path::Path::new("/dev/shm").is_dir() {
                "/dev/shm".into()
            } else {
                std::env::temp_dir()
            }
        });
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("a temporary directory")
}

/// A runtime for the async entry points (one thread: libFuzzer runs one input at a time).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// POST `body` to `route` of `app`, as a client would: the status and the body, which
/// must be a success or a 4xx with the API's JSON error (`{"error": {"code", "hint"}}`),
/// never a 5xx.
pub fn post(
    rt: &tokio::runtime::Runtime,
    app: &axum::Router,
    route: &str,
    accept: &str,
    body: Vec<u8>,
) -> axum::http::StatusCode {
    use axum::http::{Request, header};
    use tower::ServiceExt as _;
    let request = Request::post(route)
        .header(header::ACCEPT, accept)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(axum::body::Body::from(body))
        .expect("a request");
    let (status, text) = rt.block_on(async {
        let response = app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("the body");
        (status, bytes)
    });
    assert!(
        !status.is_server_error(),
        "{route}: {status} {}",
        String::from_utf8_lossy(&text)
    );
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&text).expect("a JSON error");
        assert!(error["error"]["code"].is_string(), "{route}: {error}");
        assert!(error["error"]["hint"].is_string(), "{route}: {error}");
    }
    status
}

/// How the variants of a device file are adjusted before they are signed again.
pub struct Adjust {
    /// The time the files say they were made (the receiver's now: fresh requests).
    pub now: DateTime<Utc>,
    /// The credential lease requests name (the license they are for).
    pub lease_credential: Option<Credential>,
}

/// The input as it came; the same payload bytes signed again with the device key (a
/// device-signed kind); and the payload decoded, made fresh (its time set to
/// `adjust.now`) and signed again — each only where the input gets that far.
pub fn variants(data: &[u8], adjust: &Adjust) -> Vec<Vec<u8>> {
    let mut out = vec![data.to_vec()];
    let Ok((_, cose)) = format::unarmor(data) else {
        return out;
    };
    let Ok(kind) = format::kind_of(&cose) else {
        return out;
    };
    if kind.signer() != SignerRole::Device {
        return out;
    }
    if let Some(payload) = raw_payload(&cose)
        && let Ok(signed) = format::sign_raw(kind, payload, device_key())
    {
        out.push(signed.into_bytes());
    }
    let fresh = match kind {
        FileKind::ActivationRequest => fresh::<format::ActivationRequest>(&cose, |p| {
            p.created = adjust.now;
        }),
        FileKind::Deactivation => fresh::<format::Deactivation>(&cose, |p| {
            p.created = adjust.now;
        }),
        FileKind::UsageReport => fresh::<format::UsageReport>(&cose, |p| {
            p.created = adjust.now;
        }),
        FileKind::CheckIn => fresh::<format::CheckIn>(&cose, |p| {
            p.created = adjust.now;
        }),
        FileKind::LeaseRequest => fresh::<format::LeaseRequest>(&cose, |p| {
            p.created = adjust.now;
            if let Some(c) = &adjust.lease_credential {
                p.credential = c.clone();
            }
        }),
        _ => None,
    };
    out.extend(fresh);
    out
}

/// The payload bytes of a COSE_Sign1, whatever they hold.
fn raw_payload(cose: &[u8]) -> Option<Vec<u8>> {
    use coset::{CoseSign1, TaggedCborSerializable as _};
    CoseSign1::from_tagged_slice(cose).ok()?.payload
}

fn fresh<T: Payload>(cose: &[u8], edit: impl FnOnce(&mut T)) -> Option<Vec<u8>> {
    let mut payload = format::payload_unverified::<T>(cose).ok()?;
    edit(&mut payload);
    format::sign(&payload, device_key())
        .ok()
        .map(format::SignedFile::into_bytes)
}
