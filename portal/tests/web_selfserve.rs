//! The end user's other self-service pages over plain HTTP (no browser): the
//! deactivation / check-in page and the usage page with their receipts, files of the
//! wrong kind, the end user's sign-in (CSRF, same answer for a wrong password and an
//! unknown user, the rate limit, the session cookie) and the rule it serves: a
//! user-based license takes a seat only for its user signed in. Through the router
//! without a socket, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{backends, device, license, policy, portal, request, snapshot};
use lic_core::format::{self, Credential, Receipt};
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::ops::NewLicense;
use lic_portal::{Actor, Portal};
use tower::ServiceExt as _;

const ADA: &str = "ada@example.com";
const ADA_PASSWORD: &str = "correct horse battery";
const BOB: &str = "bob@example.com";
const BOB_PASSWORD: &str = "bob's own long password";

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

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    text[from..from + len].to_string()
}

/// The CSRF cookie (`name=value`) a page sets, and its form's hidden field.
async fn form(app: &Router, path: &str) -> (String, String) {
    let page = send(app, get(path, None)).await;
    assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
    let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    let pair = cookie.split(';').next().unwrap().to_string();
    let field = between(&page.body, "name=\"csrf\" value=\"", "\"");
    assert_eq!(pair, format!("lic_csrf={field}"));
    (pair, field)
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

/// A POST of a form to `path`, urlencoded, with `cookie` and `fields`.
fn post_form(path: &str, cookie: Option<&str>, fields: &[(&str, &str)]) -> Request<Body> {
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(urlencoded(fields))).unwrap()
}

/// A POST of a form to `path` as a browser sends a file: multipart.
fn post_file(path: &str, cookie: &str, csrf: &str, file: &[u8]) -> Request<Body> {
    let boundary = "----lic-test-boundary-5e2a";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.lic\"\r\n\
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
    Request::post(path)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header(header::COOKIE, cookie)
        .body(Body::from(body))
        .unwrap()
}

fn app(portal: &Arc<Portal>) -> Router {
    http::router(AppState::new(Arc::clone(portal)).with_limiter(RateLimiter::unlimited()))
}

/// The number of live browser sessions.
async fn sessions(portal: &Portal) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM web_sessions")
        .fetch_one(portal.db().pool())
        .await
        .unwrap()
}

