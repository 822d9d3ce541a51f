//! The self-service pages over plain HTTP (no browser): CSRF refusals that change
//! nothing, the security headers, the download, a refusal in words, and the API left as
//! it was. Through the router without a socket, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{backends, device, license, policy, portal, request, snapshot};
use lic_portal::http::{self, AppState, RateLimiter};
use tower::ServiceExt as _;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// The form's CSRF cookie (`name=value`) and hidden field value.
async fn form(app: &Router) -> (String, String) {
    let page = send(app, get("/activate")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let cookie = page.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "off by default: {cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let field = between(&page.body, "name=\"csrf\" value=\"", "\"");
    assert_eq!(pair, format!("lic_csrf={field}"));
    (pair, field)
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    text[from..from + len].to_string()
}

fn urlencoded(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A POST of the form, urlencoded, with `cookie` (`name=value`) and `fields`.
fn post_form(cookie: Option<&str>, fields: &[(&str, &str)]) -> Request<Body> {
    let mut r = Request::post("/activate")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(urlencoded(fields))).unwrap()
}

/// A POST of the form as a browser sends a file: multipart.
fn post_file(cookie: &str, csrf: &str, file: &[u8]) -> Request<Body> {
    let boundary = "----lic-test-boundary-7d1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"req.lic\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\n\r\n--{boundary}--\r\n"
        )
        .as_bytes(),
    );
    Request::post("/activate")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_post_without_both_csrf_values_is_refused_and_changes_nothing() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (_, key) = license(&portal, policy(2)).await;
        let app =
            http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
        let (cookie, field) = form(&app).await;
        let store = tempfile::tempdir().unwrap();
        let req = String::from_utf8(request(store.path(), "m-1", &key)).unwrap();
        let other = "0".repeat(64);
        let before = snapshot(portal.db()).await;

        let forged = [
            // No cookie: what a cross-site form gets under SameSite=Strict.
            (None, vec![("csrf", field.as_str()), ("text", req.as_str())]),
            // The cookie, no field.
            (Some(cookie.as_str()), vec![("text", req.as_str())]),
            // Both, not equal.
            (
                Some(cookie.as_str()),
                vec![("csrf", other.as_str()), ("text", req.as_str())],
            ),
            // Neither.
            (None, vec![("text", req.as_str())]),
        ];
        for (c, fields) in forged {
            let answer = send(&app, post_form(c, &fields)).await;
            assert_eq!(
                answer.status,
                StatusCode::FORBIDDEN,
                "{}: {}",
                db.name,
                answer.body
            );
            assert!(answer.body.contains("Reload the form"), "{}", answer.body);
            assert!(
                answer.headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
        }
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);

        // The same request with both values is applied: the refusals were the CSRF check.
        let answer = send(
            &app,
            post_form(Some(&cookie), &[("csrf", &field), ("text", &req)]),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {}",
            db.name,
            answer.body
        );
        assert_ne!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test]
async fn an_uploaded_request_gives_a_license_to_download_and_install() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (_, key) = license(&portal, policy(2)).await;
        let app =
            http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));

        let home = send(&app, get("/")).await;
        assert_eq!(home.status, StatusCode::OK);
        assert_eq!(
            home.headers[header::CONTENT_SECURITY_POLICY],
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             form-action 'self'; frame-ancestors 'none'"
        );
        assert_eq!(home.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(home.headers[header::REFERRER_POLICY], "same-origin");
        assert!(home.body.contains("name=\"viewport\""), "{}", home.body);
        assert!(!home.body.contains("<script"), "{}", home.body);

        let (cookie, field) = form(&app).await;
        let store = tempfile::tempdir().unwrap();
        let keys = portal.trusted_keys().await.unwrap();
        let dev = device(store.path(), "m-1", keys);
        let req = dev
            .request_activation(lic_core::format::Credential::LicenseKey(key.clone()))
            .unwrap();
        // A browser sends the file as it is: here its binary form.
        let ready = send(&app, post_file(&cookie, &field, req.bytes())).await;
        assert_eq!(ready.status, StatusCode::OK, "{}: {}", db.name, ready.body);
        assert!(
            ready.body.contains("lic install photo-pro.lic"),
            "{}",
            ready.body
        );
        let link = between(&ready.body, "href=\"/download/", "\"");
        assert_eq!(link.len(), 64, "{link}");

        let file = send(&app, get(&format!("/download/{link}"))).await;
        assert_eq!(file.status, StatusCode::OK);
        assert_eq!(
            file.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"photo-pro.lic\""
        );
        dev.install(file.body.as_bytes()).unwrap();
        assert!(
            ready.body.contains(file.body.trim()),
            "the page shows the license's text: {}",
            ready.body
        );

        let unknown = send(&app, get(&format!("/download/{}", "ab".repeat(32)))).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND);
        assert!(unknown.body.contains("expired"), "{}", unknown.body);

        // The API is as it was: JSON errors for unknown routes.
        let api = send(&app, get("/api/v1/nope")).await;
        assert_eq!(api.status, StatusCode::NOT_FOUND);
        assert!(api.body.starts_with("{\"error\""), "{}", api.body);
    }
}

