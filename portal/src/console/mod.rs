//! The vendor and support console: server-rendered pages under `/console` for staff who
//! sign in with a name and a password ([`crate::accounts`]). A staff account has a role
//! and product scope exactly as an API token, and every page checks them as the API
//! route it mirrors does: a page needs its [`Action`], and an object of a product outside
//! the account's scope is "not found".
//!
//! - `GET /console/signin`, `POST /console/signin`: the sign-in form (CSRF: the
//!   self-service pages' double-submit cookie, as there is no session yet), rate-limited
//!   per client address;
//! - `POST /console/signout`: ends the session;
//! - every other page needs a live session: without one a `GET` is sent to the sign-in
//!   form (and back after it), anything else is refused (401). Without the role or the
//!   scope: 403 (404 for an object of another product).
//!
//! Sessions: a random secret in an `HttpOnly; SameSite=Strict` cookie (`Secure` and named
//! `__Host-lic_staff` with `--secure-cookies`), stored hashed, ending after
//! [`accounts::STAFF_SESSION_SECS`] or at sign-out. Every form of a session carries the
//! session's CSRF token, and a `POST` without it is refused before anything is done.
//!
//! [`pages`] lists every page with what it needs, for the test that walks them all.

// A handler's refusal is the page that says so: a `Response` as the error is the point.
#![allow(clippy::result_large_err)]

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest as _, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::accounts::{self, Session, Staff};
use crate::auth::{Action, Role};
use crate::error::PortalError;
use crate::http::{ApiError, AppState};
use crate::web::{self, Brand};

mod audit;
mod charts;
mod devices;
mod edit;
mod licenses;
mod uploads;

/// A console page: its method, its path (`{license}`, `{activation}` stand for an id),
/// and the action it needs (`None`: any signed-in account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsolePage {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The path, with `{license}` or `{activation}` for an object's id.
    pub path: &'static str,
    /// What the account must be allowed to do; `None`: any signed-in account.
    pub needs: Option<Action>,
}

/// Every console page that needs a session, with what it needs.
pub fn pages() -> Vec<ConsolePage> {
    let mut pages = vec![ConsolePage {
        method: "GET",
        path: "/console",
        needs: None,
    }];
    pages.extend_from_slice(licenses::PAGES);
    pages.extend_from_slice(devices::PAGES);
    pages.extend_from_slice(edit::PAGES);
    pages.extend_from_slice(uploads::PAGES);
    pages.extend_from_slice(charts::PAGES);
    pages.extend_from_slice(audit::PAGES);
    pages
}

/// The console's routes, merged into [`crate::http::router`].
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/signin", get(signin_form).post(signin_submit))
        .route("/console/signout", post(signout))
        .route("/console", get(home))
        .merge(licenses::routes())
        .merge(devices::routes())
        .merge(edit::routes())
        .merge(uploads::routes())
        .merge(charts::routes())
        .merge(audit::routes())
        .layer(axum::middleware::map_response(web::security_headers))
}

// ----- the signed-in account ---------------------------------------------------------------------

/// The staff account behind the request's session cookie. As an extractor it refuses a
/// request without a live session: a `GET` is redirected to the sign-in form.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) staff: Staff,
    pub(crate) session: Session,
}