/// Sign in on the pages as `user`: the session cookie (`lic_user=…`) with the CSRF
/// cookie (`lic_csrf=…`), for a `Cookie` header, and the forms' CSRF field.
async fn sign_in(app: &Router, user: &str, password: &str) -> (String, String) {
    let (csrf_cookie, field) = form(app, "/signin").await;
    let answer = send(
        app,
        post_form(
            "/signin",
            Some(&csrf_cookie),
            &[("csrf", &field), ("name", user), ("password", password)],
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.headers[header::LOCATION], "/activate");
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    let pair = set.split(';').next().unwrap();
    assert!(pair.starts_with("lic_user="), "{set}");
    (format!("{csrf_cookie}; {pair}"), field)
}

/// A user-based license of `user` on a new policy of `seats` seats: its id.
async fn user_license(portal: &Portal, user: &str, seats: i64) -> String {
    let mut spec = policy(seats);
    spec.name = format!("users-{seats}-{user}");
    let p = portal.create_policy(spec, &Actor::cli()).await.unwrap();
    let created = portal
        .create_license(
            NewLicense {
                policy: p.id,
                user_id: Some(user.into()),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap();
    created.license.id
}

async fn set_password(portal: &Portal, user: &str, password: &str) {
    lic_portal::accounts::set_user_password(
        portal.db(),
        user,
        password,
        chrono::Utc::now().timestamp(),
        &Actor::cli(),
    )
    .await
    .unwrap();
}

/// A device in `dir` with a license of `key` installed (applied by the vendor).
async fn activated(
    portal: &Portal,
    dir: &std::path::Path,
    machine: &str,
    key: &str,
) -> lic_core::client::Client {
    let dev = device(dir, machine, portal.trusted_keys().await.unwrap());
    let req = dev
        .request_activation(Credential::LicenseKey(key.into()))
        .unwrap();
    let lic = portal
        .apply(req.armored().as_bytes(), &Actor::cli())
        .await
        .unwrap();
    dev.install(lic.response.as_bytes()).unwrap();
    dev
}

#[tokio::test]
async fn every_new_form_refuses_a_post_without_its_csrf_token_and_changes_nothing() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(2)).await;
        set_password(&portal, ADA, ADA_PASSWORD).await;
        let app = app(&portal);
        let dir = tempfile::tempdir().unwrap();
        let dev = activated(&portal, dir.path(), "m-1", &key).await;
        dev.consume("render-minutes", 3).unwrap();
        let report = dev.usage_report().unwrap().armored();
        let deactivation = dev.deactivate().unwrap().armored();
        let other = "0".repeat(64);
        let before = snapshot(portal.db()).await;

        for (path, text) in [
            ("/deactivate", deactivation.as_str()),
            ("/usage", report.as_str()),
        ] {
            let (cookie, field) = form(&app, path).await;
            let forged = [
                (None, vec![("csrf", field.as_str()), ("text", text)]),
                (Some(cookie.as_str()), vec![("text", text)]),
                (
                    Some(cookie.as_str()),
                    vec![("csrf", other.as_str()), ("text", text)],
                ),
            ];
            for (c, fields) in forged {
                let answer = send(&app, post_form(path, c, &fields)).await;
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{path}: {}",
                    answer.body
                );
                assert!(answer.body.contains("Reload the form"), "{}", answer.body);
                assert!(answer.body.contains(&format!("href=\"{path}\"")));
            }
            // A file sent as a browser sends it, with a wrong token: refused as well.
            let answer = send(&app, post_file(path, &cookie, &other, text.as_bytes())).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
        }
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);

        // Sign-in: no session starts without the token, even with the right password.
        let (cookie, field) = form(&app, "/signin").await;
        for (c, token) in [
            (None, field.as_str()),
            (Some(cookie.as_str()), other.as_str()),
        ] {
            let answer = send(
                &app,
                post_form(
                    "/signin",
                    c,
                    &[("csrf", token), ("name", ADA), ("password", ADA_PASSWORD)],
                ),
            )
            .await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
            assert!(!answer.headers.contains_key(header::SET_COOKIE));
        }
        assert_eq!(sessions(&portal).await, 0, "{}", db.name);

        // Sign-out needs the session's own token: with another, the session lives on.
        let (cookies, _) = sign_in(&app, ADA, ADA_PASSWORD).await;
        let page = send(&app, get("/activate", Some(&cookies))).await;
        assert!(page.body.contains("Signed in as"), "{}", page.body);
        let session_csrf = between(
            &page.body,
            "action=\"/signout\">\n      <input type=\"hidden\" name=\"csrf\" value=\"",
            "\"",
        );
        for token in [other.as_str(), field.as_str(), ""] {
            let answer = send(
                &app,
                post_form("/signout", Some(&cookies), &[("csrf", token)]),
            )
            .await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        }
        assert_eq!(sessions(&portal).await, 1, "{}", db.name);
        let page = send(&app, get("/activate", Some(&cookies))).await;
        assert!(page.body.contains("Signed in as"), "{}", page.body);
        // With it, the session ends and the cookie is cleared.
        let answer = send(
            &app,
            post_form("/signout", Some(&cookies), &[("csrf", &session_csrf)]),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cleared = answer.headers[header::SET_COOKIE].to_str().unwrap();
        assert!(cleared.starts_with("lic_user=;"), "{cleared}");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert_eq!(sessions(&portal).await, 0, "{}", db.name);
        let page = send(&app, get("/activate", Some(&cookies))).await;
        assert!(!page.body.contains("Signed in as"), "{}", page.body);
    }
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        set_password(&portal, ADA, ADA_PASSWORD).await;
        let app = app(&portal);
        let (cookie, field) = form(&app, "/signin").await;
        let mut answers = Vec::new();
        for (name, password) in [
            (ADA, "not ada's password"),
            ("nobody@example.com", "not ada's password"),
        ] {
            let answer = send(
                &app,
                post_form(
                    "/signin",
                    Some(&cookie),
                    &[("csrf", &field), ("name", name), ("password", password)],
                ),
            )
            .await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
            assert!(!answer.headers.contains_key(header::SET_COOKIE));
            assert!(answer.body.contains("sign-in-failed"), "{}", answer.body);
            // The name typed is kept in the form; the password never is.
            assert!(answer.body.contains(&format!("value=\"{name}\"")));
            assert!(!answer.body.contains(password));
            let alert = between(&answer.body, "role=\"alert\"", "</section>");
            answers.push(alert);
        }
        assert_eq!(answers[0], answers[1], "{}", db.name);
        assert_eq!(sessions(&portal).await, 0);
        // The right password signs in.
        sign_in(&app, ADA, ADA_PASSWORD).await;
        assert_eq!(sessions(&portal).await, 1);
    }
}

