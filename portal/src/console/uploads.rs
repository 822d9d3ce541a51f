//! Uploading device files in the console (support): several deactivation files and
//! usage reports at once, each applied on its own, a result per file.
//!
//! - `GET /console/uploads`: the form (`<input type=file multiple>`).
//! - `POST /console/uploads` (multipart): every file is applied as `POST /api/v1/apply`
//!   applies it ([`crate::ops::Portal::apply`], after the same product-scope check: a
//!   file about another product's activation is "not found"), one after the other; a
//!   refused file changes nothing and does not stop the others. Each file at most
//!   [`MAX_BODY`] (64 KiB), at most [`MAX_FILES`] files and [`MAX_UPLOAD`] bytes in all.
//!   The answer lists each file: its name, kind, what happened (the seat freed on license
//!   X, the usage counted) or the refusal's message, hint and code, and the response (a
//!   receipt, or a license) to download at `/download/{token}` for a short while, as the
//!   self-service pages offer theirs ([`crate::web::DOWNLOAD_TTL`]).
//!
//! Needs [`Action::Apply`], as the API's apply.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest as _, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use lic_core::format::{self, FileKind};

use super::{ConsolePage, Frame, Signed};
use crate::auth::Action;
use crate::http::{ApiError, AppState, MAX_BODY, check_file_scope};
use crate::ops::Applied;
use crate::web::{self, Refusal};

/// This module's pages.
pub(super) const PAGES: &[ConsolePage] = &[
    ConsolePage {
        method: "GET",
        path: "/console/uploads",
        needs: Some(Action::Apply),
    },
    ConsolePage {
        method: "POST",
        path: "/console/uploads",
        needs: Some(Action::Apply),
    },
];

/// The most files one upload applies.
pub const MAX_FILES: usize = 20;

/// The largest upload: [`MAX_FILES`] files of [`MAX_BODY`], and the multipart framing.
pub const MAX_UPLOAD: usize = MAX_FILES * MAX_BODY + 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/console/uploads",
        get(form)
            .post(submit)
            .layer(DefaultBodyLimit::max(MAX_UPLOAD)),
    )
}

/// What became of one file.
struct FileResult {
    name: String,
    kind: String,
    /// What happened, in words (applied files).
    outcome: String,
    /// The license the file was about, when known.
    license: Option<String>,
    /// What the response is and what to do with it.
    note: String,
    /// Integrity flags raised by applying it.
    flags: Vec<String>,
    refusal: Option<Refusal>,
    /// The response to download: (token, file name).
    download: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/uploads.html")]
struct UploadsPage<'a> {
    frame: Frame<'a>,
    max_files: usize,
    max_kib: usize,
    minutes: u64,
    refusal: Option<Refusal>,
    results: Vec<FileResult>,
    applied: usize,
}

fn page(
    signed: &Signed,
    state: &AppState,
    status: StatusCode,
    refusal: Option<&ApiError>,
    results: Vec<FileResult>,
) -> Response {
    web::page(
        status,
        &UploadsPage {
            frame: signed.frame(state),
            max_files: MAX_FILES,
            max_kib: MAX_BODY / 1024,
            minutes: web::DOWNLOAD_TTL.as_secs() / 60,
            refusal: refusal.map(Refusal::from),
            applied: results.iter().filter(|r| r.refusal.is_none()).count(),
            results,
        },
    )
}

async fn form(State(state): State<AppState>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&state, Action::Apply) {
        return r;
    }
    page(&signed, &state, StatusCode::OK, None, Vec::new())
}

/// The form as sent: its CSRF token and its files (name, bytes).
#[derive(Default)]
struct Sent {
    csrf: String,
    files: Vec<(String, Vec<u8>)>,
}

async fn read_form(request: Request) -> Result<Sent, ApiError> {
    let refused = |status: StatusCode, text: String| {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too-large",
                format!(
                    "the upload is larger than {} KiB in all; nothing was applied",
                    MAX_UPLOAD / 1024
                ),
                "send fewer files at a time (each at most 64 KiB)",
            )
        } else {
            ApiError::new(
                status,
                "bad-request",
                text,
                "send the form from the console's upload page",
            )
        }
    };
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| refused(e.status(), e.body_text()))?;
    let mut sent = Sent::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| refused(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let file_name = field.file_name().map(str::to_string);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| refused(e.status(), e.body_text()))?;
        match (name.as_str(), file_name) {
            ("csrf", _) => sent.csrf = String::from_utf8_lossy(&bytes).into_owned(),
            // A file input left empty sends a part without a name and without bytes.
            ("files", Some(f)) if f.is_empty() && bytes.is_empty() => {}
            ("files", f) => sent
                .files
                .push((f.unwrap_or_else(|| "(unnamed)".into()), bytes.to_vec())),
            _ => {}
        }
    }
    Ok(sent)
}

async fn submit(State(state): State<AppState>, signed: Signed, request: Request) -> Response {
    let sent = match read_form(request).await {
        Ok(sent) => sent,
        Err(e) => {
            // Nothing is applied; a form not from the console is refused as such first.
            return page(&signed, &state, e.status(), Some(&e), Vec::new());
        }
    };
    if let Err(r) = signed.check_csrf(&state, &sent.csrf) {
        return r;
    }
    if let Err(r) = signed.require(&state, Action::Apply) {
        return r;
    }
    if sent.files.is_empty() {
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty",
            "no file was chosen; nothing was applied",
            "choose one or more deactivation files or usage reports, then send the form again",
        );
        return page(&signed, &state, e.status(), Some(&e), Vec::new());
    }
    let mut results = Vec::with_capacity(sent.files.len());
    for (i, (name, bytes)) in sent.files.into_iter().enumerate() {
        let result = if i >= MAX_FILES {
            refused(
                name,
                "-".into(),
                &ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-many-files",
                    format!(
                        "not applied: one upload applies at most {MAX_FILES} files, and this \
                         is file {}",
                        i + 1
                    ),
                    "send this file again in another upload",
                ),
            )
        } else {
            apply_one(&state, &signed, name, &bytes).await
        };
        results.push(result);
    }
    page(&signed, &state, StatusCode::OK, None, results)
}

