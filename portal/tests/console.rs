//! The console's pages over plain HTTP (no browser), through the router without a socket,
//! on SQLite and on PostgreSQL: a walk over every page of `lic_portal::console::pages()`
//! for every kind of account (none, read-only, support, admin, an admin of another
//! product), every form refused without the session's CSRF token (nothing changed), the
//! license search and its scope, the refresh file (reason required, the file an
//! attachment, the reason in the audit log), a deactivation refused before the Offline
//! Expiry Date with the date, an end user's password, the audit log's rules.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{TestDb, backends, license, policy, portal, request, snapshot};
use lic_portal::accounts;
use lic_portal::auth::Role;
use lic_portal::console::{ConsolePage, pages};
use lic_portal::http::{self, AppState, RateLimiter};
use lic_portal::ops::NewLicense;
use lic_portal::{Actor, Portal};
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

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in {text}"))
        + start.len();
    let len = text[from..].find(end).unwrap();
    text[from..from + len].to_string()
}

fn enc(s: &str) -> String {
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

fn urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A signed-in staff member: the session cookie (`name=value`) and the CSRF token.
#[derive(Clone)]
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    fn get(&self, path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Request<Body> {
        Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(urlencoded(fields)))
            .unwrap()
    }

    /// The same fields as a browser sends a form with `enctype="multipart/form-data"`.
    fn post_multipart(&self, path: &str, fields: &[(&str, &str)]) -> Request<Body> {
        let boundary = "----lic-console-test-3b9e";
        let mut body = String::new();
        for (name, value) in fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap()
    }

    /// A POST of `fields` to `path`, encoded as the console's own form for it is.
    fn send_form(&self, w: &World, path: &str, fields: &[(&str, &str)]) -> Request<Body> {
        if w.multipart.iter().any(|p| p == path) {
            self.post_multipart(path, fields)
        } else {
            self.post(path, fields)
        }
    }
}