#[tokio::test]
async fn sign_ins_are_rate_limited_per_address() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    set_password(&portal, ADA, ADA_PASSWORD).await;
    // One attempt, then one a minute.
    let app = http::router(
        AppState::new(Arc::clone(&portal)).with_sign_in_limiter(RateLimiter::new(1, 1)),
    );
    let (cookie, field) = form(&app, "/signin").await;
    let attempt = |password: &'static str| {
        post_form(
            "/signin",
            Some(&cookie),
            &[("csrf", &field), ("name", ADA), ("password", password)],
        )
    };
    let wrong = send(&app, attempt("a wrong password")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    // Over the limit even the right password is refused, with when to try again.
    let limited = send(&app, attempt(ADA_PASSWORD)).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert!(limited.headers.contains_key(header::RETRY_AFTER));
    assert!(limited.body.contains("rate-limited"), "{}", limited.body);
    assert!(!limited.headers.contains_key(header::SET_COOKIE));
    assert_eq!(sessions(&portal).await, 0);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_ends() {
    let db = backends().await.remove(0);
    let portal = Arc::new(portal(&db).await);
    set_password(&portal, ADA, ADA_PASSWORD).await;
    for secure in [false, true] {
        let app = http::router(AppState::new(Arc::clone(&portal)).with_web(
            lic_portal::web::WebConfig {
                secure_cookies: secure,
                ..Default::default()
            },
        ));
        let page = send(&app, get("/signin", None)).await;
        let csrf = page.headers[header::SET_COOKIE].to_str().unwrap();
        let csrf_pair = csrf.split(';').next().unwrap();
        let field = between(&page.body, "name=\"csrf\" value=\"", "\"");
        let answer = send(
            &app,
            post_form(
                "/signin",
                Some(csrf_pair),
                &[("csrf", &field), ("name", ADA), ("password", ADA_PASSWORD)],
            ),
        )
        .await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        let name = if secure {
            "__Host-lic_user="
        } else {
            "lic_user="
        };
        assert!(cookie.starts_with(name), "{cookie}");
        for part in [
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Strict",
            "; Max-Age=3600",
        ] {
            assert!(cookie.contains(part), "{part} not in {cookie}");
        }
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
    }
}

#[tokio::test]
async fn the_deactivation_page_frees_the_seat_and_offers_the_receipt() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(2)).await;
        let app = app(&portal);
        let dir = tempfile::tempdir().unwrap();
        let dev = activated(&portal, dir.path(), "m-1", &key).await;
        dev.consume("render-minutes", 9).unwrap();
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);
        let deactivation = dev.deactivate().unwrap();

        let (cookie, field) = form(&app, "/deactivate").await;
        // A browser sends the file as it is: here its binary form.
        let done = send(
            &app,
            post_file("/deactivate", &cookie, &field, deactivation.bytes()),
        )
        .await;
        assert_eq!(done.status, StatusCode::OK, "{}: {}", db.name, done.body);
        assert!(done.body.contains("The seat is free"), "{}", done.body);
        assert!(done.body.contains("render-minutes=9"), "{}", done.body);
        assert!(done.body.contains("activate it there"), "{}", done.body);
        let link = between(&done.body, "href=\"/download/", "\"");
        let file = send(&app, get(&format!("/download/{link}"), None)).await;
        assert_eq!(file.status, StatusCode::OK);
        assert_eq!(
            file.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"photo-pro-deactivation.receipt\""
        );
        let receipt =
            format::open::<Receipt>(file.body.as_bytes(), &portal.trusted_keys().await.unwrap())
                .unwrap();
        assert_eq!(receipt.payload().state, "deactivated");
        assert_eq!(receipt.payload().file_kind, "deactivation");

        // The seat is free, the activation deactivated, its final usage counted.
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.seats_used, 0, "{}", db.name);
        let activation = portal
            .activation(&receipt.payload().activation_id)
            .await
            .unwrap();
        assert_eq!(activation.state, "deactivated");
        assert_eq!(activation.usage["render-minutes"], 9);

        // The same file again (pasted): the same receipt, nothing changed.
        let before = snapshot(portal.db()).await;
        let again = send(
            &app,
            post_form(
                "/deactivate",
                Some(&cookie),
                &[("csrf", &field), ("text", &deactivation.armored())],
            ),
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert!(again.body.contains("applied before"), "{}", again.body);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test]
async fn the_usage_page_shows_what_was_counted_and_offers_the_receipt() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (license_id, key) = license(&portal, policy(2)).await;
        let app = app(&portal);
        let dir = tempfile::tempdir().unwrap();
        let dev = activated(&portal, dir.path(), "m-1", &key).await;
        dev.consume("render-minutes", 4).unwrap();
        let report = dev.usage_report().unwrap().armored();

        let (cookie, field) = form(&app, "/usage").await;
        let done = send(
            &app,
            post_form(
                "/usage",
                Some(&cookie),
                &[("csrf", &field), ("text", &report)],
            ),
        )
        .await;
        assert_eq!(done.status, StatusCode::OK, "{}: {}", db.name, done.body);
        assert!(done.body.contains("Usage counted"), "{}", done.body);
        let table = between(&done.body, "<table id=\"counted\">", "</table>");
        assert!(
            table.contains("<td>render-minutes</td><td>4</td>"),
            "{table}"
        );
        let link = between(&done.body, "href=\"/download/", "\"");
        let file = send(&app, get(&format!("/download/{link}"), None)).await;
        assert_eq!(
            file.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"photo-pro-usage.receipt\""
        );
        let receipt =
            format::open::<Receipt>(file.body.as_bytes(), &portal.trusted_keys().await.unwrap())
                .unwrap();
        assert_eq!(receipt.payload().file_kind, "usage-report");
        // Counted once: the seat is still held, the total is the report's.
        let info = portal.license(&license_id).await.unwrap();
        assert_eq!(info.seats_used, 1);
        let activation = portal
            .activation(&receipt.payload().activation_id)
            .await
            .unwrap();
        assert_eq!(activation.usage["render-minutes"], 4, "{}", db.name);
    }
}

