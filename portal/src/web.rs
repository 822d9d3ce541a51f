//! The self-service pages: server-rendered HTML for the end user who has an activation
//! request in hand and wants the license file for it, with no JavaScript and nothing
//! fetched from anywhere but the portal.
//!
//! - `GET /`: what the portal is for;
//! - `GET /activate`: the form (a file upload, or the request's text pasted: armored or
//!   the `LIC1:` QR text), with a CSRF token;
//! - `POST /activate` (multipart or urlencoded): applied exactly as the anonymous upload
//!   `POST /api/v1/activate` ([`crate::http::upload`], under the same rate limit); the
//!   answer offers the license for download, or shows the form again with the refusal's
//!   message and hint;
//! - `GET /download/{token}`: the license file (or a receipt), as an attachment, for a
//!   short while;
//! - `GET/POST /deactivate`, `GET/POST /usage` (`web/uploads.rs`): a deactivation or check-in
//!   file, a usage report, applied as `POST /api/v1/deactivate`, `/checkin`, `/usage`
//!   are; the answer offers the receipt for download and says what was counted;
//! - `GET/POST /signin`, `POST /signout` (`web/signin.rs`): an end user of a user-based
//!   license signs in (user id and password); only then does `/activate` let a request
//!   naming that user take a seat (the rule is the ops layer's: [`Actor::end_user`]);
//! - `GET /static/logo`: the vendor's logo (white label, `lic-portal serve --brand-logo`).
//!
//! CSRF: double submit. `GET /activate` sets a random token in a `SameSite=Strict;
//! HttpOnly` cookie and puts the same value in a hidden field; a `POST` without both, equal
//! (compared in constant time), is refused (403) before anything is read or applied.
//! Every page carries a strict Content-Security-Policy, `nosniff` and `same-origin`
//! referrers.

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json};
use lic_core::format::{self, FileKind, License};
use rand_core::RngCore as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::http::{ApiError, AppState, Client, MAX_BODY, client_ip, upload};
use crate::ops::Actor;

mod signin;
mod uploads;

pub(crate) use signin::EndUser;

/// How long a license waits for its download.
pub const DOWNLOAD_TTL: Duration = Duration::from_secs(15 * 60);

/// Licenses waiting for their download, at most: past that, the oldest are forgotten.
const MAX_PENDING: usize = 10_000;

/// The largest form: a request file and a pasted text, each at most [`MAX_BODY`], and
/// the multipart framing around them.
pub const MAX_FORM: usize = 2 * MAX_BODY + 16 * 1024;

/// The largest logo `--brand-logo` takes.
pub const MAX_LOGO: usize = 512 * 1024;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   form-action 'self'; frame-ancestors 'none'";

/// How the pages look and behave: `lic-portal serve --brand-name, --brand-logo,
/// --secure-cookies`.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The vendor's name, in every page's header and title.
    pub brand_name: String,
    /// The vendor's logo, served at `/static/logo`.
    pub brand_logo: Option<Logo>,
    /// Mark the CSRF cookie `Secure` (and name it `__Host-…`): for a portal behind TLS.
    pub secure_cookies: bool,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            brand_name: "License portal".into(),
            brand_logo: None,
            secure_cookies: false,
        }
    }
}

/// An image to show in the pages' header.
#[derive(Debug, Clone)]
pub struct Logo {
    /// The image's bytes.
    pub bytes: Vec<u8>,
    /// Its media type.
    pub content_type: &'static str,
}

/// Why a logo cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The file could not be read.
    #[error("cannot read the logo {path}: {source}")]
    LogoUnreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not an image type the pages show.
    #[error("the logo {path} is not a .png, .svg, .jpg, .jpeg, .gif or .webp file")]
    LogoKind {
        /// The file.
        path: String,
    },
    /// Too large for a logo.
    #[error("the logo {path} has {size} bytes; a logo may have at most {MAX_LOGO}")]
    LogoTooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: usize,
    },
}