/// Sign in through the sign-in form, as a browser does.
async fn sign_in(app: &Router, name: &str, password: &str) -> Session {
    let form = send(
        app,
        Request::get("/console/signin").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf_cookie = form.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let field = between(&form.body, "name=\"csrf\" value=\"", "\"");
    let signed = send(
        app,
        Request::post("/console/signin")
            .header(header::COOKIE, &csrf_cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(urlencoded(&[
                ("csrf", &field),
                ("name", name),
                ("password", password),
                ("next", "/console"),
            ])))
            .unwrap(),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let cookie = signed.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("lic_staff="), "{cookie}");
    let home = send(
        app,
        Request::get("/console")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    let csrf = between(&home.body, "name=\"csrf\" value=\"", "\"");
    Session { cookie, csrf }
}

const PASSWORD: &str = "correct horse battery staple";

/// A portal with `photo-pro` (a key license with one device, a user-based license) and
/// `video-pro` (a key license); staff of every kind.
struct World {
    _db: TestDb,
    portal: Arc<Portal>,
    app: Router,
    /// The key license of photo-pro, its key, its device.
    license: String,
    key: String,
    activation: String,
    /// A user-based license of photo-pro, and its user.
    user_license: String,
    user: String,
    /// A license of video-pro.
    video_license: String,
    /// The POST paths whose form in the console is `multipart/form-data`.
    multipart: Vec<String>,
    _device_dir: tempfile::TempDir,
}

async fn world(db: TestDb) -> World {
    let portal = portal(&db).await;
    let (license, key) = license(&portal, policy(3)).await;
    let device_dir = tempfile::tempdir().unwrap();
    let applied = portal
        .apply(
            &request(device_dir.path(), "machine-1", &key),
            &Actor::cli(),
        )
        .await
        .unwrap();
    let activation = applied.activation.unwrap();
    let mut user_policy = policy(2);
    user_policy.name = "per-user".into();
    let up = portal
        .create_policy(user_policy, &Actor::cli())
        .await
        .unwrap();
    let user = "ann@example.com".to_string();
    let user_license = portal
        .create_license(
            NewLicense {
                policy: up.id,
                user_id: Some(user.clone()),
                customer: Some("Ann's Studio".into()),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .unwrap()
        .license
        .id;
    portal
        .create_product("video-pro", "Video Pro", &Actor::cli())
        .await
        .unwrap();
    let mut video = policy(1);
    video.product = "video-pro".into();
    let (video_license, _) = common::license(&portal, video).await;
    let now = chrono::Utc::now().timestamp();
    for (name, role, products) in [
        ("rita", Role::ReadOnly, None),
        ("sam", Role::Support, None),
        ("ada", Role::Admin, None),
        ("otto", Role::Admin, Some(vec!["video-pro".to_string()])),
        ("vera", Role::ReadOnly, Some(vec!["video-pro".to_string()])),
    ] {
        accounts::create_staff(
            portal.db(),
            name,
            role,
            products,
            PASSWORD,
            now,
            &Actor::cli(),
        )
        .await
        .unwrap();
    }
    let portal = Arc::new(portal);
    let app =
        http::router(AppState::new(portal.clone()).with_sign_in_limiter(RateLimiter::unlimited()));
    let mut w = World {
        _db: db,
        portal,
        app,
        license,
        key,
        activation,
        user_license,
        user,
        video_license,
        multipart: Vec::new(),
        _device_dir: device_dir,
    };
    // How each form is sent: read from the console's own pages, as an admin sees them.
    let ada = sign_in(&w.app, "ada", PASSWORD).await;
    for page in pages().iter().filter(|p| p.method == "GET") {
        let body = send(&w.app, ada.get(&w.path(page))).await.body;
        for form in body.split("<form").skip(1) {
            let tag = &form[..form.find('>').unwrap_or(form.len())];
            if tag.contains("multipart/form-data") && tag.contains("action=\"") {
                let action = between(tag, "action=\"", "\"");
                if !w.multipart.contains(&action) {
                    w.multipart.push(action);
                }
            }
        }
    }
    w
}

impl World {
    fn path(&self, page: &ConsolePage) -> String {
        page.path
            .replace("{license}", &self.license)
            .replace("{activation}", &self.activation)
    }

    /// Every table, the audit log's and the accounts' sizes too.
    async fn snapshot(&self) -> String {
        let db = self.portal.db();
        let mut out = snapshot(db).await;
        for table in ["audit", "end_users", "staff"] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(db.pool())
                .await
                .unwrap();
            out.push_str(&format!("{table}: {n}\n"));
        }
        out
    }
}

/// What a signed-in account should get from a page: `None` for "allowed" (a page, or a
/// refusal of the empty form it was sent), else the status.
fn expected(page: &ConsolePage, role: Role, products: Option<&[&str]>) -> Option<StatusCode> {
    let principal = lic_portal::auth::Principal {
        token_id: String::new(),
        name: String::new(),
        role,
        products: products.map(|p| p.iter().map(|s| s.to_string()).collect()),
    };
    if let Some(action) = page.needs
        && !principal.can(action)
    {
        return Some(StatusCode::FORBIDDEN);
    }
    if products.is_some() {
        if page.path.contains('{') {
            // An object of photo-pro, which the account does not see.
            return Some(StatusCode::NOT_FOUND);
        }
        if page.path == "/console/audit" {
            // As the API: a scoped account names one object of its products.
            return Some(StatusCode::FORBIDDEN);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_each_account_as_it_needs() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let all = pages();
        assert!(
            all.iter()
                .any(|p| p.path == "/console/activations/{activation}/refresh"),
            "{all:?}"
        );

        // Not signed in: a GET goes to the sign-in form and back, anything else is 401.
        for page in &all {
            let path = w.path(page);
            let request = Request::builder()
                .method(page.method)
                .uri(&path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::empty())
                .unwrap();
            let a = send(&w.app, request).await;
            if page.method == "GET" {
                assert_eq!(a.status, StatusCode::SEE_OTHER, "{name} {path}");
                let to = a.headers[header::LOCATION].to_str().unwrap();
                assert!(to.starts_with("/console/signin?next=/console"), "{to}");
            } else {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{name} {path}");
                assert!(a.body.contains("not signed in"), "{}", a.body);
            }
        }

        for (staff, role, products) in [
            ("rita", Role::ReadOnly, None),
            ("sam", Role::Support, None),
            ("ada", Role::Admin, None),
            ("otto", Role::Admin, Some(&["video-pro"][..])),
        ] {
            let s = sign_in(&w.app, staff, PASSWORD).await;
            for page in &all {
                let path = w.path(page);
                let before = w.snapshot().await;
                let a = if page.method == "GET" {
                    send(&w.app, s.get(&path)).await
                } else {
                    // The session's token and the device (for a form that names it), no
                    // reason or value: refused as incomplete, or for the role or scope,
                    // never done.
                    send(
                        &w.app,
                        s.send_form(
                            &w,
                            &path,
                            &[("csrf", &s.csrf), ("activation", &w.activation)],
                        ),
                    )
                    .await
                };
                let what = format!("{name}: {staff} {} {path}: {}", page.method, a.status);
                match expected(page, role, products) {
                    Some(status) => {
                        assert_eq!(a.status, status, "{what}\n{}", a.body);
                        assert!(a.body.contains("id=\"hint\""), "{what}: a hint\n{}", a.body);
                        assert!(a.body.contains("id=\"code\""), "{what}: a code");
                    }
                    None if page.method == "GET" => {
                        assert_eq!(a.status, StatusCode::OK, "{what}\n{}", a.body);
                        assert!(a.body.contains(&format!("{staff} (")), "{what}: framed");
                    }
                    None => {
                        assert!(
                            a.status.is_client_error()
                                && ![401, 403, 404].contains(&a.status.as_u16()),
                            "{what}\n{}",
                            a.body
                        );
                    }
                }
                if page.method == "POST" {
                    assert_eq!(before, w.snapshot().await, "{what}: changed something");
                }
            }
            // A scoped account reads the log of one object of its products.
            if products.is_some() {
                let a = send(
                    &w.app,
                    s.get(&format!("/console/audit?subject={}", w.video_license)),
                )
                .await;
                assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
                assert!(a.body.contains("license.create"), "{}", a.body);
                assert!(!a.body.contains(&w.license), "{}", a.body);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_form_refuses_a_post_without_the_session_token() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let ada = sign_in(&w.app, "ada", PASSWORD).await;
        let sam = sign_in(&w.app, "sam", PASSWORD).await;
        // Fields that would do it, with the token.
        let full: &[(&str, &str)] = &[
            ("reason", "customer asked"),
            ("extend_days", "30"),
            ("password", "a new password for ann"),
            ("confirm", "a new password for ann"),
        ];
        let mut posts: Vec<String> = pages()
            .iter()
            .filter(|p| p.method == "POST")
            .map(|p| w.path(p))
            .collect();
        posts.push(format!("/console/licenses/{}/password", w.user_license));
        posts.push("/console/signout".into());
        for path in &posts {
            for (who, s) in [("ada", &ada), ("sam", &sam)] {
                let tokens: [(&str, Option<&str>); 3] = [
                    ("missing", None),
                    ("wrong", Some("not-the-token")),
                    (
                        "another session's",
                        Some(if who == "ada" { &sam.csrf } else { &ada.csrf }),
                    ),
                ];
                for (kind, token) in tokens {
                    let before = w.snapshot().await;
                    let mut fields = full.to_vec();
                    if let Some(t) = token {
                        fields.push(("csrf", t));
                    }
                    let a = send(&w.app, s.send_form(&w, path, &fields)).await;
                    let what = format!("{name}: {who}, {kind} token, POST {path}");
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}\n{}", a.body);
                    if who == "ada" {
                        // Allowed everything else: refused for the token alone.
                        assert!(a.body.contains("nothing was done"), "{what}\n{}", a.body);
                    }
                    assert_eq!(before, w.snapshot().await, "{what}: changed something");
                }
            }
        }
        // The sessions are still there: sign-out was refused.
        assert_eq!(
            send(&w.app, ada.get("/console")).await.status,
            StatusCode::OK
        );
        assert!(
            !accounts::user_has_password(w.portal.db(), &w.user)
                .await
                .unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_finds_licenses_by_what_support_is_told_within_the_scope() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let sam = sign_in(&w.app, "sam", PASSWORD).await;
        let hint: String = w.key.chars().filter(char::is_ascii_alphanumeric).collect();
        let hint = &hint[hint.len() - 4..];
        for (q, finds) in [
            (w.key.clone(), &w.license),
            (w.key.to_lowercase().replace('-', " "), &w.license),
            (hint.to_string(), &w.license),
            (w.license[..8].to_string(), &w.license),
            (w.user.clone(), &w.user_license),
        ] {
            let a = send(&w.app, sam.get(&format!("/console/licenses?q={}", enc(&q)))).await;
            assert_eq!(a.status, StatusCode::OK, "{name} {q}: {}", a.body);
            assert!(
                a.body
                    .contains(&format!("href=\"/console/licenses/{finds}\"")),
                "{name} {q}: {}",
                a.body
            );
        }
        let a = send(&w.app, sam.get("/console/licenses?q=nothing-like-it")).await;
        assert!(a.body.contains("No license matches"), "{}", a.body);
        let a = send(
            &w.app,
            sam.get(&format!(
                "/console/licenses?customer={}",
                enc("Ann's Studio")
            )),
        )
        .await;
        assert!(a.body.contains(&w.user_license), "{}", a.body);
        assert!(!a.body.contains(&w.license), "{}", a.body);

        // Every license, by product: photo-pro's three are not video-pro's.
        let a = send(&w.app, sam.get("/console/licenses?product=video-pro")).await;
        assert!(a.body.contains(&w.video_license), "{}", a.body);
        assert!(!a.body.contains(&w.license), "{}", a.body);

        // An account of video-pro sees no other product's license, whatever it asks.
        let vera = sign_in(&w.app, "vera", PASSWORD).await;
        for q in [
            "",
            &format!("q={}", enc(&w.key)),
            "q=lic_",
            &format!("q={}", enc(&w.user)),
        ] {
            let a = send(&w.app, vera.get(&format!("/console/licenses?{q}"))).await;
            assert_eq!(a.status, StatusCode::OK, "{name} {q}: {}", a.body);
            assert!(!a.body.contains(&w.license), "{name} {q}: {}", a.body);
            assert!(!a.body.contains(&w.user_license), "{name} {q}: {}", a.body);
            assert!(!a.body.contains("photo-pro"), "{name} {q}: {}", a.body);
        }
        let a = send(&w.app, vera.get("/console/licenses?q=lic_")).await;
        assert!(a.body.contains(&w.video_license), "{}", a.body);
        // Naming the other product is "not found", as the API says it.
        let a = send(&w.app, vera.get("/console/licenses?product=photo-pro")).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
        assert!(a.body.contains("id=\"hint\""), "{}", a.body);
        // And so is the license, in the words of one that does not exist.
        let theirs = send(
            &w.app,
            vera.get(&format!("/console/licenses/{}", w.license)),
        )
        .await;
        let missing = send(
            &w.app,
            vera.get("/console/licenses/lic_00000000000000000000"),
        )
        .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(
            between(&theirs.body, "id=\"message\">", "<").replace(&w.license, "ID"),
            between(&missing.body, "id=\"message\">", "<")
                .replace("lic_00000000000000000000", "ID")
        );
        let theirs = send(
            &w.app,
            vera.get(&format!("/console/activations/{}", w.activation)),
        )
        .await;
        let missing = send(
            &w.app,
            vera.get("/console/activations/act_00000000000000000000"),
        )
        .await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND);
        assert_eq!(
            between(&theirs.body, "id=\"message\">", "<").replace(&w.activation, "ID"),
            between(&missing.body, "id=\"message\">", "<")
                .replace("act_00000000000000000000", "ID")
        );

        // A search too long is refused in words, not an error page.
        let a = send(
            &w.app,
            sam.get(&format!("/console/licenses?q={}", "x".repeat(300))),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        assert!(a.body.contains("id=\"hint\""), "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_license_and_device_pages_show_what_support_needs() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let rita = sign_in(&w.app, "rita", PASSWORD).await;
        let a = send(
            &w.app,
            rita.get(&format!("/console/licenses/{}", w.license)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        assert!(
            a.body
                .contains("<span id=\"seats-used\">1</span> of <span id=\"seats\">3</span>"),
            "{}",
            a.body
        );
        for shown in [
            "standard-3",
            "time-limited",
            "export-pdf",
            "render-minutes",
            "limit 1000",
        ] {
            assert!(a.body.contains(shown), "{name}: {shown} in {}", a.body);
        }
        // A read-only account gets no form and no admin link.
        assert!(
            !a.body
                .contains("<form method=\"post\" action=\"/console/licenses"),
            "{}",
            a.body
        );
        assert!(!a.body.contains("/edit\""), "{}", a.body);
        assert!(
            a.body.contains(&format!("/console/usage/{}", w.license)),
            "{}",
            a.body
        );

        let a = send(
            &w.app,
            rita.get(&format!("/console/licenses/{}/devices", w.license)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        let activation = w.portal.activation(&w.activation).await.unwrap();
        assert!(a.body.contains(&activation.device_kid), "{}", a.body);
        assert!(
            a.body
                .contains(&format!("href=\"/console/activations/{}\"", w.activation))
        );

        // A warning in the device's journal is shown on both pages.
        sqlx::query(
            "INSERT INTO activation_flags (activation, kind, at, detail, file_hash) \
             VALUES ($1, 'fork', $2, 'two devices continued one journal', '')",
        )
        .bind(&w.activation)
        .bind(chrono::Utc::now().timestamp())
        .execute(w.portal.db().pool())
        .await
        .unwrap();
        let a = send(
            &w.app,
            rita.get(&format!("/console/licenses/{}/devices", w.license)),
        )
        .await;
        assert!(a.body.contains("⚠ 1:</span> fork"), "{name}: {}", a.body);
        let a = send(
            &w.app,
            rita.get(&format!("/console/activations/{}", w.activation)),
        )
        .await;
        assert!(a.body.contains("id=\"journal-warnings\""), "{}", a.body);
        assert!(
            a.body.contains("two devices continued one journal"),
            "{}",
            a.body
        );
        // Flags past the limit of a kind are counted on the last one kept: the pages
        // count them too.
        sqlx::query(
            "INSERT INTO activation_flags (activation, kind, at, detail, file_hash, repeats) \
             VALUES ($1, 'gap', $2, 'a report was skipped', 'ab', 41)",
        )
        .bind(&w.activation)
        .bind(chrono::Utc::now().timestamp())
        .execute(w.portal.db().pool())
        .await
        .unwrap();
        let a = send(
            &w.app,
            rita.get(&format!("/console/licenses/{}/devices", w.license)),
        )
        .await;
        assert!(
            a.body.contains("⚠ 43:</span> fork, gap ×42"),
            "{name}: {}",
            a.body
        );
        let a = send(
            &w.app,
            rita.get(&format!("/console/activations/{}", w.activation)),
        )
        .await;
        assert!(a.body.contains("Journal warnings (43)"), "{}", a.body);
        assert!(
            a.body.contains("and 41 more of this kind since"),
            "{}",
            a.body
        );
        // The fingerprint's components by name (their values are never sent).
        let fingerprint = between(&a.body, "id=\"fingerprint\">", "</dd>");
        assert!(fingerprint.contains("machine-id"), "{fingerprint}");
        // Read-only: no refresh, no deactivation.
        assert!(!a.body.contains("/refresh\""), "{}", a.body);
        assert!(!a.body.contains("/deactivate\""), "{}", a.body);

        let ada = sign_in(&w.app, "ada", PASSWORD).await;
        let a = send(&w.app, ada.get(&format!("/console/licenses/{}", w.license))).await;
        assert!(
            a.body
                .contains(&format!("/console/licenses/{}/edit", w.license))
        );
        let a = send(
            &w.app,
            ada.get(&format!("/console/activations/{}", w.activation)),
        )
        .await;
        assert!(
            a.body.contains("Download license refresh file"),
            "{}",
            a.body
        );
        assert!(a.body.contains("Deactivate on the server"), "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_file_needs_a_reason_and_the_log_keeps_it() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let sam = sign_in(&w.app, "sam", PASSWORD).await;
        let path = format!("/console/activations/{}/refresh", w.activation);
        for reason in ["", "   "] {
            let before = w.snapshot().await;
            let a = send(
                &w.app,
                sam.post(
                    &path,
                    &[
                        ("csrf", &sam.csrf),
                        ("reason", reason),
                        ("extend_days", "30"),
                    ],
                ),
            )
            .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.body);
            assert!(a.body.contains("give a reason"), "{}", a.body);
            assert!(a.body.contains("id=\"hint\""), "{}", a.body);
            // The form is there again, with what was typed.
            assert!(a.body.contains("value=\"30\""), "{}", a.body);
            assert_eq!(before, w.snapshot().await, "{name}: changed something");
        }
        for bad in [
            ("extend_days", "soon"),
            ("expires", "31/12/2030"),
            ("features", "a=lots"),
        ] {
            let a = send(
                &w.app,
                sam.post(&path, &[("csrf", &sam.csrf), ("reason", "r"), bad]),
            )
            .await;
            assert_eq!(
                a.status,
                StatusCode::BAD_REQUEST,
                "{name} {bad:?}: {}",
                a.body
            );
        }

        let reason = "customer renewed for a month, ticket 4711";
        let a = send(
            &w.app,
            sam.post(
                &path,
                &[
                    ("csrf", &sam.csrf),
                    ("reason", reason),
                    ("extend_days", "30"),
                    ("clock_floor", "on"),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.body);
        assert_eq!(
            a.headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"license_refresh.lic\""
        );
        assert!(a.body.starts_with("-----BEGIN"), "{}", a.body);
        assert_eq!(w.portal.activation(&w.activation).await.unwrap().serial, 2);

        let a = send(
            &w.app,
            sam.get(&format!("/console/audit?subject={}", w.activation)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains("activation.refresh"), "{}", a.body);
        assert!(a.body.contains(reason), "{}", a.body);
        assert!(a.body.contains("staff:sam"), "{}", a.body);
        // Filtered by actor and action, and by a day range that holds today.
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let a = send(
            &w.app,
            sam.get(&format!(
                "/console/audit?actor=staff%3Asam&action=activation.refresh&since={today}&until={today}"
            )),
        )
        .await;
        assert!(a.body.contains(reason), "{}", a.body);
        assert!(!a.body.contains("license.create"), "{}", a.body);
        let cli = Actor::cli().0;
        let a = send(
            &w.app,
            sam.get(&format!("/console/audit?actor={}", enc(&cli))),
        )
        .await;
        assert!(!a.body.contains(reason), "{}", a.body);
        assert!(a.body.contains("license.create"), "{}", a.body);
        let a = send(&w.app, sam.get("/console/audit?until=2001-01-01")).await;
        assert!(a.body.contains("No entry matches"), "{}", a.body);
        let a = send(&w.app, sam.get("/console/audit?since=yesterday")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_before_the_offline_expiry_date_is_refused_with_the_date() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let ada = sign_in(&w.app, "ada", PASSWORD).await;
        let path = format!("/console/activations/{}/deactivate", w.activation);
        // The seat checked out for offline use for two more days (as a checkout sets it).
        let oed = chrono::Utc::now().timestamp() + 2 * 86_400;
        sqlx::query("UPDATE activations SET offline_expiry = $1 WHERE id = $2")
            .bind(oed)
            .bind(&w.activation)
            .execute(w.portal.db().pool())
            .await
            .unwrap();
        let day = chrono::DateTime::from_timestamp(oed, 0)
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        let page = send(
            &w.app,
            ada.get(&format!("/console/activations/{}", w.activation)),
        )
        .await;
        assert!(page.body.contains("id=\"oed-ahead\""), "{}", page.body);
        assert!(page.body.contains(&day), "{}", page.body);

        let before = w.snapshot().await;
        let a = send(
            &w.app,
            ada.post(&path, &[("csrf", &ada.csrf), ("reason", "lost laptop")]),
        )
        .await;
        assert_eq!(a.status, StatusCode::CONFLICT, "{name}: {}", a.body);
        let message = between(&a.body, "id=\"message\">", "</p>");
        assert!(message.contains(&day), "{name}: the date in {message}");
        assert!(a.body.contains("id=\"hint\""), "{}", a.body);
        assert_eq!(before, w.snapshot().await, "{name}: changed something");

        // Without a reason: refused too.
        sqlx::query("UPDATE activations SET offline_expiry = NULL WHERE id = $1")
            .bind(&w.activation)
            .execute(w.portal.db().pool())
            .await
            .unwrap();
        let before = w.snapshot().await;
        let a = send(
            &w.app,
            ada.post(&path, &[("csrf", &ada.csrf), ("reason", " ")]),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.body);
        assert_eq!(before, w.snapshot().await);

        // After the OED (here: none), with a reason, it is done and audited.
        let a = send(
            &w.app,
            ada.post(&path, &[("csrf", &ada.csrf), ("reason", "lost laptop")]),
        )
        .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{name}: {}", a.body);
        let activation = w.portal.activation(&w.activation).await.unwrap();
        assert_eq!(activation.state, "deactivated");
        let lic = w.portal.license(&w.license).await.unwrap();
        assert_eq!(lic.seats_used, 0);
        let log = w.portal.audit_log(10, Some(&w.activation)).await.unwrap();
        assert!(
            log.iter()
                .any(|e| e.action == "activation.deactivate.server"
                    && e.reason.as_deref() == Some("lost laptop")
                    && e.actor == "staff:ada"),
            "{log:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_sets_an_end_users_password() {
    for db in backends().await {
        let name = db.name;
        let w = world(db).await;
        let sam = sign_in(&w.app, "sam", PASSWORD).await;
        let page = send(
            &w.app,
            sam.get(&format!("/console/licenses/{}", w.user_license)),
        )
        .await;
        assert!(page.body.contains("End user's password"), "{}", page.body);
        let path = format!("/console/licenses/{}/password", w.user_license);
        let a = send(
            &w.app,
            sam.post(
                &path,
                &[
                    ("csrf", &sam.csrf),
                    ("password", "one long password"),
                    ("confirm", "another"),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.body);
        assert!(a.body.contains("the two passwords differ"), "{}", a.body);
        assert!(
            !accounts::user_has_password(w.portal.db(), &w.user)
                .await
                .unwrap()
        );

        let a = send(
            &w.app,
            sam.post(
                &path,
                &[
                    ("csrf", &sam.csrf),
                    ("password", "one long password"),
                    ("confirm", "one long password"),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{name}: {}", a.body);
        accounts::user_sign_in(w.portal.db(), &w.user, "one long password")
            .await
            .unwrap();
        let back = a.headers[header::LOCATION].to_str().unwrap();
        let a = send(&w.app, sam.get(back)).await;
        assert!(a.body.contains("id=\"password-set\""), "{}", a.body);

        // A key license has no end user to set a password for.
        let a = send(
            &w.app,
            sam.post(
                &format!("/console/licenses/{}/password", w.license),
                &[
                    ("csrf", &sam.csrf),
                    ("password", "one long password"),
                    ("confirm", "one long password"),
                ],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.body);
    }
}
