//! The HTTP API, through the router without a socket (and once over a real one), on
//! SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode, header};
use common::{TestDb, backends, device, license, policy, portal, request, snapshot};
use lic_core::client::{Client, Installed};
use lic_core::fingerprint::{StaticSource, component};
use lic_core::format::{self, Credential, Receipt};
use lic_core::keys::Keyring;
use lic_portal::auth::{self, Role};
use lic_portal::http::{self, AppState, ROUTES, RateLimiter};
use lic_portal::{Actor, Portal};
use serde_json::{Value, json};
use tower::ServiceExt as _;

// ----- calling the router ---------------------------------------------------------------

/// A request: method, path, optional bearer token, optional body.
struct Call {
    method: &'static str,
    path: String,
    token: Option<String>,
    body: Option<(&'static str, Vec<u8>)>,
    peer: Option<SocketAddr>,
    accept: Option<&'static str>,
}

fn call(method: &'static str, path: impl Into<String>) -> Call {
    Call {
        method,
        path: path.into(),
        token: None,
        body: None,
        peer: None,
        accept: None,
    }
}

impl Call {
    fn token(mut self, token: &str) -> Call {
        self.token = Some(token.into());
        self
    }
    fn json(mut self, body: Value) -> Call {
        self.body = Some(("application/json", body.to_string().into_bytes()));
        self
    }
    fn file(mut self, bytes: impl Into<Vec<u8>>) -> Call {
        self.body = Some(("text/plain", bytes.into()));
        self
    }
    fn accept(mut self, accept: &'static str) -> Call {
        self.accept = Some(accept);
        self
    }
    fn from(mut self, peer: &str) -> Call {
        self.peer = Some(peer.parse().unwrap());
        self
    }
}

/// What came back: status, headers, and the body as JSON (a JSON string if it was not).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// An error in the API's shape, with this status and code.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status.as_u16(), status, "{what}: {}", self.body);
        assert_eq!(self.code(), code, "{what}: {}", self.body);
        let e = &self.body["error"];
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty())
                && e["hint"].as_str().is_some_and(|h| !h.is_empty()),
            "{what}: {}",
            self.body
        );
        assert!(
            self.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{what}"
        );
    }

    #[track_caller]
    fn ok(self, what: &str) -> Value {
        assert!(
            self.status.is_success(),
            "{what}: {} {}",
            self.status,
            self.body
        );
        self.body
    }
}

async fn send(app: &Router, c: Call) -> Reply {
    let mut builder = Request::builder().method(c.method).uri(&c.path);
    if let Some(token) = &c.token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(accept) = c.accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let body = match c.body {
        Some((content_type, bytes)) => {
            if !content_type.is_empty() {
                builder = builder.header(header::CONTENT_TYPE, content_type);
            }
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let mut req = builder.body(body).unwrap();
    if let Some(peer) = c.peer {
        req.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

// ----- the world the tests run in ----------------------------------------------------------

/// A portal with two products — `photo-pro` (policy, license, one activation made through
/// the API) and `video-pro` (policy, license) — and tokens of every kind.
struct World {
    portal: Arc<Portal>,
    app: Router,
    admin: String,
    support: String,
    read_only: String,
    /// Tokens limited to `video-pro`: they must not see or touch `photo-pro`.
    video_admin: String,
    video_support: String,
    video_read_only: String,
    revoked: String,
    revoked_id: String,
    policy: String,
    license: String,
    key: String,
    activation: String,
    /// The device of `activation`, and the store it lives in.
    device: Client,
    _store: tempfile::TempDir,
    video_license: String,
}

async fn world(db: &TestDb) -> World {
    world_with(db, RateLimiter::unlimited()).await
}

async fn world_with(db: &TestDb, limiter: RateLimiter) -> World {
    let portal = Arc::new(portal(db).await);
    let cli = Actor::cli();
    let (license_id, key) = license(&portal, policy(3)).await;
    let policy_id = portal.license(&license_id).await.unwrap().policy;
    portal
        .create_product("video-pro", "Video Pro", &cli)
        .await
        .unwrap();
    let video_policy = lic_portal::ops::Policy {
        product: "video-pro".into(),
        ..policy(2)
    };
    let (video_license, _) = license(&portal, video_policy).await;
    let db_ = portal.db();
    let now = chrono::Utc::now().timestamp();
    let token = |name: &'static str, role: Role, products: Option<Vec<String>>| {
        let db_ = db_.clone();
        async move {
            auth::create_token(&db_, name, role, products, now)
                .await
                .unwrap()
        }
    };
    let video = || Some(vec!["video-pro".to_string()]);
    let (_, admin) = token("admin", Role::Admin, None).await;
    let (_, support) = token("support", Role::Support, None).await;
    let (_, read_only) = token("reader", Role::ReadOnly, None).await;
    let (_, video_admin) = token("video-admin", Role::Admin, video()).await;
    let (_, video_support) = token("video-support", Role::Support, video()).await;
    let (_, video_read_only) = token("video-reader", Role::ReadOnly, video()).await;
    let (revoked_id, revoked) = token("gone", Role::Admin, None).await;
    auth::revoke_token(db_, &revoked_id, now).await.unwrap();

    let app = http::router(AppState::new(Arc::clone(&portal)).with_limiter(limiter));
    let store = tempfile::tempdir().unwrap();
    let keys = portal.trusted_keys().await.unwrap();
    let device = device(store.path(), "m-1", keys);
    let req = device
        .request_activation(Credential::LicenseKey(key.clone()))
        .unwrap();
    let applied = send(&app, call("POST", "/api/v1/activate").file(req.armored()))
        .await
        .ok("activate");
    device
        .install(applied["response"].as_str().unwrap().as_bytes())
        .unwrap();
    World {
        app,
        admin,
        support,
        read_only,
        video_admin,
        video_support,
        video_read_only,
        revoked,
        revoked_id,
        policy: policy_id,
        license: license_id,
        key,
        activation: applied["activation"].as_str().unwrap().to_string(),
        device,
        _store: store,
        video_license,
        portal,
    }
}

impl World {
    /// A route's path with this world's ids in it.
    fn path(&self, template: &str) -> String {
        let id = if template.starts_with("/api/v1/policies") {
            &self.policy
        } else if template.starts_with("/api/v1/licenses") {
            &self.license
        } else if template.starts_with("/api/v1/tokens") {
            &self.revoked_id
        } else {
            &self.activation
        };
        template.replace("{code}", "photo-pro").replace("{id}", id)
    }

    async fn snapshot(&self) -> String {
        snapshot(self.portal.db()).await
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Anyone,
    /// Anyone, rate-limited.
    Limited,
    /// Anyone, rate-limited, with a file as its body.
    Upload,
    Role(Role),
    /// An admin token for all products.
    GlobalAdmin,
}

/// Every route and who may call it — written here independently of the router, and
/// checked to list exactly the router's routes.
const ACCESS: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Need::Anyone),
    ("GET", "/openapi.json", Need::Anyone),
    ("GET", "/api/v1/keys/trust.pem", Need::Limited),
    ("GET", "/api/v1/keys/keyset", Need::Limited),
    ("GET", "/api/v1/keys/keysets/{version}", Need::Limited),
    ("POST", "/api/v1/activate", Need::Upload),
    ("POST", "/api/v1/deactivate", Need::Upload),
    ("POST", "/api/v1/usage", Need::Upload),
    ("POST", "/api/v1/leases", Need::Upload),
    ("POST", "/api/v1/leases/renew", Need::Upload),
    ("POST", "/api/v1/leases/release", Need::Upload),
    ("POST", "/api/v1/checkout", Need::Upload),
    ("POST", "/api/v1/checkin", Need::Upload),
    ("GET", "/api/v1/products", Need::Role(Role::ReadOnly)),
    ("POST", "/api/v1/products", Need::Role(Role::Admin)),
    ("GET", "/api/v1/products/{code}", Need::Role(Role::ReadOnly)),
    ("GET", "/api/v1/policies", Need::Role(Role::ReadOnly)),
    ("POST", "/api/v1/policies", Need::Role(Role::Admin)),
    ("GET", "/api/v1/policies/{id}", Need::Role(Role::ReadOnly)),
    (
        "PATCH",
        "/api/v1/policies/{id}/reclamation",
        Need::Role(Role::Admin),
    ),
    ("GET", "/api/v1/licenses", Need::Role(Role::ReadOnly)),
    ("POST", "/api/v1/licenses", Need::Role(Role::Admin)),
    ("GET", "/api/v1/licenses/{id}", Need::Role(Role::ReadOnly)),
    ("PATCH", "/api/v1/licenses/{id}", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/licenses/{id}/revoke",
        Need::Role(Role::Admin),
    ),
    ("GET", "/api/v1/activations", Need::Role(Role::ReadOnly)),
    (
        "GET",
        "/api/v1/activations/{id}",
        Need::Role(Role::ReadOnly),
    ),
    (
        "POST",
        "/api/v1/activations/{id}/refresh",
        Need::Role(Role::Support),
    ),
    (
        "POST",
        "/api/v1/activations/{id}/deactivate",
        Need::Role(Role::Admin),
    ),
    (
        "POST",
        "/api/v1/activations/{id}/resign",
        Need::Role(Role::Support),
    ),
    ("POST", "/api/v1/apply", Need::Role(Role::Support)),
    ("POST", "/api/v1/reclaim", Need::Role(Role::Admin)),
    ("GET", "/api/v1/audit", Need::Role(Role::Support)),
    ("GET", "/api/v1/keys", Need::Role(Role::ReadOnly)),
    ("POST", "/api/v1/keys/rotate", Need::GlobalAdmin),
    ("POST", "/api/v1/keys/{kid}/revoke", Need::GlobalAdmin),
    ("GET", "/api/v1/tokens", Need::GlobalAdmin),
    ("POST", "/api/v1/tokens", Need::GlobalAdmin),
    ("POST", "/api/v1/tokens/{id}/revoke", Need::GlobalAdmin),
];

/// (method, route, token, JSON body, expected status and code).
type ScopeCase<'a> = (
    &'static str,
    &'a str,
    &'a String,
    Option<Value>,
    (u16, &'a str),
);

fn route_set(routes: impl IntoIterator<Item = (String, String)>) -> BTreeSet<(String, String)> {
    routes.into_iter().collect()
}

#[test]
fn the_access_table_lists_exactly_the_routes_the_router_serves() {
    assert_eq!(
        route_set(
            ACCESS
                .iter()
                .map(|(m, p, _)| (m.to_string(), p.to_string()))
        ),
        route_set(ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())))
    );
}

