//! The portal's HTTP API: anonymous uploads of device files (rate-limited per client),
//! and the vendor and support API behind bearer tokens. JSON in and out; every error,
//! whatever its cause (a refused file, a bad token, bad JSON, a body too large, an
//! unknown route or method, a request hyper cannot parse: see `parse_errors`), is
//! `{"error": {"code", "message", "hint"}}`.
//!
//! The routes, their roles and schemas are described by the OpenAPI document served at
//! `/openapi.json` (`portal/openapi.json`); [`ROUTES`] lists what the router serves, and a
//! test holds the two to each other.
//!
//! Access:
//! - anonymous: `/healthz` and `/openapi.json`; rate-limited per client IP: the trusted
//!   public keys `/api/v1/keys/trust.pem`, the uploads `/api/v1/{activate,deactivate,usage}`
//!   and the floating device routes `/api/v1/leases{,/renew,/release}`,
//!   `/api/v1/{checkout,checkin}`;
//! - read-only and up: reading products, policies, licenses, activations, keys;
//! - support and up: the audit log, refresh files, applying any device file;
//! - admin: creating products, policies and licenses, editing and revoking licenses,
//!   deactivating on the server, reclaiming inactive floating seats; and, with a token for all products only, rotating the vendor key and managing
//!   tokens.
//!
//! A token limited to some products sees only their objects: an object of another
//! product is "not found" (404) — to read it, change it or apply a file about it, in the
//! same words as an object that does not exist — and lists leave them out; creating a
//! product outside its products is forbidden (403). All of it is checked before anything
//! is changed. The audit log is for support and admin; a
//! token limited to some products must ask for the entries of one object of its products
//! (`subject=ID`).
//!
//! The same router serves the self-service HTML pages ([`crate::web`]: `/`, `/activate`,
//! `/download/{token}`, `/static/logo`); they are not part of the API (nor of [`ROUTES`]
//! and the OpenAPI document) and answer their errors in HTML.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::serve::ListenerExt as _;
use axum::{Extension, Json, Router};
use lic_core::format::{self, AnyFile, FileKind, FormatError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::{self, Action, Principal, Role};
use crate::error::PortalError;
use crate::ops::{
    Activation, ActivationFilter, Actor, Applied, AuditEntry, AuditFilter, CreatedLicense,
    EditedLicense, LicenseEdit, LicenseFilter, LicenseInfo, NewLicense, Page, PageRequest, Policy,
    PolicyFilter, Portal, Product, RefreshSpec,
};
use crate::vendor::{self, VendorKeyInfo};

mod activations;
pub(crate) use activations::check_file_scope;
pub(crate) use files::upload;
mod audit;
mod catalog;
mod files;
mod floating;
mod keys;
mod parse_errors;

use activations::*;
use audit::*;
use catalog::*;
use files::*;
use floating::*;
use keys::*;

/// The largest request body: a lic file is at most 64 KiB, and so is any JSON request.
pub const MAX_BODY: usize = format::armor::MAX_FILE_SIZE;

/// The OpenAPI 3.1 document describing every route.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The state the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The portal's operations.
    pub portal: Arc<Portal>,
    /// The rate limit on anonymous uploads (the self-service pages' uploads count too).
    pub limiter: Arc<RateLimiter>,
    /// The self-service pages: branding, cookies, the licenses waiting to be downloaded.
    pub web: Arc<crate::web::Web>,
    /// The rate limit on sign-ins (console and end users), per client IP: 10 a minute,
    /// in bursts of up to 5.
    pub sign_in: Arc<RateLimiter>,
}

impl AppState {
    /// The portal with the default upload limit: 60 uploads a minute per client IP, in
    /// bursts of up to 20.
    pub fn new(portal: Arc<Portal>) -> AppState {
        AppState {
            portal,
            limiter: Arc::new(RateLimiter::new(60, 20)),
            web: Arc::new(crate::web::Web::new(crate::web::WebConfig::default())),
            sign_in: Arc::new(RateLimiter::new(10, 5)),
        }
    }

    /// The same, with the self-service pages configured (branding, secure cookies).
    pub fn with_web(mut self, config: crate::web::WebConfig) -> AppState {
        self.web = Arc::new(crate::web::Web::new(config));
        self
    }

    /// The same, with another sign-in limit.
    pub fn with_sign_in_limiter(mut self, limiter: RateLimiter) -> AppState {
        self.sign_in = Arc::new(limiter);
        self
    }

    /// The same, with another upload limit.
    pub fn with_limiter(mut self, limiter: RateLimiter) -> AppState {
        self.limiter = Arc::new(limiter);
        self
    }
}

// ----- rate limiting -------------------------------------------------------------------

