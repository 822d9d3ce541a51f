//! What the console tests of the edit, upload and usage pages share: a staff account
//! signed in (its session cookie and CSRF token), requests through the router without a
//! socket, devices activated on a license.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use lic_core::client::Client;
use lic_core::format::Credential;
use lic_portal::accounts::{self, SessionKind};
use lic_portal::auth::Role;
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::{Actor, Portal};
use tower::ServiceExt as _;

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

pub fn app(portal: &Arc<Portal>) -> Router {
    http::router(AppState::new(Arc::clone(portal)).with_limiter(RateLimiter::unlimited()))
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 8 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A signed-in staff account: its cookie (`lic_staff=…`) and its forms' CSRF token.
pub struct Staff {
    pub cookie: String,
    pub csrf: String,
}

/// A staff account `name` of `role` (limited to `products`, if given), signed in.
pub async fn staff(portal: &Portal, name: &str, role: Role, products: Option<&[&str]>) -> Staff {
    let now = chrono::Utc::now().timestamp();
    let products = products.map(|p| p.iter().map(|s| s.to_string()).collect());
    let account = accounts::create_staff(
        portal.db(),
        name,
        role,
        products,
        "correct horse battery staple",
        now,
        &Actor::cli(),
    )
    .await
    .unwrap();
    let session = accounts::start_session(portal.db(), SessionKind::Staff, &account.id, now)
        .await
        .unwrap();
    Staff {
        cookie: format!("lic_staff={}", session.secret.as_str()),
        csrf: session.csrf,
    }
}

pub fn get(path: &str, staff: &Staff) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, &staff.cookie)
        .body(Body::empty())
        .unwrap()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A POST of a urlencoded form.
pub fn post_form(path: &str, staff: &Staff, fields: &[(&str, &str)]) -> Request<Body> {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, &staff.cookie)
        .body(Body::from(body))
        .unwrap()
}

/// A POST of a multipart form: `csrf` (if given) and `files` (name, bytes) as `files`.
pub fn post_files(
    path: &str,
    staff: &Staff,
    csrf: Option<&str>,
    files: &[(&str, &[u8])],
) -> Request<Body> {
    let boundary = "----lic-console-test-4e2a";
    let mut body = Vec::new();
    if let Some(csrf) = csrf {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::post(path)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, &staff.cookie)
        .body(Body::from(body))
        .unwrap()
}

/// The text between `start` and the next `end` in `text`.
pub fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    text[from..from + len].to_string()
}

/// A device in `dir` activated on `key`: the client and its activation id.
pub async fn activate(portal: &Portal, dir: &Path, machine: &str, key: &str) -> (Client, String) {
    let keys = portal.trusted_keys().await.unwrap();
    let c = crate::common::device(dir, machine, keys);
    let req = c
        .request_activation(Credential::LicenseKey(key.into()))
        .unwrap();
    let applied = portal
        .apply(req.armored().as_bytes(), &Actor::cli())
        .await
        .unwrap();
    c.install(applied.response.as_bytes()).unwrap();
    (c, applied.activation.unwrap())
}

/// A second product, `video-pro`, with a license: its id.
pub async fn video_license(portal: &Portal) -> String {
    portal
        .create_product("video-pro", "Video Pro", &Actor::cli())
        .await
        .unwrap();
    let mut p = crate::common::policy(1);
    p.product = "video-pro".into();
    crate::common::license(portal, p).await.0
}