#[tokio::test]
async fn a_file_of_the_wrong_kind_is_refused_naming_its_page_and_changes_nothing() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let (_, key) = license(&portal, policy(3)).await;
        let app = app(&portal);
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dev = activated(&portal, a.path(), "m-1", &key).await;
        dev.consume("render-minutes", 2).unwrap();
        let report = dev.usage_report().unwrap().armored();
        let deactivation = dev.deactivate().unwrap().armored();
        let req = String::from_utf8(request(b.path(), "m-2", &key)).unwrap();
        let dev_b = device(b.path(), "m-2", portal.trusted_keys().await.unwrap());
        let lic = portal
            .apply(req.as_bytes(), &Actor::cli())
            .await
            .unwrap()
            .response;
        dev_b.install(lic.as_bytes()).unwrap();
        let before = snapshot(portal.db()).await;

        let cases = [
            ("/deactivate", req.as_str(), "/activate"),
            ("/deactivate", report.as_str(), "/usage"),
            ("/usage", deactivation.as_str(), "/deactivate"),
            ("/usage", req.as_str(), "/activate"),
            ("/activate", deactivation.as_str(), "/deactivate"),
            ("/activate", report.as_str(), "/usage"),
            ("/usage", lic.as_str(), "lic install"),
        ];
        for (page, text, named) in cases {
            let (cookie, field) = form(&app, page).await;
            let answer = send(
                &app,
                post_form(page, Some(&cookie), &[("csrf", &field), ("text", text)]),
            )
            .await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{page}: {}",
                answer.body
            );
            let alert = between(&answer.body, "role=\"alert\"", "</section>");
            assert!(alert.contains("wrong-kind"), "{page}: {alert}");
            assert!(alert.contains(named), "{page} should name {named}: {alert}");
            // The text is kept in the box.
            assert!(answer.body.contains("-----BEGIN"), "{}", answer.body);
        }
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
    }
}

