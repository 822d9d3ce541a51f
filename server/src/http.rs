//! The server's HTTP routes: the device routes of the vendor's portal (take, renew and
//! release a lease, check out, check in), with the portal's answer and error shapes, and
//! a read-only status for the site's monitoring.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lic_core::format::LeaseAction;
use lic_core::lease::{ROUTE_CHECKIN, ROUTE_CHECKOUT, ROUTE_RELEASE, ROUTE_RENEW, ROUTE_TAKE};
use serde::Deserialize;
use serde_json::json;

use crate::{Server, ServerError};

/// The largest request body: a lease request or a check-in is a few kilobytes.
pub const MAX_BODY: usize = 64 * 1024;

pub const ROUTE_STATUS: &str = "/api/v1/status";

type Shared = Arc<Server>;

impl IntoResponse for ServerError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::info!(code = self.code(), error = %self, "request refused");
        }
        let body = json!({
            "error": {"code": self.code(), "message": self.to_string(), "hint": self.hint()}
        });
        (status, axum::Json(body)).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

/// An error answer in the API's shape, for what is refused before a handler runs.
fn refusal(status: StatusCode, code: &str, message: String, hint: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "hint": hint}});
    (status, axum::Json(body)).into_response()
}

/// The request body, refused in the API's JSON shape (a body over [`MAX_BODY`]:
/// 413 `too-large`) rather than axum's plain text, which a client could not read.
struct Body(Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => refusal(
                    e.status(),
                    "too-large",
                    format!("the request is larger than {MAX_BODY} bytes"),
                    "send the lease request or check-in file lic wrote, unchanged",
                ),
                status => refusal(
                    status,
                    "bad-request",
                    e.body_text(),
                    "the routes are listed in docs/on-premise.md",
                ),
            })
    }
}

/// `?wait=true|false`, refused in the API's JSON shape.
struct Wait(bool);

impl<S: Send + Sync> FromRequestParts<S> for Wait {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<WaitQuery>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Wait(q.wait))
            .map_err(|e| {
                refusal(
                    e.status(),
                    "bad-request",
                    e.body_text(),
                    "the query takes only wait=true or wait=false",
                )
            })
    }
}

/// Run a blocking decision (SQLite, signing) off the async workers.
async fn blocking<T: Send + 'static>(
    server: Shared,
    f: impl FnOnce(&Server) -> Result<T, ServerError> + Send + 'static,
) -> Result<T, ServerError> {
    tokio::task::spawn_blocking(move || f(&server))
        .await
        .map_err(|e| ServerError::Unusable {
            code: "server-internal",
            problem: format!("the request's task failed: {e}"),
        })?
}

fn answer<T: serde::Serialize>(r: Result<T, ServerError>) -> Response {
    match r {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn take(State(s): State<Shared>, Wait(wait): Wait, Body(body): Body) -> Response {
    answer(blocking(s, move |s| s.lease(&body, LeaseAction::Take, wait)).await)
}

async fn renew(State(s): State<Shared>, Body(body): Body) -> Response {
    answer(blocking(s, move |s| s.lease(&body, LeaseAction::Renew, false)).await)
}

async fn release(State(s): State<Shared>, Body(body): Body) -> Response {
    answer(blocking(s, move |s| s.release(&body)).await)
}

async fn checkout(State(s): State<Shared>, Body(body): Body) -> Response {
    answer(blocking(s, move |s| s.checkout(&body)).await)
}

async fn checkin(State(s): State<Shared>, Body(body): Body) -> Response {
    answer(blocking(s, move |s| s.check_in(&body)).await)
}

async fn status(State(s): State<Shared>) -> Response {
    answer(blocking(s, |s| s.status()).await)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {
            "code": "not-found",
            "message": "no such route on this floating server",
            "hint": "the routes are listed in docs/on-premise.md"
        }})),
    )
        .into_response()
}

/// The server's routes.
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route(ROUTE_TAKE, post(take))
        .route(ROUTE_RENEW, post(renew))
        .route(ROUTE_RELEASE, post(release))
        .route(ROUTE_CHECKOUT, post(checkout))
        .route(ROUTE_CHECKIN, post(checkin))
        .route(ROUTE_STATUS, get(status))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(server)
}

/// Bind `addr`; the address actually bound (port 0: the system's choice).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}