fn rank(role: Role) -> u8 {
    match role {
        Role::ReadOnly => 0,
        Role::Support => 1,
        Role::Admin => 2,
    }
}

// ----- the tests ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_a_missing_or_bad_token_and_a_wrong_role() {
    for db in backends().await {
        let w = world(&db).await;
        let before = w.snapshot().await;
        for &(method, template, need) in ACCESS {
            let path = w.path(template);
            let what = format!("{}: {method} {path}", db.name);
            let least = match need {
                Need::Anyone | Need::Limited | Need::Upload => {
                    // No token needed: an anonymous call is not refused for want of one.
                    let r = send(&w.app, call(method, &path)).await;
                    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{what}");
                    continue;
                }
                Need::Role(role) => role,
                Need::GlobalAdmin => Role::Admin,
            };
            // Bodies are left out on purpose: access is decided before a body is read.
            let r = send(&w.app, call(method, &path)).await;
            r.assert_error(401, "unauthenticated", &format!("{what} without a token"));
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer", "{what}");
            for bad in [
                "lict_00000000000000000000000000000000".to_string(),
                "not-a-token".to_string(),
                w.revoked.clone(),
            ] {
                send(&w.app, call(method, &path).token(&bad))
                    .await
                    .assert_error(401, "unauthenticated", &format!("{what} with {bad}"));
            }
            // The right role gets past the gate (and is refused for its empty body, or finds
            // nothing to change); the key rotation, which takes no body, is left to the
            // end-to-end test.
            if template != "/api/v1/keys/rotate" {
                let r = send(&w.app, call(method, &path).token(&w.admin).json(json!({}))).await;
                assert!(
                    r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN,
                    "{what} as admin: {}",
                    r.body
                );
            }
            // Basic authentication is not a bearer token.
            let mut req = Request::builder()
                .method(method)
                .uri(&path)
                .header(header::AUTHORIZATION, format!("Basic {}", w.admin))
                .body(Body::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo("127.0.0.1:1".parse::<SocketAddr>().unwrap()));
            let status = w.app.clone().oneshot(req).await.unwrap().status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what} with Basic");
            for (role, token) in [(Role::ReadOnly, &w.read_only), (Role::Support, &w.support)] {
                if rank(role) < rank(least) {
                    send(&w.app, call(method, &path).token(token))
                        .await
                        .assert_error(403, "forbidden", &format!("{what} as {role}"));
                }
            }
            if need == Need::GlobalAdmin {
                send(&w.app, call(method, &path).token(&w.video_admin))
                    .await
                    .assert_error(403, "forbidden", &format!("{what} as a scoped admin"));
            }
        }
        assert_eq!(
            w.snapshot().await,
            before,
            "{}: refused calls changed the database",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_limited_to_some_products_sees_and_changes_only_them() {
    for db in backends().await {
        let w = world(&db).await;
        let other = tempfile::tempdir().unwrap();
        let photo_request = request(other.path(), "m-2", &w.key);
        let photo_deactivation = w.device.deactivate().unwrap().armored();
        let before = w.snapshot().await;
        let (admin, support, reader) = (&w.video_admin, &w.video_support, &w.video_read_only);
        // (method, template, token, body, expected status and code): every route that names
        // an object of a product, called about `photo-pro` by tokens for `video-pro`.
        let not_found = (404, "not-found");
        let unknown_activation = (404, "unknown-activation");
        let forbidden = (403, "forbidden");
        let cases: Vec<ScopeCase<'_>> = vec![
            ("GET", "/api/v1/products/{code}", reader, None, not_found),
            ("GET", "/api/v1/policies/{id}", reader, None, not_found),
            (
                "PATCH",
                "/api/v1/policies/{id}/reclamation",
                admin,
                Some(json!({"reclaim": false, "reason": "scope"})),
                not_found,
            ),
            ("GET", "/api/v1/licenses/{id}", reader, None, not_found),
            (
                "GET",
                "/api/v1/activations/{id}",
                reader,
                None,
                unknown_activation,
            ),
            (
                "POST",
                "/api/v1/products",
                admin,
                Some(json!({"code": "photo-lite", "name": "Photo Lite"})),
                forbidden,
            ),
            (
                "POST",
                "/api/v1/policies",
                admin,
                Some(serde_json::to_value(policy(1)).unwrap()),
                not_found,
            ),
            (
                "POST",
                "/api/v1/licenses",
                admin,
                Some(json!({"policy": w.policy})),
                not_found,
            ),
            (
                "POST",
                "/api/v1/licenses/{id}/revoke",
                admin,
                Some(json!({"reason": "test"})),
                not_found,
            ),
            (
                "PATCH",
                "/api/v1/licenses/{id}",
                admin,
                Some(json!({"reason": "test", "seats": 9})),
                not_found,
            ),
            (
                "POST",
                "/api/v1/activations/{id}/deactivate",
                admin,
                Some(json!({"reason": "test"})),
                unknown_activation,
            ),
            (
                "POST",
                "/api/v1/activations/{id}/refresh",
                support,
                Some(json!({"reason": "test", "extend_days": 30})),
                unknown_activation,
            ),
            (
                "POST",
                "/api/v1/activations/{id}/resign",
                support,
                None,
                unknown_activation,
            ),
        ];
        for (method, template, token, body, (status, code)) in &cases {
            let path = w.path(template);
            let mut c = call(method, &path).token(token);
            if let Some(body) = body {
                c = c.json(body.clone());
            }
            let what = format!("{}: {method} {path}", db.name);
            let r = send(&w.app, c).await;
            r.assert_error(*status, code, &what);
            // An object of another product reads as one that does not exist: the answer
            // names its product only where the caller did.
            let named = path.contains("photo-pro")
                || body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("photo-pro"));
            if *status == 404 && !named {
                assert!(
                    !r.body.to_string().contains("photo-pro"),
                    "{what}: {}",
                    r.body
                );
            }
        }
        // Device files of photo-pro, applied by a support token for video-pro.
        for (what, file, code) in [
            ("request", photo_request.clone(), "unknown-license"),
            (
                "deactivation",
                photo_deactivation.clone().into_bytes(),
                "unknown-activation",
            ),
        ] {
            send(
                &w.app,
                call("POST", "/api/v1/apply").token(support).file(file),
            )
            .await
            .assert_error(404, code, &format!("{}: apply {what}", db.name));
        }
        // The audit log: one object of its products, never the whole log.
        send(&w.app, call("GET", "/api/v1/audit").token(support))
            .await
            .assert_error(403, "forbidden", "scoped audit");
        let r = send(
            &w.app,
            call("GET", format!("/api/v1/audit?subject={}", w.activation)).token(support),
        )
        .await;
        r.assert_error(404, "not-found", "scoped audit of another product");
        let own = send(
            &w.app,
            call("GET", format!("/api/v1/audit?subject={}", w.video_license)).token(support),
        )
        .await
        .ok("scoped audit of its own license");
        assert!(
            own["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["action"] == "license.create"),
            "{own}"
        );
        assert_eq!(
            w.snapshot().await,
            before,
            "{}: refused calls changed the database",
            db.name
        );

        // Lists leave the other product out.
        for (path, field) in [
            ("/api/v1/products", "code"),
            ("/api/v1/policies", "product"),
            ("/api/v1/licenses", "product"),
            ("/api/v1/activations", "product"),
        ] {
            for (token, sees_photo) in [(reader, false), (&w.read_only, true)] {
                let list = send(&w.app, call("GET", path).token(token)).await.ok(path);
                assert!(list["next"].is_null(), "{path}: {list}");
                let products: BTreeSet<&str> = list["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o[field].as_str().unwrap())
                    .collect();
                assert_eq!(
                    products.contains("photo-pro"),
                    sees_photo,
                    "{}: {path}: {list}",
                    db.name
                );
                assert!(!products.contains("nothing"));
            }
        }
        // Public keys are not per product.
        send(&w.app, call("GET", "/api/v1/keys").token(reader))
            .await
            .ok("keys");
        // Every route behind a token was called above by a token for another product —
        // or needs a token for all products (see the role test).
        let mut covered: BTreeSet<(String, String)> = cases
            .iter()
            .map(|(m, t, ..)| (m.to_string(), t.to_string()))
            .collect();
        for (m, t) in [
            ("POST", "/api/v1/apply"),
            // (Reclamation by a token for some products reclaims only theirs: floating.rs.)
            ("POST", "/api/v1/reclaim"),
            ("GET", "/api/v1/audit"),
            ("GET", "/api/v1/keys"),
            ("GET", "/api/v1/products"),
            ("GET", "/api/v1/policies"),
            ("GET", "/api/v1/licenses"),
            ("GET", "/api/v1/activations"),
        ] {
            covered.insert((m.to_string(), t.to_string()));
        }
        for (m, t, need) in ACCESS {
            if *need == Need::GlobalAdmin {
                covered.insert((m.to_string(), t.to_string()));
            }
        }
        let behind_a_token = route_set(
            ACCESS
                .iter()
                .filter(|(_, _, need)| !matches!(need, Need::Anyone | Need::Limited | Need::Upload))
                .map(|(m, t, _)| (m.to_string(), t.to_string())),
        );
        assert_eq!(covered, behind_a_token);
        // Its own product: allowed.
        let r = send(
            &w.app,
            call(
                "POST",
                format!("/api/v1/licenses/{}/revoke", w.video_license),
            )
            .token(admin)
            .json(json!({"reason": "moving to the new plan"})),
        )
        .await
        .ok("revoking its own product's license");
        assert_eq!(r["status"], "revoked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anonymous_upload_loop_activate_replay_report_deactivate() {
    for db in backends().await {
        let w = world(&db).await;
        let keys = w.portal.trusted_keys().await.unwrap();
        let store = tempfile::tempdir().unwrap();
        let c = device(store.path(), "m-7", keys.clone());
        let req = c
            .request_activation(Credential::LicenseKey(w.key.clone()))
            .unwrap();
        let first = send(
            &w.app,
            call("POST", "/api/v1/activate")
                .file(req.armored())
                .from("192.0.2.7:5000"),
        )
        .await
        .ok("activate");
        assert_eq!(first["kind"], "activation-request", "{}", db.name);
        assert_eq!(first["response_kind"], "license");
        assert_eq!(first["replay"], false);
        assert_eq!(first["file_hash"], req.hash().to_string());
        let license = first["response"].as_str().unwrap();
        assert!(license.starts_with("-----BEGIN LIC LICENSE-----"));
        assert!(matches!(
            c.install(license.as_bytes()).unwrap(),
            Installed::License { .. }
        ));
        // The same request again (as binary this time): the same license, no second seat.
        let again = send(
            &w.app,
            call("POST", "/api/v1/activate").file(req.bytes().to_vec()),
        )
        .await
        .ok("again");
        assert_eq!(again["replay"], true, "{}", db.name);
        assert_eq!(again["response"], first["response"]);
        assert_eq!(again["activation"], first["activation"]);
        assert_eq!(w.portal.license(&w.license).await.unwrap().seats_used, 2);

        c.consume("render-minutes", 5).unwrap();
        let report = c.usage_report().unwrap();
        let r = send(&w.app, call("POST", "/api/v1/usage").file(report.armored()))
            .await
            .ok("usage");
        assert_eq!(r["response_kind"], "receipt");
        let note = r["note"].as_str().unwrap();
        assert!(
            note.contains("usage report")
                && note.contains("render-minutes=5")
                && note.contains("nothing needs to be installed"),
            "{note}"
        );
        c.consume("render-minutes", 2).unwrap();
        let deactivation = c.deactivate().unwrap();
        let r = send(
            &w.app,
            call("POST", "/api/v1/deactivate").file(deactivation.armored()),
        )
        .await
        .ok("deactivate");
        assert_eq!(r["kind"], "deactivation");
        assert_eq!(r["response_kind"], "receipt");
        let receipt =
            format::open::<Receipt>(r["response"].as_str().unwrap().as_bytes(), &keys).unwrap();
        assert_eq!(receipt.file_hash, deactivation.hash());
        assert_eq!(receipt.state, "deactivated");
        // It says what the receipt is: the seat is free, final counters, keep it.
        let activation = r["activation"].as_str().unwrap();
        assert_eq!(
            r["note"],
            format!(
                "The seat is free: activation {activation} is deactivated. This receipt is the \
                 vendor's signed confirmation that the device's deactivation was applied, with \
                 its final counters (render-minutes=7). Keep it as proof; nothing needs to be \
                 installed."
            )
        );
        // As text, the same words above the receipt file, which still reads as one.
        let text = send(
            &w.app,
            call("POST", "/api/v1/deactivate")
                .file(deactivation.armored())
                .accept("text/plain"),
        )
        .await
        .ok("deactivate as text");
        let text = text.as_str().unwrap();
        let (words, file) = text.split_once("\n\n").unwrap();
        assert_eq!(
            words.split_whitespace().collect::<Vec<_>>().join(" "),
            r["note"]
        );
        assert!(words.lines().all(|l| l.chars().count() <= 78), "{words}");
        assert_eq!(file, r["response"].as_str().unwrap());
        let again = format::open::<Receipt>(text.as_bytes(), &keys).unwrap();
        assert_eq!(again.file_hash, deactivation.hash());
        let info = w.portal.license(&w.license).await.unwrap();
        assert_eq!(info.seats_used, 1, "{}: the seat is free", db.name);
        assert_eq!(info.usage.get("render-minutes"), Some(&7));
        let audit = w
            .portal
            .audit_log(100, first["activation"].as_str())
            .await
            .unwrap();
        assert!(
            audit
                .iter()
                .any(|a| a.action == "activation.create" && a.actor == "upload:192.0.2.7"),
            "{}: {audit:?}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_and_bad_requests_are_refused_in_json_and_change_nothing() {
    for db in backends().await {
        let w = world(&db).await;
        let report = w.device.usage_report().unwrap();
        let mut tampered = report.bytes().to_vec();
        let at = tampered.len() - 70;
        tampered[at] ^= 1;
        let deactivation = w.device.deactivate().unwrap();
        let issued = send(
            &w.app,
            call("POST", "/api/v1/activate").file({
                let d = tempfile::tempdir().unwrap();
                request(d.path(), "m-9", &w.key)
            }),
        )
        .await
        .ok("a second activation");
        let before = w.snapshot().await;
        let oversized = vec![b'A'; http::MAX_BODY + 1];
        let uploads: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
            (
                "garbage",
                "/api/v1/activate",
                b"hello".to_vec(),
                400,
                "armor-missing",
            ),
            ("empty", "/api/v1/usage", Vec::new(), 400, "armor-missing"),
            (
                "tampered report (binary)",
                "/api/v1/usage",
                tampered,
                400,
                "bad-signature",
            ),
            (
                "a deactivation posted to /activate",
                "/api/v1/activate",
                deactivation.armored().into_bytes(),
                400,
                "wrong-kind",
            ),
            (
                "a binary deactivation posted to /usage",
                "/api/v1/usage",
                deactivation.bytes().to_vec(),
                400,
                "wrong-kind",
            ),
            (
                "a usage report posted to /deactivate",
                "/api/v1/deactivate",
                report.armored().into_bytes(),
                400,
                "wrong-kind",
            ),
            (
                "a license posted to /activate",
                "/api/v1/activate",
                issued["response"].as_str().unwrap().as_bytes().to_vec(),
                400,
                "wrong-kind",
            ),
            (
                "truncated",
                "/api/v1/activate",
                std::fs::read(lic_fixtures::dir().join("invalid/truncated.lic")).unwrap(),
                400,
                "armor-truncated",
            ),
            (
                "oversized",
                "/api/v1/activate",
                oversized.clone(),
                413,
                "too-large",
            ),
            (
                "oversized fixture",
                "/api/v1/deactivate",
                std::fs::read(lic_fixtures::dir().join("invalid/oversized.lic")).unwrap(),
                413,
                "too-large",
            ),
            (
                "an unknown license key",
                "/api/v1/activate",
                {
                    let d = tempfile::tempdir().unwrap();
                    request(d.path(), "m-3", "NOPE-NOPE-NOPE")
                },
                404,
                "unknown-license",
            ),
            (
                "a deactivation of an unknown activation",
                "/api/v1/deactivate",
                std::fs::read(lic_fixtures::dir().join("valid/deactivation.deact")).unwrap(),
                404,
                "unknown-activation",
            ),
        ];
        for (what, path, bytes, status, code) in uploads {
            let r = send(&w.app, call("POST", path).file(bytes)).await;
            r.assert_error(status, code, &format!("{}: {what}", db.name));
            assert_eq!(w.snapshot().await, before, "{}: {what}", db.name);
        }
        // The support API's upload refuses the same way.
        send(
            &w.app,
            call("POST", "/api/v1/apply")
                .token(&w.support)
                .file(oversized),
        )
        .await
        .assert_error(413, "too-large", "apply oversized");

        // JSON requests.
        let admin = &w.admin;
        let requests: Vec<(&str, Call, u16, &str)> = vec![
            (
                "bad JSON",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .json_raw("{not json"),
                400,
                "invalid-json",
            ),
            (
                "a missing field",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .json(json!({"code": "x"})),
                422,
                "invalid-json",
            ),
            (
                "an unknown field",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .json(json!({"code": "x", "name": "X", "colour": "red"})),
                422,
                "invalid-json",
            ),
            (
                "no content type",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .file("{}")
                    .no_type(),
                415,
                "unsupported-media-type",
            ),
            (
                "a JSON body too large",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .json(json!({"code": "x", "name": "X".repeat(http::MAX_BODY)})),
                413,
                "too-large",
            ),
            (
                "an invalid product code",
                call("POST", "/api/v1/products")
                    .token(admin)
                    .json(json!({"code": "a b", "name": "X"})),
                400,
                "invalid",
            ),
            (
                "a revocation without a reason",
                call("POST", format!("/api/v1/licenses/{}/revoke", w.license))
                    .token(admin)
                    .json(json!({"reason": "  "})),
                400,
                "invalid",
            ),
            (
                "an unknown license",
                call("GET", "/api/v1/licenses/lic_nope").token(admin),
                404,
                "not-found",
            ),
            (
                "an unknown activation",
                call("GET", "/api/v1/activations/act_nope").token(admin),
                404,
                "unknown-activation",
            ),
            (
                "a bad query",
                call("GET", "/api/v1/audit?limit=many").token(admin),
                400,
                "bad-request",
            ),
            (
                "an unknown route",
                call("GET", "/api/v1/nothing-here"),
                404,
                "not-found",
            ),
            (
                "an unknown route with a token",
                call("POST", "/api/v2/activate").token(admin),
                404,
                "not-found",
            ),
            (
                "a wrong method",
                call("DELETE", "/api/v1/products").token(admin),
                405,
                "method-not-allowed",
            ),
            (
                "a wrong method on an upload",
                call("GET", "/api/v1/activate"),
                405,
                "method-not-allowed",
            ),
        ];
        for (what, c, status, code) in requests {
            let r = send(&w.app, c).await;
            r.assert_error(status, code, &format!("{}: {what}", db.name));
            assert_eq!(w.snapshot().await, before, "{}: {what}", db.name);
            if status == 405 {
                assert!(r.headers.contains_key(header::ALLOW), "{what}: Allow");
            }
        }
    }
}

impl Call {
    fn json_raw(mut self, text: &str) -> Call {
        self.body = Some(("application/json", text.as_bytes().to_vec()));
        self
    }
    fn no_type(mut self) -> Call {
        if let Some((_, bytes)) = self.body.take() {
            self.body = Some(("", bytes));
        }
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_rate_limited_per_client_with_a_json_429() {
    for db in backends().await {
        let w = world_with(&db, RateLimiter::new(2, 3)).await;
        // The world's own activation took one upload from the shared (no address) bucket.
        let garbage = || b"not a file".to_vec();
        for i in 0..3 {
            send(
                &w.app,
                call("POST", "/api/v1/usage")
                    .file(garbage())
                    .from("198.51.100.1:1000"),
            )
            .await
            .assert_error(400, "armor-missing", &format!("upload {i}"));
        }
        let r = send(
            &w.app,
            call("POST", "/api/v1/activate")
                .file(garbage())
                .from("198.51.100.1:1001"),
        )
        .await;
        r.assert_error(429, "rate-limited", &format!("{}: the 4th upload", db.name));
        let wait: u64 = r.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "Retry-After {wait}");
        // The trusted keys are read from the same bucket.
        send(
            &w.app,
            call("GET", "/api/v1/keys/trust.pem").from("198.51.100.1:1002"),
        )
        .await
        .assert_error(429, "rate-limited", "trust.pem over the limit");
        // Another client has its own bucket; health and the vendor API are not limited.
        send(
            &w.app,
            call("POST", "/api/v1/deactivate")
                .file(garbage())
                .from("198.51.100.2:1000"),
        )
        .await
        .assert_error(400, "armor-missing", "another client");
        let pem = send(
            &w.app,
            call("GET", "/api/v1/keys/trust.pem").from("198.51.100.2:1001"),
        )
        .await;
        assert_eq!(pem.status, StatusCode::OK, "trust.pem for another client");
        // The same /64 is the same client.
        for peer in ["[2001:db8::1]:1", "[2001:db8::2]:1", "[2001:db8::3]:1"] {
            send(
                &w.app,
                call("POST", "/api/v1/usage").file(garbage()).from(peer),
            )
            .await
            .assert_error(400, "armor-missing", peer);
        }
        send(
            &w.app,
            call("POST", "/api/v1/usage")
                .file(garbage())
                .from("[2001:db8::ffff]:1"),
        )
        .await
        .assert_error(429, "rate-limited", "the same /64");
        for _ in 0..5 {
            send(&w.app, call("GET", "/healthz").from("198.51.100.1:1"))
                .await
                .ok("healthz");
            send(
                &w.app,
                call("POST", "/api/v1/apply")
                    .token(&w.support)
                    .file(garbage())
                    .from("198.51.100.1:1"),
            )
            .await
            .assert_error(400, "armor-missing", "apply is not limited");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_api_end_to_end_every_route_once() {
    for db in backends().await {
        let w = world(&db).await;
        let admin = &w.admin;
        let support = &w.support;
        let app = &w.app;
        let product = send(
            app,
            call("POST", "/api/v1/products")
                .token(admin)
                .json(json!({"code": "audio-pro", "name": "Audio Pro"})),
        )
        .await;
        assert_eq!(product.status, StatusCode::CREATED, "{}", product.body);
        send(
            app,
            call("POST", "/api/v1/products")
                .token(admin)
                .json(json!({"code": "audio-pro", "name": "Again"})),
        )
        .await
        .assert_error(409, "already-exists", "the same product twice");
        let got = send(
            app,
            call("GET", "/api/v1/products/audio-pro").token(&w.read_only),
        )
        .await
        .ok("get product");
        assert_eq!(got["name"], "Audio Pro");
        let policy = send(
            app,
            call("POST", "/api/v1/policies").token(admin).json(json!({
                "product": "audio-pro",
                "name": "standard",
                "license_type": "time-limited",
                "seats": 2,
                "validity_days": 30,
                "features": {"mix": {}, "render-minutes": {"limit": 100}}
            })),
        )
        .await;
        assert_eq!(policy.status, StatusCode::CREATED, "{}", policy.body);
        let policy_id = policy.body["id"].as_str().unwrap().to_string();
        let got = send(
            app,
            call("GET", format!("/api/v1/policies/{policy_id}")).token(&w.read_only),
        )
        .await
        .ok("get policy");
        assert_eq!(got["seats"], 2);
        let policies = send(app, call("GET", "/api/v1/policies").token(&w.read_only))
            .await
            .ok("policies");
        assert_eq!(policies["items"].as_array().unwrap().len(), 3);
        let created = send(
            app,
            call("POST", "/api/v1/licenses")
                .token(admin)
                .json(json!({"policy": policy_id})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let key = created.body["key"].as_str().unwrap().to_string();
        let license_id = created.body["license"]["id"].as_str().unwrap().to_string();
        let got = send(
            app,
            call("GET", format!("/api/v1/licenses/{license_id}")).token(&w.read_only),
        )
        .await
        .ok("get license");
        assert_eq!(got["seats"], 2);
        assert!(got.get("key").is_none(), "the key is shown once");
        let licenses = send(app, call("GET", "/api/v1/licenses").token(&w.read_only))
            .await
            .ok("licenses");
        assert_eq!(licenses["items"].as_array().unwrap().len(), 3);

        // Support applies a device's request for the photo-pro license.
        let store = tempfile::tempdir().unwrap();
        let keys = w.portal.trusted_keys().await.unwrap();
        let c = device(store.path(), "m-5", keys.clone());
        let req = c
            .request_activation(Credential::LicenseKey(w.key.clone()))
            .unwrap();
        let applied = send(
            app,
            call("POST", "/api/v1/apply")
                .token(support)
                .file(req.armored()),
        )
        .await
        .ok("apply");
        c.install(applied["response"].as_str().unwrap().as_bytes())
            .unwrap();
        let activation = applied["activation"].as_str().unwrap().to_string();
        let list = send(
            app,
            call("GET", format!("/api/v1/activations?license={}", w.license)).token(&w.read_only),
        )
        .await
        .ok("activations");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        let got = send(
            app,
            call("GET", format!("/api/v1/activations/{activation}")).token(&w.read_only),
        )
        .await
        .ok("get activation");
        assert_eq!(got["state"], "active");
        let refreshed = send(
            app,
            call("POST", format!("/api/v1/activations/{activation}/refresh"))
                .token(support)
                .json(json!({"reason": "customer renewed", "extend_days": 30})),
        )
        .await
        .ok("refresh");
        assert!(matches!(
            c.install(refreshed["refresh"].as_str().unwrap().as_bytes())
                .unwrap(),
            Installed::Refresh { to_serial: 2, .. }
        ));
        let audit = send(
            app,
            call(
                "GET",
                format!("/api/v1/audit?subject={activation}&limit=10"),
            )
            .token(support),
        )
        .await
        .ok("audit");
        let entries = audit["items"].as_array().unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == "activation.refresh" && e["actor"] == "token:support"),
            "{audit}"
        );
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == "activation.create" && e["actor"] == "token:support"),
            "{audit}"
        );
        let deactivated = send(
            app,
            call(
                "POST",
                format!("/api/v1/activations/{activation}/deactivate"),
            )
            .token(admin)
            .json(json!({"reason": "machine lost"})),
        )
        .await
        .ok("deactivate");
        assert_eq!(deactivated["state"], "deactivated");
        let revoked = send(
            app,
            call("POST", format!("/api/v1/licenses/{license_id}/revoke"))
                .token(admin)
                .json(json!({"reason": "refunded"})),
        )
        .await
        .ok("revoke");
        assert_eq!(revoked["status"], "revoked");
        // The revoked license refuses activations.
        let d = tempfile::tempdir().unwrap();
        let c2 = Client::builder("audio-pro")
            .store(d.path())
            .trust(keys.clone())
            .fingerprint_source(StaticSource(
                [(component::MACHINE_ID, "m-6")].into_iter().collect(),
            ))
            .open()
            .unwrap();
        let req2 = c2.request_activation(Credential::LicenseKey(key)).unwrap();
        send(app, call("POST", "/api/v1/activate").file(req2.armored()))
            .await
            .assert_error(403, "license-revoked", "a revoked license");

        // Keys.
        let listed = send(app, call("GET", "/api/v1/keys").token(&w.read_only))
            .await
            .ok("keys");
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let rotated = send(app, call("POST", "/api/v1/keys/rotate").token(admin))
            .await
            .ok("rotate");
        let kid = rotated["kid"].as_str().unwrap();
        let listed = send(app, call("GET", "/api/v1/keys").token(&w.read_only))
            .await
            .ok("keys");
        assert_eq!(listed.as_array().unwrap().len(), 2);
        assert_eq!(listed[0]["kid"], kid);
        assert_eq!(listed[0]["active"], true);
        let pem = send(app, call("GET", "/api/v1/keys/trust.pem")).await;
        assert_eq!(pem.status, StatusCode::OK);
        assert!(
            pem.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let ring = Keyring::from_pem(pem.body.as_str().unwrap()).unwrap();
        assert_eq!(ring.len(), 2);

        // Tokens.
        let made = send(
            app,
            call("POST", "/api/v1/tokens").token(admin).json(json!({
                "name": "ci", "role": "read-only", "products": ["audio-pro"]
            })),
        )
        .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        let secret = made.body["token"].as_str().unwrap().to_string();
        let id = made.body["id"].as_str().unwrap().to_string();
        assert!(
            secret.starts_with("lict_") && secret.len() == 37,
            "{secret}"
        );
        assert_eq!(made.body["role"], "read-only");
        let products = send(app, call("GET", "/api/v1/products").token(&secret))
            .await
            .ok("the new token works");
        assert_eq!(products, json!({"items": [product.body], "next": null}));
        let tokens = send(app, call("GET", "/api/v1/tokens").token(admin))
            .await
            .ok("tokens");
        let text = tokens.to_string();
        assert!(!text.contains(&secret) && !text.contains("hash"), "{text}");
        assert_eq!(tokens.as_array().unwrap().len(), 8);
        let r = send(
            app,
            call("POST", format!("/api/v1/tokens/{id}/revoke")).token(admin),
        )
        .await
        .ok("revoke token");
        assert!(r["revoked"].is_i64());
        send(app, call("GET", "/api/v1/products").token(&secret))
            .await
            .assert_error(401, "unauthenticated", "a revoked token");
        send(
            app,
            call("POST", "/api/v1/tokens/tok_nope/revoke").token(admin),
        )
        .await
        .assert_error(404, "not-found", "an unknown token");
        let audit = w.portal.audit_log(200, Some(&id)).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert!(
            actions.contains(&"token.create") && actions.contains(&"token.revoke"),
            "{actions:?}"
        );
        assert!(audit.iter().all(|a| a.actor == "token:admin"));

        // Health and the OpenAPI document.
        let health = send(app, call("GET", "/healthz")).await.ok("healthz");
        assert_eq!(health, json!({"status": "ok"}));
        let doc = send(app, call("GET", "/openapi.json")).await.ok("openapi");
        assert_eq!(doc["openapi"], "3.1.0");
    }
}

#[test]
fn the_openapi_document_describes_exactly_the_routes_served() {
    let doc: Value = serde_json::from_str(http::OPENAPI).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["parameters", "summary", "description"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{what}: no success response"
            );
            // Who may call it is documented the same way as the access table says.
            let (_, _, need) = ACCESS
                .iter()
                .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
                .unwrap_or_else(|| panic!("{what} is not served"));
            assert!(
                *need == Need::Anyone || responses.keys().any(|s| s.starts_with('4')),
                "{what}: no error response"
            );
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty() && s.iter().all(|r| r.get("bearer").is_some()));
            let anonymous = matches!(need, Need::Anyone | Need::Limited | Need::Upload);
            assert_eq!(secured, !anonymous, "{what}: security");
            if !anonymous {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{what}: no {status}");
                }
            }
            if *need == Need::Upload {
                assert!(responses.contains_key("413"), "{what}: no 413");
            }
            if matches!(need, Need::Upload | Need::Limited) {
                assert!(responses.contains_key("429"), "{what}: no 429");
            }
            let role = op["x-role"].as_str().unwrap_or("anonymous");
            let expected = match need {
                Need::Anyone | Need::Limited | Need::Upload => "anonymous",
                Need::Role(r) => r.name(),
                Need::GlobalAdmin => "admin",
            };
            assert_eq!(role, expected, "{what}: x-role");
        }
    }
    let served = route_set(ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())));
    assert_eq!(documented, served);
    // Every reference resolves.
    let text = http::OPENAPI;
    for part in text.split("\"$ref\": \"#/").skip(1) {
        let target = &part[..part.find('"').unwrap()];
        let mut node = &doc;
        for segment in target.split('/') {
            node = node
                .get(segment)
                .unwrap_or_else(|| panic!("unresolved $ref #/{target}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_over_a_real_socket() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    for db in backends().await {
        let w = world(&db).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(http::serve_on(
            listener,
            AppState::new(Arc::clone(&w.portal)),
            async move {
                let _ = stopped.await;
            },
        ));
        let d = tempfile::tempdir().unwrap();
        let c = device(d.path(), "m-socket", w.portal.trusted_keys().await.unwrap());
        let body = c
            .request_activation(Credential::LicenseKey(w.key.clone()))
            .unwrap()
            .armored();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/v1/activate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n"),
            "{}: {head}",
            db.name
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        let applied: Value = serde_json::from_str(body).unwrap();
        assert_eq!(applied["response_kind"], "license");
        c.install(applied["response"].as_str().unwrap().as_bytes())
            .unwrap();
        // The audit log names the client's address.
        let audit = w
            .portal
            .audit_log(10, applied["activation"].as_str())
            .await
            .unwrap();
        assert_eq!(audit[0].actor, "upload:127.0.0.1", "{}", db.name);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_sets_are_served_by_version_and_refused_revocations_change_nothing() {
    for db in backends().await {
        let w = world(&db).await;
        // Nothing published before the first rotation.
        send(&w.app, call("GET", "/api/v1/keys/keyset"))
            .await
            .assert_error(404, "not-found", "no key set yet");
        send(&w.app, call("GET", "/api/v1/keys/keysets/1"))
            .await
            .assert_error(404, "not-found", "no version 1");
        send(&w.app, call("GET", "/api/v1/keys/keysets/one"))
            .await
            .assert_error(400, "bad-request", "not a version");
        let active = w.portal.trusted_keys().await.unwrap();
        let active = active.iter().next().unwrap().kid().to_string();
        let before = w.snapshot().await;
        for (kid, reason, status, code) in [
            ("0123456789abcdef", "leaked", 404, "not-found"),
            (active.as_str(), "leaked", 409, "key-active"),
            (active.as_str(), " ", 400, "invalid"),
        ] {
            send(
                &w.app,
                call("POST", format!("/api/v1/keys/{kid}/revoke"))
                    .token(&w.admin)
                    .json(json!({ "reason": reason })),
            )
            .await
            .assert_error(
                status,
                code,
                &format!("{}: revoke {kid} ({reason:?})", db.name),
            );
        }
        send(
            &w.app,
            call("POST", "/api/v1/activations/act_nope/resign").token(&w.admin),
        )
        .await
        .assert_error(404, "unknown-activation", "resign of an unknown activation");
        assert_eq!(w.snapshot().await, before, "{}", db.name);
        assert_eq!(w.portal.key_sets().await.unwrap().len(), 0);
        // A rotation publishes version 1, served as the newest and by its number.
        w.portal.rotate_key(&Actor::cli()).await.unwrap();
        for path in ["/api/v1/keys/keyset", "/api/v1/keys/keysets/1"] {
            let r = send(&w.app, call("GET", path)).await;
            assert_eq!(r.status, StatusCode::OK, "{path}");
            let text = r.body.as_str().unwrap_or_default();
            assert!(
                text.starts_with("-----BEGIN LIC KEY SET-----"),
                "{path}: {text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_license_is_edited_with_patch_and_refused_edits_change_nothing() {
    for db in backends().await {
        let w = world(&db).await;
        let path = format!("/api/v1/licenses/{}", w.license);
        let before = w.snapshot().await;
        let refused: Vec<(&str, Value, u16, &str)> = vec![
            ("no reason", json!({"seats": 5}), 422, "invalid-json"),
            (
                "an empty reason",
                json!({"reason": " ", "seats": 5}),
                400,
                "invalid",
            ),
            ("nothing to change", json!({"reason": "r"}), 400, "invalid"),
            (
                "an unknown member",
                json!({"reason": "r", "sets": 5}),
                422,
                "invalid-json",
            ),
            (
                "an unknown status",
                json!({"reason": "r", "status": "paused"}),
                400,
                "invalid",
            ),
            (
                "a revocation by an edit",
                json!({"reason": "r", "status": "revoked"}),
                400,
                "invalid",
            ),
            (
                "an expiry in the past",
                json!({"reason": "r", "expires": 1000}),
                400,
                "invalid",
            ),
            (
                "a text expiry",
                json!({"reason": "r", "expires": "2030-01-01"}),
                422,
                "invalid-json",
            ),
            (
                // The world's one device holds a seat.
                "no seat",
                json!({"reason": "r", "seats": 0}),
                400,
                "invalid",
            ),
        ];
        for (what, body, status, code) in refused {
            let r = send(&w.app, call("PATCH", &path).token(&w.admin).json(body)).await;
            r.assert_error(status, code, &format!("{}: {what}", db.name));
        }
        send(
            &w.app,
            call("PATCH", "/api/v1/licenses/lic_nope")
                .token(&w.admin)
                .json(json!({"reason": "r", "seats": 5})),
        )
        .await
        .assert_error(404, "not-found", "an unknown license");
        send(
            &w.app,
            call("PATCH", &path)
                .token(&w.support)
                .json(json!({"reason": "r", "seats": 5})),
        )
        .await
        .assert_error(403, "forbidden", "a support token");
        assert_eq!(w.snapshot().await, before, "{}", db.name);

        let edited = send(
            &w.app,
            call("PATCH", &path).token(&w.admin).json(json!({
                "reason": "order 5",
                "seats": 5,
                "features": {"export-pdf": {}, "render-minutes": {"limit": 10, "overage": true}},
                "allow_offline": false,
                "status": "suspended",
            })),
        )
        .await
        .ok("edit");
        assert_eq!(edited["license"]["seats"], 5, "{}: {edited}", db.name);
        assert_eq!(edited["license"]["status"], "suspended");
        assert_eq!(edited["license"]["allow_offline"], false);
        assert_eq!(edited["license"]["revision"], 1);
        assert_eq!(edited["changes"].as_array().unwrap().len(), 4, "{edited}");
        // Down to the seat in use, but not below: 409 with what to do.
        let r = send(
            &w.app,
            call("PATCH", &path).token(&w.admin).json(
                json!({"reason": "r", "seats": 1, "status": "active", "allow_offline": true}),
            ),
        )
        .await
        .ok("one seat");
        assert_eq!(r["license"]["seats"], 1);
        // The one device holds the only seat: a second is refused.
        let other = tempfile::tempdir().unwrap();
        let req = request(other.path(), "m-2", &w.key);
        send(&w.app, call("POST", "/api/v1/activate").file(req))
            .await
            .assert_error(409, "no-seat-left", "a full license");
        // `null` expires: never (the world's policy has a validity period: refused).
        send(
            &w.app,
            call("PATCH", &path)
                .token(&w.admin)
                .json(json!({"reason": "r", "expires": null})),
        )
        .await
        .assert_error(400, "invalid", "never, with a validity period");
        let audit = w
            .portal
            .audit_log(10, Some(&w.license))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "license.edit")
            .count();
        assert_eq!(audit, 2, "{}", db.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_below_those_in_use_are_refused_over_http_with_409() {
    for db in backends().await {
        let w = world(&db).await;
        let other = tempfile::tempdir().unwrap();
        let req = request(other.path(), "m-2", &w.key);
        send(&w.app, call("POST", "/api/v1/activate").file(req))
            .await
            .ok("second device");
        let before = w.snapshot().await;
        let r = send(
            &w.app,
            call("PATCH", format!("/api/v1/licenses/{}", w.license))
                .token(&w.admin)
                .json(json!({"reason": "downgrade", "seats": 1})),
        )
        .await;
        r.assert_error(409, "seats-in-use", db.name);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("2 of its seats are held"),
            "{}",
            r.body
        );
        assert_eq!(w.snapshot().await, before, "{}", db.name);
    }
}

// ----- lists: pages and filters ----------------------------------------------------------------

/// The list routes, and the query parameters each takes.
const LISTS: [&str; 5] = [
    "/api/v1/products",
    "/api/v1/policies",
    "/api/v1/licenses",
    "/api/v1/activations",
    "/api/v1/audit",
];

/// Every page of `path` (which has a query already), following `next`; the items.
async fn walk(app: &Router, token: &str, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = path.to_string();
    for _ in 0..1000 {
        let page = send(app, call("GET", &url).token(token)).await.ok(&url);
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            None => {
                assert!(page["next"].is_null(), "{page}");
                return items;
            }
            // Cursors are URL-safe as they are.
            Some(next) => {
                assert!(
                    next.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                    "{next}"
                );
                url = format!("{path}&after={next}");
            }
        }
    }
    panic!("{path}: the walk does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paged_by_cursor_and_filtered_over_the_api() {
    for db in backends().await {
        let w = world(&db).await;
        let (app, admin) = (&w.app, w.admin.as_str());
        // More licenses, some of a customer, one revoked.
        let mut acme = Vec::new();
        for i in 0..5 {
            let customer = if i % 2 == 0 {
                json!("acme")
            } else {
                json!(null)
            };
            let made = send(
                app,
                call("POST", "/api/v1/licenses")
                    .token(admin)
                    .json(json!({"policy": w.policy, "customer": customer})),
            )
            .await;
            assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
            assert_eq!(made.body["license"]["customer"], customer);
            if i % 2 == 0 {
                acme.push(made.body["license"]["id"].as_str().unwrap().to_string());
            }
        }
        send(
            app,
            call("POST", format!("/api/v1/licenses/{}/revoke", acme[1]))
                .token(admin)
                .json(json!({"reason": "test"})),
        )
        .await
        .ok("revoke");

        // Walking by one returns what one page of all returns, in the same order.
        for path in LISTS {
            let all = send(app, call("GET", format!("{path}?limit=1000")).token(admin))
                .await
                .ok(path);
            assert!(all["next"].is_null(), "{path}: {all}");
            let by_one = walk(app, admin, &format!("{path}?limit=1")).await;
            assert_eq!(&Value::Array(by_one), &all["items"], "{}: {path}", db.name);
        }
        let licenses = walk(app, admin, "/api/v1/licenses?limit=2").await;
        assert_eq!(licenses.len(), 7);

        // Filters, one page at a time.
        let ids = |items: Vec<Value>| -> Vec<String> {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        };
        // In the list's order (by creation time, then id).
        let acme_in_order: Vec<String> = ids(licenses.clone())
            .into_iter()
            .filter(|id| acme.contains(id))
            .collect();
        assert_eq!(acme_in_order.len(), 3);
        assert_eq!(
            ids(walk(app, admin, "/api/v1/licenses?customer=acme&limit=1").await),
            acme_in_order
        );
        let active_acme = ids(walk(
            app,
            admin,
            "/api/v1/licenses?customer=acme&status=active&product=photo-pro&limit=1",
        )
        .await);
        let want: Vec<String> = acme_in_order
            .iter()
            .filter(|id| **id != acme[1])
            .cloned()
            .collect();
        assert_eq!(active_acme, want);
        let revoked = walk(app, &w.read_only, "/api/v1/licenses?status=revoked").await;
        assert_eq!(ids(revoked), [acme[1].clone()]);
        let video = walk(app, admin, "/api/v1/licenses?product=video-pro").await;
        assert_eq!(ids(video), vec![w.video_license.clone()]);
        let by_license = walk(
            app,
            admin,
            &format!("/api/v1/activations?license={}&state=active", w.license),
        )
        .await;
        assert_eq!(ids(by_license), vec![w.activation.clone()]);
        assert!(
            walk(app, admin, "/api/v1/activations?state=deactivated")
                .await
                .is_empty()
        );
        assert!(
            walk(app, admin, "/api/v1/activations?customer=acme")
                .await
                .is_empty()
        );
        let policies = walk(app, admin, "/api/v1/policies?product=photo-pro").await;
        assert_eq!(ids(policies), vec![w.policy.clone()]);
        let audit = walk(
            app,
            &w.support,
            &format!("/api/v1/audit?subject={}&limit=1", acme[1]),
        )
        .await;
        let actions: Vec<&str> = audit
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["license.revoke", "license.create"]);

        // A limited token: a product it does not see is not found, its own are listed.
        send(
            app,
            call("GET", "/api/v1/licenses?product=photo-pro").token(&w.video_read_only),
        )
        .await
        .assert_error(404, "not-found", "a product the token does not see");
        let own = walk(
            app,
            &w.video_read_only,
            "/api/v1/activations?product=video-pro",
        )
        .await;
        assert!(own.is_empty());

        // What is refused, and how.
        let before = w.snapshot().await;
        let licenses_next = send(app, call("GET", "/api/v1/licenses?limit=1").token(admin))
            .await
            .ok("a page")["next"]
            .as_str()
            .unwrap()
            .to_string();
        for (path, status, code, words) in [
            ("/api/v1/licenses?limit=0", 400, "invalid", "give 1 to 1000"),
            (
                "/api/v1/activations?limit=1001",
                400,
                "invalid",
                "give 1 to 1000",
            ),
            ("/api/v1/audit?limit=-3", 400, "invalid", "give 1 to 1000"),
            ("/api/v1/products?limit=ten", 400, "bad-request", "limit"),
            (
                "/api/v1/activations?after=not-a-cursor",
                400,
                "invalid-cursor",
                "not a cursor this portal gave out",
            ),
            (
                &format!("/api/v1/activations?after={licenses_next}"),
                400,
                "invalid-cursor",
                "a cursor of the licenses list, given to the activations list",
            ),
            (
                "/api/v1/licenses?status=expired",
                400,
                "invalid",
                "active or suspended or revoked",
            ),
            (
                "/api/v1/activations?state=gone",
                400,
                "invalid",
                "active or deactivated",
            ),
            (
                "/api/v1/licenses?stauts=active",
                400,
                "bad-request",
                "unknown field `stauts`",
            ),
            ("/api/v1/licenses?customer=", 400, "invalid", "customer"),
            ("/api/v1/licenses?product=nope", 404, "not-found", "nope"),
            (
                "/api/v1/activations?license=lic_nope",
                404,
                "not-found",
                "lic_nope",
            ),
        ] {
            let r = send(app, call("GET", path).token(admin)).await;
            r.assert_error(status, code, path);
            let message = r.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(words), "{path}: {message}");
        }
        assert_eq!(w.snapshot().await, before, "{}", db.name);
    }
}

/// The parameters each list's OpenAPI operation documents are exactly those its route
/// takes: the route names what it takes when refusing one it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_parameters_each_list_takes() {
    let doc: Value = serde_json::from_str(http::OPENAPI).unwrap();
    let db = backends().await.into_iter().next().unwrap();
    let w = world(&db).await;
    for path in LISTS {
        let documented: BTreeSet<String> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => {
                    let name = r.rsplit('/').next().unwrap();
                    doc["components"]["parameters"][name]["name"].clone()
                }
                None => p["name"].clone(),
            })
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        let r = send(
            &w.app,
            call("GET", format!("{path}?no_such_parameter=1")).token(&w.admin),
        )
        .await;
        r.assert_error(400, "bad-request", path);
        let message = r.body["error"]["message"].as_str().unwrap();
        let expected = message
            .split_once(", expected")
            .unwrap_or_else(|| panic!("{path}: {message}"))
            .1;
        let taken: BTreeSet<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        assert_eq!(documented, taken, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_over_http_shows_the_device_variables() {
    for db in backends().await {
        let w = world(&db).await;
        let path = format!("/api/v1/activations/{}", w.activation);
        let got = send(&w.app, call("GET", path.clone()).token(&w.read_only))
            .await
            .ok("get activation");
        assert_eq!(got["variables"], json!({}), "{}", db.name);
        // Set on the device, sent in a usage report through the API.
        w.device.set_variable("site", "Lab 2").unwrap();
        w.device
            .set_variable("note", "\u{1b}[31mred\u{202e}")
            .unwrap();
        let report = w.device.usage_report().unwrap();
        send(&w.app, call("POST", "/api/v1/usage").file(report.armored()))
            .await
            .ok("usage report");
        let got = send(&w.app, call("GET", path).token(&w.read_only))
            .await
            .ok("get activation");
        // The exact strings, JSON-escaped on the wire.
        assert_eq!(
            got["variables"],
            json!({"note": "\u{1b}[31mred\u{202e}", "site": "Lab 2"}),
            "{}",
            db.name
        );
    }
}