/// A token bucket per client: `burst` uploads at once, refilled at `per_minute`. Clients
/// are keyed by IP address (IPv6 by its /64, which one machine may fill with addresses);
/// requests without a known peer address share one bucket. In memory, per portal
/// instance. Behind a reverse proxy every client has the proxy's address: give the proxy
/// its own limit, or raise this one.
#[derive(Debug)]
pub struct RateLimiter {
    /// (per minute, burst); `None`: no limit.
    limit: Option<(u32, u32)>,
    buckets: Mutex<Buckets>,
}

#[derive(Debug)]
struct Buckets {
    by_client: HashMap<Option<IpAddr>, (f64, Instant)>,
    swept: Instant,
}

/// Clients remembered before idle ones are forgotten.
const MAX_CLIENTS: usize = 100_000;

impl RateLimiter {
    /// `per_minute` uploads a minute per client, up to `burst` at once (both at least 1).
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            limit: Some((per_minute.max(1), burst.max(1))),
            buckets: Mutex::new(Buckets {
                by_client: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// No limit at all: for load tests, or behind a proxy that limits uploads itself.
    pub fn unlimited() -> RateLimiter {
        RateLimiter {
            limit: None,
            ..RateLimiter::new(1, 1)
        }
    }

    /// Take one upload for `client`; `Err(seconds)` to wait when it is over the limit.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let Some((per_minute, burst)) = self.limit else {
            return Ok(());
        };
        let key = client.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & (!0u128 << 64)).into()),
            },
            v4 => v4,
        });
        let (rate, burst) = (f64::from(per_minute) / 60.0, f64::from(burst));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.by_client.len() >= MAX_CLIENTS
            && now.duration_since(buckets.swept) > Duration::from_secs(1)
        {
            // A bucket that has refilled is the same as no bucket.
            buckets.swept = now;
            let full = Duration::from_secs_f64(burst / rate);
            buckets
                .by_client
                .retain(|_, (_, at)| now.duration_since(*at) < full);
        }
        let (tokens, at) = buckets.by_client.entry(key).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil() as u64)
        }
    }
}

// ----- errors ----------------------------------------------------------------------------

/// An error as the API sends it: a status and `{"error": {"code", "message", "hint"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    hint: std::borrow::Cow<'static, str>,
    retry_after: Option<u64>,
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, and what to do about it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable code (`PortalError::code`, or one of the HTTP-level codes below).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// What to do next.
    pub hint: String,
}

const DOCS_HINT: &str = "the API is described at /openapi.json";

impl ApiError {
    /// An error that is not a [`PortalError`]: the HTTP layer's own.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        hint: &'static str,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            hint: hint.into(),
            retry_after: None,
        }
    }

    /// The status it is sent with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its stable code (e.g. `no-seat-left`).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What went wrong, for a person.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do next.
    pub fn hint(&self) -> &str {
        &self.hint
    }

    /// The seconds to wait before retrying, for a refusal over the upload limit.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The refusal of a client over the upload limit, who may retry in `wait` seconds.
    pub(crate) fn rate_limited(wait: u64) -> ApiError {
        let mut e = ApiError::from(PortalError::RateLimited);
        e.retry_after = Some(wait);
        e
    }

    pub(crate) fn too_large_file() -> ApiError {
        ApiError::too_large()
    }

    fn too_large() -> ApiError {
        PortalError::File(FormatError::TooLarge {
            size: MAX_BODY + 1,
            limit: MAX_BODY,
        })
        .into()
    }
}

impl From<PortalError> for ApiError {
    fn from(e: PortalError) -> ApiError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // A server-side failure's details are for the operator's log, not the caller.
        let unavailable = e.unavailable();
        let message = if unavailable {
            tracing::warn!(code = e.code(), "{e}");
            "the portal's database cannot be reached right now".into()
        } else if status.is_server_error() {
            tracing::error!(code = e.code(), "{e}");
            "the portal could not complete the request; its operator will find the cause in \
             the portal's log"
                .into()
        } else {
            e.to_string()
        };
        ApiError {
            status,
            code: e.code(),
            message,
            hint: e.hint(),
            retry_after: unavailable.then_some(5),
        }
    }
}

impl From<FormatError> for ApiError {
    fn from(e: FormatError) -> ApiError {
        PortalError::File(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                hint: self.hint.into(),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Turn any error response that is not JSON yet (a rejection of a path or query, or
/// anything else the framework answers by itself) into the API's JSON error shape. The
/// self-service pages' own HTML answers pass as they are.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => return ApiError::too_large().into_response(),
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::URI_TOO_LONG | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            parse_errors::parse_error(status.as_u16()).0
        }
        s if s.is_server_error() => "internal",
        _ => "bad-request",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message, DOCS_HINT).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("there is no route {method} {}", uri.path()),
        DOCS_HINT,
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} does not take {method}", uri.path()),
        DOCS_HINT,
    )
}