impl Signed {
    /// `Ok` if the account may do `action`, else the 403 page.
    pub(crate) fn require(&self, state: &AppState, action: Action) -> Result<(), Response> {
        match self.staff.principal().require(action) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.refusal(state, &ApiError::from(e))),
        }
    }

    /// `Ok` if the account sees `product`, else the same 404 page as for an object that
    /// does not exist (`what`, `id`).
    pub(crate) fn sees(
        &self,
        state: &AppState,
        product: &str,
        what: &'static str,
        id: &str,
    ) -> Result<(), Response> {
        if self.staff.principal().sees(product) {
            Ok(())
        } else {
            Err(self.refusal(
                state,
                &ApiError::from(PortalError::NotFound {
                    what,
                    id: id.into(),
                }),
            ))
        }
    }

    /// `Ok` if `token` is this session's CSRF token, else the 403 page.
    pub(crate) fn check_csrf(&self, state: &AppState, token: &str) -> Result<(), Response> {
        if bool::from(self.session.csrf.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(csrf_refused(state))
        }
    }

    /// The console's frame for a page: brand, who is signed in, the session's CSRF token.
    pub(crate) fn frame<'a>(&'a self, state: &'a AppState) -> Frame<'a> {
        Frame {
            brand: state.web.brand(),
            staff: &self.staff.name,
            role: self.staff.role.name(),
            scope: self
                .staff
                .products
                .as_ref()
                .map(|p| p.join(", "))
                .unwrap_or_else(|| "all products".into()),
            csrf: &self.session.csrf,
            admin: self.staff.role == Role::Admin,
            support: self.staff.principal().can(Action::ReadAudit),
        }
    }

    /// An error as a console page, with its status.
    pub(crate) fn refusal(&self, state: &AppState, e: &ApiError) -> Response {
        refusal_page(Some(self.frame(state)), state, e)
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Signed, Response> {
        let now = chrono::Utc::now().timestamp();
        let found = match session_cookie(&parts.headers, state) {
            Some(secret) => accounts::staff_session(state.portal.db(), &secret, now).await,
            None => Ok(None),
        };
        match found {
            Ok(Some((staff, session))) => Ok(Signed { staff, session }),
            Ok(None) if parts.method == axum::http::Method::GET => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/console");
                Err(
                    Redirect::to(&format!("/console/signin?next={}", encode_query(next)))
                        .into_response(),
                )
            }
            Ok(None) => Err(refusal_page(
                None,
                state,
                &ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "you are not signed in, or your session has ended",
                    "sign in to the console again, then repeat what you were doing",
                ),
            )),
            Err(e) => Err(refusal_page(None, state, &ApiError::from(e))),
        }
    }
}

/// The frame every console page is drawn in.
pub(crate) struct Frame<'a> {
    pub(crate) brand: Brand<'a>,
    pub(crate) staff: &'a str,
    pub(crate) role: &'static str,
    pub(crate) scope: String,
    pub(crate) csrf: &'a str,
    /// Admin pages and links are shown.
    pub(crate) admin: bool,
    /// Support pages and links (audit log, uploads, refresh files) are shown.
    pub(crate) support: bool,
}

fn session_cookie_name(state: &AppState) -> &'static str {
    if state.web.secure_cookies() {
        "__Host-lic_staff"
    } else {
        "lic_staff"
    }
}

fn session_cookie(headers: &HeaderMap, state: &AppState) -> Option<String> {
    web::cookie(headers, session_cookie_name(state))
}

/// `value` percent-encoded for a query string.
pub(crate) fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ----- pages -----------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SigninPage<'a> {
    brand: Brand<'a>,
    csrf: &'a str,
    next: &'a str,
    name: &'a str,
    refusal: Option<web::Refusal>,
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct HomePage<'a> {
    frame: Frame<'a>,
}

#[derive(Template)]
#[template(path = "console/refusal.html")]
struct RefusalPage<'a> {
    frame: Frame<'a>,
    refusal: web::Refusal,
}

#[derive(Template)]
#[template(path = "console/refusal_anon.html")]
struct AnonRefusalPage<'a> {
    brand: Brand<'a>,
    refusal: web::Refusal,
}

/// An error as a page: in the console's frame for a signed-in account, else plain.
fn refusal_page(frame: Option<Frame<'_>>, state: &AppState, e: &ApiError) -> Response {
    let refusal = web::Refusal::from(e);
    match frame {
        Some(frame) => web::page(e.status(), &RefusalPage { frame, refusal }),
        None => web::page(
            e.status(),
            &AnonRefusalPage {
                brand: state.web.brand(),
                refusal,
            },
        ),
    }
}

fn csrf_refused(state: &AppState) -> Response {
    refusal_page(
        None,
        state,
        &ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "this form was not sent from the console's own page, or the page is older than \
             your session; nothing was done",
            "open the page again from the console and send the form from there",
        ),
    )
}

/// Only a path inside the console is a place to go back to after signing in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/console") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/console",
    }
}

#[derive(Debug, Default, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn signin_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    signin_page(
        &state,
        &headers,
        StatusCode::OK,
        safe_next(q.next.as_deref()),
        "",
        None,
    )
}