#[tokio::test]
async fn a_refused_request_shows_the_message_and_hint_and_keeps_the_text() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (_, key) = license(&portal, policy(1)).await;
        let app =
            http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
        let (cookie, field) = form(&app).await;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let first = String::from_utf8(request(a.path(), "m-1", &key)).unwrap();
        let second = String::from_utf8(request(b.path(), "m-2", &key)).unwrap();
        let ok = send(
            &app,
            post_form(Some(&cookie), &[("csrf", &field), ("text", &first)]),
        )
        .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);

        let before = snapshot(portal.db()).await;
        let refused = send(
            &app,
            post_form(Some(&cookie), &[("csrf", &field), ("text", &second)]),
        )
        .await;
        // The API's answer to the same request: the page says the same in words.
        let api = send(
            &app,
            Request::post("/api/v1/activate")
                .body(Body::from(second.clone()))
                .unwrap(),
        )
        .await;
        let api: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        let code = api["error"]["code"].as_str().unwrap();
        assert_eq!(code, "no-seat-left", "{api}");
        assert!(refused.status.is_client_error(), "{}", refused.status);
        assert!(refused.body.contains("role=\"alert\""), "{}", refused.body);
        assert!(refused.body.contains(code), "{}", refused.body);
        let escaped = |s: &str| s.replace('\'', "&#39;").replace('"', "&#34;");
        for part in ["message", "hint"] {
            let text = api["error"][part].as_str().unwrap();
            assert!(
                refused.body.contains(text) || refused.body.contains(&escaped(text)),
                "{part} {text:?} not in {}",
                refused.body
            );
        }
        // The pasted text is still in the box, to correct or send again.
        let kept = between(
            &refused.body,
            "aria-describedby=\"text-help\">",
            "</textarea>",
        );
        assert_eq!(kept.trim(), second.trim());
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test]
async fn the_qr_text_pasted_is_a_request_like_the_file() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    let (_, key) = license(&portal, policy(1)).await;
    let app =
        http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
    let (cookie, field) = form(&app).await;
    let store = tempfile::tempdir().unwrap();
    let keys = portal.trusted_keys().await.unwrap();
    let dev = device(store.path(), "m-1", keys);
    let req = dev
        .request_activation(lic_core::format::Credential::LicenseKey(key))
        .unwrap();
    let qr = lic_core::format::qrtext::encode(req.bytes());
    assert!(qr.starts_with("LIC1:"));
    let ready = send(
        &app,
        post_form(Some(&cookie), &[("csrf", &field), ("text", &qr)]),
    )
    .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let link = between(&ready.body, "href=\"/download/", "\"");
    let file = send(&app, get(&format!("/download/{link}"))).await;
    dev.install(file.body.as_bytes()).unwrap();
}

#[tokio::test]
async fn the_pages_share_the_upload_apis_rate_limit() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    let (_, key) = license(&portal, policy(3)).await;
    // One upload, then one a minute.
    let app = http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::new(1, 1)));
    let (cookie, field) = form(&app).await;
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = request(a.path(), "m-1", &key);
    let second = String::from_utf8(request(b.path(), "m-2", &key)).unwrap();
    let api = send(
        &app,
        Request::post("/api/v1/activate")
            .body(Body::from(first))
            .unwrap(),
    )
    .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let before = snapshot(portal.db()).await;
    let page = send(
        &app,
        post_form(Some(&cookie), &[("csrf", &field), ("text", &second)]),
    )
    .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key(header::RETRY_AFTER));
    assert!(page.body.contains("rate-limited"), "{}", page.body);
    // The text is kept, to send again later.
    assert!(page.body.contains("-----BEGIN"), "{}", page.body);
    assert_eq!(snapshot(portal.db()).await, before);
}

#[tokio::test]
async fn too_large_or_empty_forms_are_refused_in_words() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    let app =
        http::router(AppState::new(Arc::clone(&portal)).with_limiter(RateLimiter::unlimited()));
    let (cookie, field) = form(&app).await;
    let huge = vec![b'A'; 200 * 1024];
    let page = send(&app, post_file(&cookie, &field, &huge)).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", page.body);
    assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    assert!(page.body.contains("too-large"), "{}", page.body);
    let empty = send(
        &app,
        post_form(Some(&cookie), &[("csrf", &field), ("text", "  ")]),
    )
    .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    assert!(
        empty.body.contains("no activation request was sent"),
        "{}",
        empty.body
    );
}

#[tokio::test]
async fn secure_cookies_are_secure_and_host_only() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    let app = http::router(AppState::new(portal).with_web(lic_portal::web::WebConfig {
        secure_cookies: true,
        ..Default::default()
    }));
    let page = send(&app, get("/activate")).await;
    let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("__Host-lic_csrf="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // The logo route answers 404 in HTML when no logo is configured.
    let logo = send(&app, get("/static/logo")).await;
    assert_eq!(logo.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_brand_name_and_logo_are_served_by_the_portal() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("acme.svg");
    let bytes = br#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>"#;
    std::fs::write(&svg, bytes).unwrap();
    let logo = lic_portal::web::Logo::read(&svg).unwrap();
    let not_an_image = dir.path().join("acme.exe");
    std::fs::write(&not_an_image, b"MZ").unwrap();
    assert!(lic_portal::web::Logo::read(&not_an_image).is_err());

    let app = http::router(AppState::new(portal).with_web(lic_portal::web::WebConfig {
        brand_name: "Acme <Imaging>".into(),
        brand_logo: Some(logo),
        secure_cookies: false,
    }));
    let home = send(&app, get("/")).await;
    // The name is escaped like any other value.
    assert!(
        home.body.contains("Acme &#60;Imaging&#62;") || home.body.contains("Acme &lt;Imaging&gt;"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("<Imaging>"), "{}", home.body);
    assert!(
        home.body.contains("<img src=\"/static/logo\""),
        "{}",
        home.body
    );
    let served = send(&app, get("/static/logo")).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(served.body.as_bytes(), bytes);
    assert!(served.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}