/// The kind a file says it is (by its armor, or its binary header), for the results.
pub(crate) fn kind_of(bytes: &[u8]) -> String {
    match format::unarmor(bytes) {
        Ok((Some(kind), _)) => kind.name().to_string(),
        Ok((None, raw)) => match format::open_any(&raw, &lic_core::keys::Keyring::new()) {
            Ok(any) => any.kind().name().to_string(),
            Err(format::FormatError::UnknownKey { .. }) => "vendor-signed file".into(),
            Err(_) => "unknown".into(),
        },
        Err(_) => "unknown".into(),
    }
}

fn refused(name: String, kind: String, e: &ApiError) -> FileResult {
    FileResult {
        name,
        kind,
        outcome: String::new(),
        license: None,
        note: String::new(),
        flags: Vec::new(),
        refusal: Some(Refusal::from(e)),
        download: None,
    }
}

/// Apply one file, as `POST /api/v1/apply` does: its result, refused or applied.
async fn apply_one(state: &AppState, signed: &Signed, name: String, bytes: &[u8]) -> FileResult {
    if bytes.len() > MAX_BODY {
        let e = ApiError::from(format::FormatError::TooLarge {
            size: bytes.len(),
            limit: MAX_BODY,
        });
        return refused(name, "-".into(), &e);
    }
    let kind = kind_of(bytes);
    let principal = signed.staff.principal();
    if principal.products.is_some()
        && let Err(e) = check_file_scope(&state.portal, &principal, bytes).await
    {
        return refused(name, kind, &e);
    }
    let applied = match state.portal.apply(bytes, &signed.staff.actor()).await {
        Ok(applied) => applied,
        Err(e) => return refused(name, kind, &ApiError::from(e)),
    };
    let license = match &applied.activation {
        Some(id) => state.portal.activation(id).await.ok().map(|a| a.license),
        None => None,
    };
    let outcome = outcome(&applied, license.as_deref());
    let download_name = response_name(&name, &applied);
    let download = state
        .web
        .offer(download_name.clone(), applied.response.clone())
        .map(|token| (token, download_name));
    FileResult {
        name,
        kind: applied.kind.clone(),
        outcome,
        license,
        note: applied.note.clone(),
        flags: applied.flags.clone(),
        refusal: None,
        download,
    }
}

/// What applying a file did, in words.
fn outcome(applied: &Applied, license: Option<&str>) -> String {
    let activation = applied.activation.as_deref().unwrap_or("-");
    let license = license.unwrap_or("-");
    if applied.replay {
        return format!(
            "Applied before (the same file): nothing changed; the same response is offered \
             again (activation {activation}, license {license})."
        );
    }
    let kind = applied.kind.as_str();
    if kind == FileKind::Deactivation.name() {
        format!("Seat freed on license {license}: activation {activation} is deactivated.")
    } else if kind == FileKind::UsageReport.name() {
        format!("Usage counted on license {license} (activation {activation}).")
    } else if kind == FileKind::CheckIn.name() {
        format!("Seat returned on license {license}: activation {activation}'s checkout ended.")
    } else {
        format!("License issued on license {license} for activation {activation}.")
    }
}

/// The name the response downloads as: the uploaded file's stem, `.receipt` or `.lic`.
fn response_name(uploaded: &str, applied: &Applied) -> String {
    let base = uploaded.rsplit(['/', '\\']).next().unwrap_or(uploaded);
    let stem = base.split('.').next().unwrap_or(base);
    let stem = web::file_stem(stem);
    if applied.response_kind == FileKind::Receipt.name() {
        format!("{stem}.receipt")
    } else {
        format!("{stem}.lic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(kind: &str, response_kind: &str) -> Applied {
        Applied {
            kind: kind.into(),
            response: String::new(),
            response_kind: response_kind.into(),
            activation: Some("act_1".into()),
            replay: false,
            file_hash: String::new(),
            flags: Vec::new(),
            note: String::new(),
        }
    }

    #[test]
    fn responses_are_named_after_the_uploaded_file() {
        let receipt = applied(FileKind::Deactivation.name(), FileKind::Receipt.name());
        assert_eq!(response_name("dev-1.deact", &receipt), "dev-1.receipt");
        assert_eq!(response_name("C:\\x\\a b.lic", &receipt), "a_b.receipt");
        assert_eq!(response_name("../..", &receipt), "license.receipt");
        let license = applied(FileKind::ActivationRequest.name(), FileKind::License.name());
        assert_eq!(response_name("req", &license), "req.lic");
    }

    #[test]
    fn outcomes_name_the_license() {
        let receipt = applied(FileKind::Deactivation.name(), FileKind::Receipt.name());
        assert!(outcome(&receipt, Some("lic_9")).contains("Seat freed on license lic_9"));
        let usage = applied(FileKind::UsageReport.name(), FileKind::Receipt.name());
        assert!(outcome(&usage, Some("lic_9")).contains("Usage counted on license lic_9"));
        assert_eq!(kind_of(b"not a file"), "unknown");
    }
}