#[tokio::test]
async fn a_user_based_license_takes_a_seat_only_for_its_signed_in_user() {
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let license_id = user_license(&portal, ADA, 2).await;
        set_password(&portal, ADA, ADA_PASSWORD).await;
        set_password(&portal, BOB, BOB_PASSWORD).await;
        let app = app(&portal);
        let dir = tempfile::tempdir().unwrap();
        let dev = device(dir.path(), "m-1", portal.trusted_keys().await.unwrap());
        let req = dev
            .request_activation(Credential::User(ADA.into()))
            .unwrap()
            .armored();
        let before = snapshot(portal.db()).await;

        // The anonymous API: refused, in the API's words.
        let api = send(
            &app,
            Request::post("/api/v1/activate")
                .body(Body::from(req.clone()))
                .unwrap(),
        )
        .await;
        assert_eq!(api.status, StatusCode::FORBIDDEN, "{}", api.body);
        let api: serde_json::Value = serde_json::from_str(&api.body).unwrap();
        assert_eq!(api["error"]["code"], "sign-in-required", "{api}");
        assert!(
            api["error"]["message"].as_str().unwrap().contains(ADA),
            "{api}"
        );

        // The page without a session: the same refusal, and a way to sign in.
        let (cookie, field) = form(&app, "/activate").await;
        let page = send(
            &app,
            post_form(
                "/activate",
                Some(&cookie),
                &[("csrf", &field), ("text", &req)],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("sign-in-required"), "{}", page.body);
        assert!(page.body.contains("id=\"signin-link\" href=\"/signin\""));

        // Another user signed in: refused too.
        let (bob, bob_field) = sign_in(&app, BOB, BOB_PASSWORD).await;
        let page = send(
            &app,
            post_form(
                "/activate",
                Some(&bob),
                &[("csrf", &bob_field), ("text", &req)],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("sign-in-required"), "{}", page.body);
        assert_eq!(snapshot(portal.db()).await, before, "{}", db.name);
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 0);

        // Ada signed in: the license, which installs; a seat is taken.
        let (ada, ada_field) = sign_in(&app, ADA, ADA_PASSWORD).await;
        let ready = send(
            &app,
            post_form(
                "/activate",
                Some(&ada),
                &[("csrf", &ada_field), ("text", &req)],
            ),
        )
        .await;
        assert_eq!(ready.status, StatusCode::OK, "{}: {}", db.name, ready.body);
        assert!(ready.body.contains("Signed in as"), "{}", ready.body);
        let link = between(&ready.body, "href=\"/download/", "\"");
        let file = send(&app, get(&format!("/download/{link}"), None)).await;
        dev.install(file.body.as_bytes()).unwrap();
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 1);
        // The audit log names her, and where from.
        let actor: String = sqlx::query_scalar(
            "SELECT actor FROM audit WHERE action LIKE 'activation%' ORDER BY at DESC LIMIT 1",
        )
        .fetch_one(portal.db().pool())
        .await
        .unwrap();
        assert!(actor.starts_with(&format!("user:{ADA}@")), "{actor}");

        // The same request again, without the session: refused, though granted before.
        let after = snapshot(portal.db()).await;
        let page = send(
            &app,
            post_form(
                "/activate",
                Some(&cookie),
                &[("csrf", &field), ("text", &req)],
            ),
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert_eq!(snapshot(portal.db()).await, after, "{}", db.name);

        // Staff keep applying such requests (POST /api/v1/apply, lic-portal apply).
        let dir2 = tempfile::tempdir().unwrap();
        let dev2 = device(dir2.path(), "m-2", portal.trusted_keys().await.unwrap());
        let req2 = dev2
            .request_activation(Credential::User(ADA.into()))
            .unwrap()
            .armored();
        let applied = portal.apply(req2.as_bytes(), &Actor::cli()).await.unwrap();
        dev2.install(applied.response.as_bytes()).unwrap();
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 2);
    }
}