fn signin_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    next: &str,
    name: &str,
    refusal: Option<&ApiError>,
) -> Response {
    let Some((token, fresh)) = web::csrf_for(&state.web, headers) else {
        return refusal_page(
            None,
            state,
            &ApiError::from(PortalError::Storage("no randomness".into())),
        );
    };
    let mut response = web::page(
        status,
        &SigninPage {
            brand: state.web.brand(),
            csrf: &token,
            next,
            name,
            refusal: refusal.map(web::Refusal::from),
        },
    );
    if fresh {
        web::set_csrf_cookie(&state.web, &mut response, &token);
    }
    if let Some(wait) = refusal.and_then(ApiError::retry_after) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    }
    response
}

#[derive(Debug, Default, Deserialize)]
struct SigninFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn signin_submit(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let client = crate::http::client_ip(&request);
    let headers = request.headers().clone();
    let fields = match axum::Form::<SigninFields>::from_request(request, &()).await {
        Ok(axum::Form(fields)) => fields,
        Err(e) => {
            let e = ApiError::new(
                e.status(),
                "bad-request",
                e.body_text(),
                "send the form from the console's sign-in page",
            );
            return signin_page(&state, &headers, e.status(), "/console", "", Some(&e));
        }
    };
    if !web::csrf_matches(&state.web, &headers, &fields.csrf) {
        return web::csrf_refused_page(&state.web, "/console/signin");
    }
    let next = safe_next(Some(&fields.next)).to_string();
    if let Err(wait) = state.sign_in.check(client) {
        let e = ApiError::rate_limited(wait);
        return signin_page(&state, &headers, e.status(), &next, &fields.name, Some(&e));
    }
    let db = state.portal.db();
    let password = zeroize::Zeroizing::new(fields.password);
    let staff = match accounts::staff_sign_in(db, &fields.name, &password).await {
        Ok(staff) => staff,
        Err(e) => {
            let e = ApiError::from(e);
            return signin_page(&state, &headers, e.status(), &next, &fields.name, Some(&e));
        }
    };
    let now = chrono::Utc::now().timestamp();
    let session =
        match accounts::start_session(db, accounts::SessionKind::Staff, &staff.id, now).await {
            Ok(s) => s,
            Err(e) => return refusal_page(None, &state, &ApiError::from(e)),
        };
    tracing::info!(staff = %staff.name, "console sign-in");
    let mut response = Redirect::to(&next).into_response();
    web::set_cookie(
        &state.web,
        &mut response,
        session_cookie_name(&state),
        session.secret.as_str(),
        Some(accounts::STAFF_SESSION_SECS),
    );
    response
}

#[derive(Debug, Default, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn signout(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    axum::Form(fields): axum::Form<CsrfOnly>,
) -> Response {
    if let Err(r) = signed.check_csrf(&state, &fields.csrf) {
        return r;
    }
    if let Some(secret) = session_cookie(&headers, &state)
        && let Err(e) = accounts::end_session(state.portal.db(), &secret).await
    {
        return signed.refusal(&state, &ApiError::from(e));
    }
    let mut response = Redirect::to("/console/signin").into_response();
    web::set_cookie(
        &state.web,
        &mut response,
        session_cookie_name(&state),
        "",
        Some(0),
    );
    response
}

async fn home(State(state): State<AppState>, signed: Signed) -> Response {
    web::page(
        StatusCode::OK,
        &HomePage {
            frame: signed.frame(&state),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/console/licenses?q=a")),
            "/console/licenses?q=a"
        );
        assert_eq!(safe_next(Some("https://evil.example/")), "/console");
        assert_eq!(safe_next(Some("//evil.example/console")), "/console");
        assert_eq!(safe_next(None), "/console");
    }

    #[test]
    fn every_page_is_listed_once() {
        let pages = pages();
        for (i, p) in pages.iter().enumerate() {
            assert!(p.path.starts_with("/console"), "{p:?}");
            assert!(
                !pages[..i]
                    .iter()
                    .any(|q| q.method == p.method && q.path == p.path),
                "{p:?} listed twice"
            );
        }
    }
}
