//! The anonymous routes: health, the API description, the vendor's public keys and key
//! sets, and the uploads of device files (activation requests, deactivations, usage
//! reports).

use super::*;

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Serialize)]
pub(super) struct Health {
    pub(super) status: &'static str,
}

pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

pub(super) async fn trust_pem(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let pem = s.portal.trusted_keys().await?.to_pem();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], pem))
}

pub(super) fn armored(file: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], file).into_response()
}

/// The newest key set, armored: what a device installs to learn the vendor's keys.
pub(super) async fn latest_key_set(State(s): State<AppState>) -> Result<Response, ApiError> {
    let set = s
        .portal
        .key_sets()
        .await?
        .pop()
        .ok_or(PortalError::NotFound {
            what: "key set",
            id: "latest (none was published yet)".into(),
        })?;
    Ok(armored(set.file))
}

/// One key set by version: a device that missed some installs them in order.
pub(super) async fn key_set(
    State(s): State<AppState>,
    Path(version): Path<i64>,
) -> Result<Response, ApiError> {
    let set = s
        .portal
        .key_sets()
        .await?
        .into_iter()
        .find(|k| k.version == version)
        .ok_or_else(|| PortalError::NotFound {
            what: "key set",
            id: version.to_string(),
        })?;
    Ok(armored(set.file))
}

/// Apply an anonymous upload, which must be a file of `expected` kind.
pub(crate) async fn upload(
    portal: &Portal,
    expected: FileKind,
    input: &[u8],
    actor: &Actor,
) -> ApiResult<Applied> {
    let (armor_kind, bytes) = format::unarmor(input)?;
    if let Some(found) = armor_kind
        && found != expected
    {
        return Err(FormatError::WrongKind { expected, found }.into());
    }
    let applied = match expected {
        FileKind::ActivationRequest => portal.apply_activation(&bytes, actor).await,
        FileKind::Deactivation => portal.apply_deactivation(&bytes, actor).await,
        FileKind::UsageReport => portal.apply_usage_report(&bytes, actor).await,
        FileKind::CheckIn => portal.apply_check_in(&bytes, actor).await,
        other => Err(FormatError::WrongKind {
            expected: other,
            found: armor_kind.unwrap_or(other),
        }
        .into()),
    };
    applied.map(Json).map_err(|e| match e {
        // A binary file (no armor to name its kind) of another kind: say so in the same
        // words as for an armored one.
        PortalError::File(FormatError::WrongContentType {
            expected: want,
            found,
        }) if armor_kind.is_none() => match FileKind::from_content_type(&found) {
            Some(found) => FormatError::WrongKind { expected, found }.into(),
            None => FormatError::WrongContentType {
                expected: want,
                found,
            }
            .into(),
        },
        e => e.into(),
    })
}

/// The response of an upload: JSON by default; the response file itself (armored text)
/// when the client asks for `text/plain` (e.g. `curl -H 'Accept: text/plain'`).
pub(super) fn upload_response(
    headers: &HeaderMap,
    applied: ApiResult<Applied>,
) -> Result<Response, ApiError> {
    let Json(applied) = applied?;
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/plain") && !a.contains("application/json"));
    if wants_text {
        // A receipt is kept, not installed: say so above it (lic reads the block and
        // ignores text around it). A license goes as it is, to be saved and installed.
        let body = if applied.response_kind == FileKind::Receipt.name() {
            format!("{}\n\n{}", wrap(&applied.note, 78), applied.response)
        } else {
            applied.response
        };
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
    } else {
        Ok(Json(applied).into_response())
    }
}

/// `text` in lines of at most `width` characters (a longer word on a line of its own).
pub(super) fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

pub(super) async fn activate(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Upload(body): Upload,
) -> Result<Response, ApiError> {
    let applied = upload(
        &s.portal,
        FileKind::ActivationRequest,
        &body,
        &client.actor(),
    )
    .await;
    upload_response(&headers, applied)
}

pub(super) async fn deactivate(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Upload(body): Upload,
) -> Result<Response, ApiError> {
    let applied = upload(&s.portal, FileKind::Deactivation, &body, &client.actor()).await;
    upload_response(&headers, applied)
}

pub(super) async fn usage(
    State(s): State<AppState>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Upload(body): Upload,
) -> Result<Response, ApiError> {
    let applied = upload(&s.portal, FileKind::UsageReport, &body, &client.actor()).await;
    upload_response(&headers, applied)
}