// ----- extractors ------------------------------------------------------------------------

/// An uploaded file: the raw body (armored text or binary), at most [`MAX_BODY`] bytes.
/// Any content type is taken; the file's own format decides.
struct Upload(Bytes);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(Upload)
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
                status => ApiError::new(status, "bad-request", e.body_text(), DOCS_HINT),
            })
    }
}

/// A JSON body, refused in the API's error shape.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(e) => Err(match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                    e.status(),
                    "unsupported-media-type",
                    e.body_text(),
                    "send the body as JSON, with 'Content-Type: application/json'",
                ),
                status => ApiError::new(
                    status,
                    "invalid-json",
                    e.body_text(),
                    "correct the JSON body; its schema is in /openapi.json",
                ),
            }),
        }
    }
}

/// The client of an anonymous upload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client(pub(crate) Option<IpAddr>);

impl Client {
    pub(crate) fn actor(self) -> Actor {
        match self.0 {
            Some(ip) => Actor::anonymous(&ip.to_string()),
            None => Actor::anonymous("unknown"),
        }
    }
}

pub(crate) fn client_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

// ----- access control --------------------------------------------------------------------

/// Who may call a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Anyone, unlimited.
    Public,
    /// Anyone, rate-limited per client.
    Anonymous,
    /// A bearer token allowed to do this.
    Token(Action),
}

#[derive(Clone)]
struct Gate {
    state: AppState,
    access: Access,
}

/// The token's name, for the request log.
#[derive(Clone)]
struct LoggedToken(String);

/// Checks a route's access before anything else (in particular before its body is read),
/// and hands the handler the [`Client`] or [`Principal`].
async fn gate(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    match gate.access {
        Public => next.run(request).await,
        Anonymous => {
            let client = client_ip(&request);
            if let Err(wait) = gate.state.limiter.check(client) {
                return ApiError::rate_limited(wait).into_response();
            }
            request.extensions_mut().insert(Client(client));
            next.run(request).await
        }
        Token(action) => {
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let principal = match authenticate(&gate.state, authorization).await {
                Ok(p) => p,
                Err(e) => return e.into_response(),
            };
            if let Err(e) = principal.require(action) {
                return ApiError::from(e).into_response();
            }
            let name = LoggedToken(principal.name.clone());
            request.extensions_mut().insert(principal);
            let mut response = next.run(request).await;
            response.extensions_mut().insert(name);
            response
        }
    }
}

/// The holder of the bearer token in an `Authorization` header's value.
async fn authenticate(
    state: &AppState,
    authorization: Option<String>,
) -> Result<Principal, ApiError> {
    let value = authorization.ok_or(PortalError::Unauthenticated)?;
    let (scheme, token) = value.split_once(' ').ok_or(PortalError::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(PortalError::Unauthenticated.into());
    }
    Ok(auth::authenticate(state.portal.db(), token).await?)
}

/// One log line per request: method, path (no query; a download link's token left
/// out), status, time, client and token name — never the Authorization header or the
/// body.
async fn log_request(request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let path = crate::web::loggable_path(request.uri().path());
    let client = client_ip(&request);
    let response = next.run(request).await;
    let token = response
        .extensions()
        .get::<LoggedToken>()
        .map(|t| t.0.as_str());
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        client = %client.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        token = token.unwrap_or("-"),
        "request"
    );
    response
}

// ----- the routes --------------------------------------------------------------------------

macro_rules! routes {
    ($($method:ident $path:literal, $access:expr => $handler:expr;)*) => {
        /// Every route the router serves, as (method, path), paths in the router's (and
        /// OpenAPI's) `{param}` syntax. The OpenAPI document lists exactly these.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn routes(state: &AppState) -> Router<AppState> {
            let mut router = Router::new();
            $(
                let gated = middleware::from_fn_with_state(
                    Gate { state: state.clone(), access: $access },
                    gate,
                );
                router = router.route($path, on(MethodFilter::$method, $handler).route_layer(gated));
            )*
            router
        }
    };
}

use Access::{Anonymous, Public, Token};