impl Logo {
    /// The image in `path`, its type by its extension.
    pub fn read(path: &FsPath) -> Result<Logo, WebError> {
        let shown = path.display().to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let content_type = match ext.as_deref() {
            Some("png") => "image/png",
            Some("svg") => "image/svg+xml",
            Some("jpg" | "jpeg") => "image/jpeg",
            Some("gif") => "image/gif",
            Some("webp") => "image/webp",
            _ => return Err(WebError::LogoKind { path: shown }),
        };
        let bytes = std::fs::read(path).map_err(|source| WebError::LogoUnreadable {
            path: shown.clone(),
            source,
        })?;
        if bytes.len() > MAX_LOGO {
            return Err(WebError::LogoTooLarge {
                path: shown,
                size: bytes.len(),
            });
        }
        Ok(Logo {
            bytes,
            content_type,
        })
    }
}

/// The pages' state: their configuration and the licenses waiting to be downloaded (in
/// memory: a portal restarted forgets them; the person sends the request again and gets
/// the same license).
#[derive(Debug)]
pub struct Web {
    config: WebConfig,
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    filename: String,
    body: String,
    until: Instant,
}

impl Web {
    /// Pages configured by `config`, no download waiting.
    pub fn new(config: WebConfig) -> Web {
        Web {
            config,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn brand(&self) -> Brand<'_> {
        self.brand_for(None)
    }

    /// The brand, with the end user signed in (shown in the header, with a sign-out).
    pub(crate) fn brand_for<'a>(&'a self, user: Option<&'a EndUser>) -> Brand<'a> {
        Brand {
            name: &self.config.brand_name,
            logo: self.config.brand_logo.is_some(),
            user,
        }
    }

    /// Whether cookies are marked `Secure` (the portal is behind TLS).
    pub(crate) fn secure_cookies(&self) -> bool {
        self.config.secure_cookies
    }

    fn cookie_name(&self) -> &'static str {
        if self.config.secure_cookies {
            "__Host-lic_csrf"
        } else {
            "lic_csrf"
        }
    }

    /// Keep `body` for download as `filename`: the token to fetch it by (at
    /// `/download/{token}`, for [`DOWNLOAD_TTL`]). The console's uploads offer their
    /// receipts this way too.
    pub(crate) fn offer(&self, filename: String, body: String) -> Option<String> {
        let token = random_token()?;
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, p| p.until > now);
        while pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.until)
                .map(|(t, _)| t.clone())?;
            pending.remove(&oldest);
        }
        pending.insert(
            token.clone(),
            Pending {
                filename,
                body,
                until: now + DOWNLOAD_TTL,
            },
        );
        Some(token)
    }

    fn offered(&self, token: &str) -> Option<(String, String)> {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .get(token)
            .filter(|p| p.until > Instant::now())
            .map(|p| (p.filename.clone(), p.body.clone()))
    }
}

/// 32 random bytes in hex; `None` if the system's generator fails.
fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    rand_core::OsRng.try_fill_bytes(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

fn is_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

// ----- templates ---------------------------------------------------------------------------

/// The vendor's name and whether there is a logo, for every page's header; and the end
/// user signed in on the self-service pages, if any.
pub(crate) struct Brand<'a> {
    pub(crate) name: &'a str,
    pub(crate) logo: bool,
    pub(crate) user: Option<&'a EndUser>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    brand: Brand<'a>,
}

/// A refusal as pages show it.
pub(crate) struct Refusal {
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl From<&ApiError> for Refusal {
    fn from(e: &ApiError) -> Refusal {
        Refusal {
            code: e.code().into(),
            message: e.message().into(),
            hint: e.hint().into(),
        }
    }
}

#[derive(Template)]
#[template(path = "activate.html")]
struct ActivatePage<'a> {
    brand: Brand<'a>,
    csrf: &'a str,
    text: &'a str,
    refusal: Option<Refusal>,
}

