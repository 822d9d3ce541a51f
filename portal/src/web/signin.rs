//! End users' sign-in on the self-service pages, for user-based licenses: a user id is
//! no secret, so a request naming one takes a seat only for that user signed in (see
//! `request_fits` in the ops layer).
//!
//! - `GET /signin`: the form (user id and password), with the double-submit CSRF token;
//! - `POST /signin`: CSRF first, then the per-address sign-in limit
//!   ([`AppState::sign_in`]), then [`accounts::user_sign_in`] (a wrong password and an
//!   unknown user get the same answer); on success a session cookie (`lic_user`, or
//!   `__Host-lic_user` with `--secure-cookies`; `HttpOnly; SameSite=Strict`, `Max-Age`
//!   [`accounts::USER_SESSION_SECS`]) and a redirect to `/activate`;
//! - `POST /signout`: with the session's CSRF token; ends the session.

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest as _, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::{Brand, Refusal, Web, csrf_for, csrf_matches, csrf_refused_page, internal, page};
use crate::accounts::{self, SessionKind};
use crate::http::{ApiError, AppState, client_ip};

/// The end user signed in on the self-service pages: their user id and the session's
/// CSRF token (for the sign-out form in every page's header).
#[derive(Debug, Clone)]
pub(crate) struct EndUser {
    /// The user id their licenses carry.
    pub(crate) id: String,
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/signin", get(signin_form).post(signin_submit))
        .route("/signout", post(signout))
}

fn cookie_name(web: &Web) -> &'static str {
    if web.secure_cookies() {
        "__Host-lic_user"
    } else {
        "lic_user"
    }
}

fn session_cookie(state: &AppState, headers: &HeaderMap) -> Option<String> {
    super::cookie(headers, cookie_name(&state.web))
}

/// The end user whose live session the request's cookie is, if any. A database failure
/// counts as not signed in (and is logged): the pages then ask to sign in again.
pub(crate) async fn end_user(state: &AppState, headers: &HeaderMap) -> Option<EndUser> {
    let secret = session_cookie(state, headers)?;
    let now = chrono::Utc::now().timestamp();
    match accounts::session(state.portal.db(), SessionKind::User, &secret, now).await {
        Ok(Some(session)) => Some(EndUser {
            id: session.subject,
            csrf: session.csrf,
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("cannot read an end user's session: {e}");
            None
        }
    }
}

fn set_cookie(state: &AppState, response: &mut Response, value: &str, max_age: i64) {
    super::set_cookie(
        &state.web,
        response,
        cookie_name(&state.web),
        value,
        Some(max_age),
    );
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage<'a> {
    brand: Brand<'a>,
    csrf: &'a str,
    name: &'a str,
    refusal: Option<Refusal>,
    minutes: i64,
}

fn signin_page(
    state: &AppState,
    headers: &HeaderMap,
    user: Option<&EndUser>,
    status: StatusCode,
    name: &str,
    refusal: Option<&ApiError>,
) -> Response {
    let web = &state.web;
    let Some((token, fresh)) = csrf_for(web, headers) else {
        return internal(web);
    };
    let mut response = page(
        status,
        &SigninPage {
            brand: web.brand_for(user),
            csrf: &token,
            name,
            refusal: refusal.map(Refusal::from),
            minutes: accounts::USER_SESSION_SECS / 60,
        },
    );
    if fresh {
        super::set_csrf_cookie(web, &mut response, &token);
    }
    if let Some(wait) = refusal.and_then(ApiError::retry_after) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    }
    response
}

async fn signin_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let user = end_user(&state, &headers).await;
    signin_page(&state, &headers, user.as_ref(), StatusCode::OK, "", None)
}

#[derive(Debug, Default, Deserialize)]
struct SigninFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

async fn signin_submit(State(state): State<AppState>, request: Request) -> Response {
    let client = client_ip(&request);
    let headers = request.headers().clone();
    // A post from elsewhere has no cookie (SameSite=Strict): refused before its body is read.
    if super::csrf_cookie(&headers, state.web.cookie_name()).is_none() {
        return csrf_refused_page(&state.web, "/signin");
    }
    let fields = match axum::Form::<SigninFields>::from_request(request, &()).await {
        Ok(axum::Form(fields)) => fields,
        Err(e) => {
            let e = ApiError::new(
                e.status(),
                "bad-request",
                e.body_text(),
                "send the form from the portal's sign-in page",
            );
            return signin_page(&state, &headers, None, e.status(), "", Some(&e));
        }
    };
    if !csrf_matches(&state.web, &headers, &fields.csrf) {
        return csrf_refused_page(&state.web, "/signin");
    }
    let password = zeroize::Zeroizing::new(fields.password);
    let name = fields.name.trim();
    if let Err(wait) = state.sign_in.check(client) {
        let e = ApiError::rate_limited(wait);
        return signin_page(&state, &headers, None, e.status(), name, Some(&e));
    }
    let db = state.portal.db();
    if let Err(e) = accounts::user_sign_in(db, name, &password).await {
        let e = ApiError::from(e);
        return signin_page(&state, &headers, None, e.status(), name, Some(&e));
    }
    let now = chrono::Utc::now().timestamp();
    let session = match accounts::start_session(db, SessionKind::User, name, now).await {
        Ok(s) => s,
        Err(e) => {
            let e = ApiError::from(e);
            return signin_page(&state, &headers, None, e.status(), name, Some(&e));
        }
    };
    tracing::info!(user = %name, "end user sign-in");
    let mut response = Redirect::to("/activate").into_response();
    set_cookie(
        &state,
        &mut response,
        session.secret.as_str(),
        accounts::USER_SESSION_SECS,
    );
    response
}

#[derive(Debug, Default, Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn signout(State(state): State<AppState>, request: Request) -> Response {
    let headers = request.headers().clone();
    let Some(secret) = session_cookie(&state, &headers) else {
        // No session: nothing to end.
        return Redirect::to("/signin").into_response();
    };
    let user = end_user(&state, &headers).await;
    let fields = match axum::Form::<CsrfOnly>::from_request(request, &()).await {
        Ok(axum::Form(fields)) => fields,
        Err(_) => CsrfOnly::default(),
    };
    if let Some(user) = &user
        && !bool::from(user.csrf.as_bytes().ct_eq(fields.csrf.as_bytes()))
    {
        return csrf_refused_page(&state.web, "/activate");
    }
    if user.is_some()
        && let Err(e) = accounts::end_session(state.portal.db(), &secret).await
    {
        let e = ApiError::from(e);
        return signin_page(&state, &headers, None, e.status(), "", Some(&e));
    }
    let mut response = Redirect::to("/signin").into_response();
    set_cookie(&state, &mut response, "", 0);
    response
}