routes! {
    GET "/healthz", Public => healthz;
    GET "/openapi.json", Public => openapi;
    GET "/api/v1/keys/trust.pem", Anonymous => trust_pem;
    GET "/api/v1/keys/keyset", Anonymous => latest_key_set;
    GET "/api/v1/keys/keysets/{version}", Anonymous => key_set;
    POST "/api/v1/activate", Anonymous => activate;
    POST "/api/v1/deactivate", Anonymous => deactivate;
    POST "/api/v1/usage", Anonymous => usage;
    POST "/api/v1/leases", Anonymous => take_lease;
    POST "/api/v1/leases/renew", Anonymous => renew_lease;
    POST "/api/v1/leases/release", Anonymous => release_lease;
    POST "/api/v1/checkout", Anonymous => checkout;
    POST "/api/v1/checkin", Anonymous => checkin;
    GET "/api/v1/products", Token(Action::Read) => list_products;
    POST "/api/v1/products", Token(Action::CreateProduct) => create_product;
    GET "/api/v1/products/{code}", Token(Action::Read) => get_product;
    GET "/api/v1/policies", Token(Action::Read) => list_policies;
    POST "/api/v1/policies", Token(Action::CreatePolicy) => create_policy;
    GET "/api/v1/policies/{id}", Token(Action::Read) => get_policy;
    PATCH "/api/v1/policies/{id}/reclamation", Token(Action::CreatePolicy) => edit_reclamation;
    GET "/api/v1/licenses", Token(Action::Read) => list_licenses;
    POST "/api/v1/licenses", Token(Action::CreateLicense) => create_license;
    GET "/api/v1/licenses/{id}", Token(Action::Read) => get_license;
    PATCH "/api/v1/licenses/{id}", Token(Action::EditLicense) => edit_license;
    POST "/api/v1/licenses/{id}/revoke", Token(Action::RevokeLicense) => revoke_license;
    GET "/api/v1/activations", Token(Action::Read) => list_activations;
    GET "/api/v1/activations/{id}", Token(Action::Read) => get_activation;
    POST "/api/v1/activations/{id}/refresh", Token(Action::Refresh) => refresh;
    POST "/api/v1/activations/{id}/deactivate", Token(Action::Deactivate) => deactivate_activation;
    POST "/api/v1/activations/{id}/resign", Token(Action::Refresh) => resign_activation;
    POST "/api/v1/apply", Token(Action::Apply) => apply;
    POST "/api/v1/reclaim", Token(Action::Deactivate) => reclaim;
    GET "/api/v1/audit", Token(Action::ReadAudit) => audit;
    GET "/api/v1/keys", Token(Action::Read) => keys;
    POST "/api/v1/keys/rotate", Token(Action::RotateKey) => rotate_key;
    POST "/api/v1/keys/{kid}/revoke", Token(Action::RotateKey) => revoke_key;
    GET "/api/v1/tokens", Token(Action::ManageTokens) => list_tokens;
    POST "/api/v1/tokens", Token(Action::ManageTokens) => create_token;
    POST "/api/v1/tokens/{id}/revoke", Token(Action::ManageTokens) => revoke_token;
}

/// The API: every route in [`ROUTES`], the self-service pages ([`crate::web`]), a JSON
/// 404 for any other path and a JSON 405 for a method a path does not take, bodies
/// limited to [`MAX_BODY`] (the pages' form a little more), a log line per request.
pub fn router(state: AppState) -> Router {
    routes(&state)
        .merge(crate::web::routes())
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// Serve the API on `addr` until `shutdown` completes, then finish the requests under way.
pub async fn serve(
    state: AppState,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    Bound::bind(addr).await?.serve(state, shutdown).await
}

/// The API's socket, bound but not serving yet: the caller learns the address (the port
/// the system chose for port 0) and can tell it before the first request is taken.
///
/// ```no_run
/// # async fn f(state: lic_portal::http::AppState) -> std::io::Result<()> {
/// let bound = lic_portal::http::Bound::bind("127.0.0.1:0".parse().unwrap()).await?;
/// println!("listening on {}", bound.url());
/// bound.serve(state, std::future::pending()).await
/// # }
/// ```
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Bind `addr` (connections wait in the backlog until [`Bound::serve`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Bound> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Bound { listener, addr })
    }

    /// The address bound, with the actual port.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDRESS` (no trailing slash), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve the API until `shutdown` completes, then finish the requests under way.
    pub async fn serve(
        self,
        state: AppState,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve_on(self.listener, state, shutdown).await
    }
}

/// [`serve`] on a listener already bound (e.g. to port 0, to learn the port first).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!("lic portal API listening on http://{local}/ (described at /openapi.json)");
    // hyper's own answers to requests it cannot parse, in JSON like every other error.
    let listener = parse_errors::JsonErrorsListener(listener);
    // Small responses on kept-alive connections: do not let Nagle hold them back. (The
    // tap also gives the router each connection's peer address as `ConnectInfo`.)
    let listener = listener.tap_io(|conn| {
        if let Err(e) = conn.get_ref().set_nodelay(true) {
            tracing::debug!("could not set TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