#[derive(Template)]
#[template(path = "ready.html")]
struct ReadyPage<'a> {
    brand: Brand<'a>,
    product: &'a str,
    filename: &'a str,
    token: &'a str,
    license: &'a str,
    replay: bool,
    minutes: u64,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    brand: Brand<'a>,
    title: &'a str,
    message: &'a str,
    next: &'a str,
    link: &'a str,
    link_text: &'a str,
}

/// A page as a response: `status`, HTML, or a plain 500 if the template fails.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!("cannot render a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>The portal could not show this page; its operator will find the cause in its log.</p>".to_string()),
            )
                .into_response()
        }
    }
}

// ----- routes ------------------------------------------------------------------------------

/// The pages' routes, merged into [`crate::http::router`].
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/activate",
            get(activate_form)
                .post(activate_submit)
                .layer(DefaultBodyLimit::max(MAX_FORM)),
        )
        .route("/download/{token}", get(download))
        .merge(uploads::routes())
        .merge(signin::routes())
        .route("/static/logo", get(logo))
        .route("/static/site.css", get(stylesheet))
        .layer(axum::middleware::map_response(security_headers))
}

pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages carry CSRF tokens, licenses and download links: never from a cache.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let user = signin::end_user(&s, &headers).await;
    page(
        StatusCode::OK,
        &HomePage {
            brand: s.web.brand_for(user.as_ref()),
        },
    )
}

/// The pages' one stylesheet (no inline styles, nothing from elsewhere).
pub const STYLESHEET: &str = include_str!("../static/site.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The value of the cookie `name` in `headers`, if it is a token the portal could have
/// set (64 hex digits).
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && is_token(v))
        .map(|(_, v)| v.to_string())
}

fn csrf_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    cookie(headers, name)
}

/// The form token for a page without a session: the browser's CSRF cookie, or a new
/// one (`true`: set it with [`set_csrf_cookie`]). `None` if the system has no randomness.
pub(crate) fn csrf_for(web: &Web, headers: &HeaderMap) -> Option<(String, bool)> {
    match csrf_cookie(headers, web.cookie_name()) {
        Some(token) => Some((token, false)),
        None => random_token().map(|t| (t, true)),
    }
}

/// Whether a form sent without a session carries the browser's CSRF cookie's value.
pub(crate) fn csrf_matches(web: &Web, headers: &HeaderMap, sent: &str) -> bool {
    csrf_cookie(headers, web.cookie_name())
        .is_some_and(|cookie| bool::from(cookie.as_bytes().ct_eq(sent.as_bytes())))
}

pub(crate) fn set_csrf_cookie(web: &Web, response: &mut Response, token: &str) {
    set_cookie(web, response, web.cookie_name(), token, None);
}

/// Set the cookie `name` to `value` as every cookie of the pages is set: `Path=/;
/// HttpOnly; SameSite=Strict`, `Secure` with `--secure-cookies`, and `Max-Age` when
/// given (`Some(0)` removes it; `None`: until the browser closes).
pub(crate) fn set_cookie(
    web: &Web,
    response: &mut Response,
    name: &str,
    value: &str,
    max_age: Option<i64>,
) {
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    let secure = if web.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The form, with `refusal` above it and `text` kept; the CSRF cookie set when the
/// browser has none yet.
fn form_page(
    web: &Web,
    headers: &HeaderMap,
    user: Option<&EndUser>,
    status: StatusCode,
    text: &str,
    refusal: Option<&ApiError>,
) -> Response {
    let (token, fresh) = match csrf_cookie(headers, web.cookie_name()) {
        Some(token) => (token, false),
        None => match random_token() {
            Some(token) => (token, true),
            None => return internal(web),
        },
    };
    let mut response = page(
        status,
        &ActivatePage {
            brand: web.brand_for(user),
            csrf: &token,
            text,
            refusal: refusal.map(Refusal::from),
        },
    );
    if fresh {
        set_csrf_cookie(web, &mut response, &token);
    }
    if let Some(wait) = refusal.and_then(ApiError::retry_after) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    }
    response
}