#[tokio::test]
async fn a_check_in_file_on_the_deactivation_page_returns_the_seat_with_a_receipt() {
    use lic_core::format::{Bytes32, CheckIn, JournalHead, LeaseAction, LeaseRequest, Nonce};
    use lic_core::keys::SecretKey;
    use lic_portal::ops::Policy;
    for db in backends().await {
        let portal = Arc::new(portal(&db).await);
        let p = portal
            .create_policy(
                Policy {
                    product: "photo-pro".into(),
                    name: "floating-1".into(),
                    seats: 1,
                    floating: true,
                    lease_secs: 60,
                    max_checkout_hours: Some(24),
                    ..Policy::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let created = portal
            .create_license(
                NewLicense {
                    policy: p.id,
                    ..Default::default()
                },
                &Actor::cli(),
            )
            .await
            .unwrap();
        let (license_id, key) = (created.license.id, created.key.unwrap());
        let app = app(&portal);
        // A machine checks a seat out for offline use (online, through the API).
        let device = SecretKey::generate();
        let checkout = LeaseRequest {
            product: "photo-pro".into(),
            credential: Credential::LicenseKey(key),
            fingerprint: [(
                "machine-id".to_string(),
                Bytes32(device.public().to_bytes()),
            )]
            .into(),
            action: LeaseAction::Checkout,
            instance: Nonce([7; 16]),
            feature: None,
            hours: Some(8),
            journal: Some(JournalHead::first()),
            nonce: Nonce([9; 16]),
            created: chrono::Utc::now(),
            client: "web-test".into(),
            variables: Default::default(),
        };
        let signed = format::sign(&checkout, &device).unwrap();
        let answer = send(
            &app,
            Request::post("/api/v1/checkout")
                .body(Body::from(signed.armored()))
                .unwrap(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let answer: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        let activation = answer["activation"].as_str().unwrap().to_string();
        assert!(portal.activation(&activation).await.unwrap().held);

        // Back early: the check-in file (`lic checkin --out FILE`) sent on the page.
        let check_in = CheckIn {
            activation_id: activation.clone(),
            product: "photo-pro".into(),
            counters: Default::default(),
            journal: JournalHead {
                seq: 1,
                prev: format::file_hash(signed.bytes()),
                trail: Vec::new(),
            },
            created: chrono::Utc::now(),
            variables: Default::default(),
        };
        let file = format::sign(&check_in, &device).unwrap();
        let (cookie, field) = form(&app, "/deactivate").await;
        let done = send(
            &app,
            post_file("/deactivate", &cookie, &field, file.armored().as_bytes()),
        )
        .await;
        assert_eq!(done.status, StatusCode::OK, "{}: {}", db.name, done.body);
        assert!(done.body.contains("back in the pool"), "{}", done.body);
        let link = between(&done.body, "href=\"/download/", "\"");
        let receipt = send(&app, get(&format!("/download/{link}"), None)).await;
        assert_eq!(
            receipt.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"photo-pro-checkin.receipt\""
        );
        let receipt = format::open::<Receipt>(
            receipt.body.as_bytes(),
            &portal.trusted_keys().await.unwrap(),
        )
        .unwrap();
        assert_eq!(receipt.payload().file_kind, "check-in");
        let shown = portal.activation(&activation).await.unwrap();
        assert_eq!(shown.state, "deactivated", "{}", db.name);
        assert!(!shown.held);
        assert_eq!(portal.license(&license_id).await.unwrap().seats_used, 0);
    }
}