fn internal(web: &Web) -> Response {
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        &MessagePage {
            brand: web.brand(),
            title: "Something went wrong",
            message: "The portal could not complete the request; its operator will find the \
                      cause in the portal's log.",
            next: "Try again in a moment. If it keeps happening, tell the vendor's support.",
            link: "/activate",
            link_text: "Back to the form",
        },
    )
}

async fn activate_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let user = signin::end_user(&s, &headers).await;
    form_page(&s.web, &headers, user.as_ref(), StatusCode::OK, "", None)
}

/// What the form sent.
#[derive(Debug, Default, Deserialize)]
struct Fields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(skip)]
    file: Vec<u8>,
}

async fn read_fields(request: Request, form: &'static str) -> Result<Fields, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let refused = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large_file()
        } else {
            ApiError::new(status, "bad-request", text, form)
        }
    };
    if !multipart {
        let Form(fields) = Form::<Fields>::from_request(request, &())
            .await
            .map_err(|e| refused(e.status(), e.body_text()))?;
        return Ok(fields);
    }
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| refused(e.status(), e.body_text()))?;
    let mut fields = Fields::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| refused(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| refused(e.status(), e.body_text()))?;
        match name.as_str() {
            "csrf" => fields.csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "text" => fields.text = String::from_utf8_lossy(&bytes).into_owned(),
            "file" => fields.file = bytes.to_vec(),
            _ => {}
        }
    }
    Ok(fields)
}

fn csrf_refused(web: &Web) -> Response {
    csrf_refused_page(web, "/activate")
}

/// The refusal of a form without a valid CSRF token; `link`: the form's page.
pub(crate) fn csrf_refused_page(web: &Web, link: &str) -> Response {
    page(
        StatusCode::FORBIDDEN,
        &MessagePage {
            brand: web.brand(),
            title: "The form has expired",
            message: "This form was not sent from the portal's own page, or the page was open \
                      too long (or cookies are blocked for this site). Nothing was sent on.",
            next: "Open the form again, fill it in again, and send it from there. Cookies \
                   must be allowed for this site.",
            link,
            link_text: "Reload the form",
        },
    )
}

async fn activate_submit(State(s): State<AppState>, request: Request) -> Response {
    let web = &s.web;
    let client = Client(client_ip(&request));
    let headers = request.headers().clone();
    // A post from elsewhere has no cookie (SameSite=Strict): refused before its body is read.
    let Some(cookie) = csrf_cookie(&headers, web.cookie_name()) else {
        return csrf_refused(web);
    };
    let fields = match read_fields(request, "send the form from the portal's activation page").await
    {
        Ok(fields) => fields,
        Err(e) => return form_page(web, &headers, None, e.status(), "", Some(&e)),
    };
    if !bool::from(cookie.as_bytes().ct_eq(fields.csrf.as_bytes())) {
        return csrf_refused(web);
    }
    // The end user signed in, if any: a request naming them may take a seat of their
    // user-based license (the ops layer decides, from the actor).
    let user = signin::end_user(&s, &headers).await;
    let user = user.as_ref();
    let refuse =
        |text: &str, e: &ApiError| form_page(web, &headers, user, e.status(), text, Some(e));
    let text = fields.text.trim();
    // The same limit as the upload API's, on the same client's bucket.
    if let Err(wait) = s.limiter.check(client.0) {
        let e = ApiError::rate_limited(wait);
        return refuse(text, &e);
    }
    let input: &[u8] = match (fields.file.is_empty(), text.is_empty()) {
        (false, true) => &fields.file,
        (true, false) => text.as_bytes(),
        (empty_file, _) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                if empty_file { "empty" } else { "two-requests" },
                if empty_file {
                    "no activation request was sent: no file was chosen and no text was pasted"
                } else {
                    "both a file and a pasted text were sent; the portal takes one request at a time"
                },
                if empty_file {
                    "choose the file that lic offline-activate wrote, or paste its text (or the \
                     LIC1: line that lic offline-activate --qr shows), then send the form again"
                } else {
                    "send the file alone (clear the text box), or the text alone (send the form \
                     without choosing a file)"
                },
            );
            return refuse(text, &e);
        }
    };
    // A deactivation or a usage report sent here: say which page takes it.
    if let Some(e) = uploads::misplaced(input, &[FileKind::ActivationRequest]) {
        return refuse(text, &e);
    }
    let actor = match user {
        Some(u) => Actor::end_user(
            &u.id,
            &client
                .0
                .map_or_else(|| "unknown".into(), |ip| ip.to_string()),
        ),
        None => client.actor(),
    };
    let applied = match upload(&s.portal, FileKind::ActivationRequest, input, &actor).await {
        Ok(Json(applied)) => applied,
        Err(e) => return refuse(text, &e),
    };
    let product = product_of(&applied.response).unwrap_or_else(|| "license".into());
    let filename = format!("{}.lic", file_stem(&product));
    let Some(token) = web.offer(filename.clone(), applied.response.clone()) else {
        return internal(web);
    };
    page(
        StatusCode::OK,
        &ReadyPage {
            brand: web.brand_for(user),
            product: &product,
            filename: &filename,
            token: &token,
            license: &applied.response,
            replay: applied.replay,
            minutes: DOWNLOAD_TTL.as_secs() / 60,
        },
    )
}

/// The product a license file (armored) is for.
fn product_of(armored: &str) -> Option<String> {
    let (_, bytes) = format::unarmor(armored.as_bytes()).ok()?;
    let license: License = format::payload_unverified(&bytes).ok()?;
    Some(license.product)
}

/// `name` fit for a file name: letters, digits, `-`, `_` and `.` (not leading).
pub(crate) fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() {
        "license".into()
    } else {
        stem.into()
    }
}

/// `path` as the request log shows it: a download link without its token, which
/// would let whoever reads the log fetch the license while the link lasts.
pub(crate) fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/download/") {
        Some(_) => "/download/…".to_string(),
        None => path.to_string(),
    }
}

async fn download(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let Some((filename, body)) = s.web.offered(&token) else {
        return page(
            StatusCode::NOT_FOUND,
            &MessagePage {
                brand: s.web.brand(),
                title: "This download link has expired",
                message: "The link is no longer valid: download links work for a short while \
                          only, and not after the portal restarts.",
                next: "Send the same file again: you get the same license (or receipt), \
                       without taking another seat.",
                link: "/activate",
                link_text: "Activate again",
            },
        );
    };
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn logo(State(s): State<AppState>) -> Response {
    match &s.web.config.brand_logo {
        Some(logo) => (
            [
                (header::CONTENT_TYPE, logo.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            logo.bytes.clone(),
        )
            .into_response(),
        None => page(
            StatusCode::NOT_FOUND,
            &MessagePage {
                brand: s.web.brand(),
                title: "No logo",
                message: "This portal shows no logo.",
                next: "Nothing to do here.",
                link: "/",
                link_text: "Home",
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_tokens_stay_out_of_the_log() {
        assert_eq!(
            loggable_path(&format!("/download/{}", "ab".repeat(32))),
            "/download/…"
        );
        assert_eq!(loggable_path("/activate"), "/activate");
    }

    #[test]
    fn file_names_keep_safe_characters_only() {
        assert_eq!(file_stem("photo-pro"), "photo-pro");
        assert_eq!(file_stem("../a b\"c"), "_a_b_c");
        assert_eq!(file_stem("..."), "license");
    }

    #[test]
    fn the_csrf_cookie_is_found_among_others() {
        let token = "ab".repeat(32);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; lic_csrf={token}; y=2"))
                .unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        assert_eq!(csrf_cookie(&headers, "lic_csrf"), Some(token));
        assert_eq!(csrf_cookie(&headers, "__Host-lic_csrf"), None);
        headers.insert(header::COOKIE, HeaderValue::from_static("lic_csrf=short"));
        assert_eq!(csrf_cookie(&headers, "lic_csrf"), None);
    }
}
