//! The end user's other uploads: a deactivation file (`lic offline-deactivate`) or a
//! floating check-in file (`lic checkin --out`) at `/deactivate`, a usage report (`lic
//! usage-report`) at `/usage`. Each is applied exactly as the anonymous API applies it
//! ([`crate::http::upload`] with the file's kind, under the same rate limit), and the
//! answer offers the vendor's receipt for download, says what happened (the seat is
//! free; what was counted) and what to do next. A file of another kind is refused before
//! anything is applied, naming the page that takes it.

use askama::Template;
use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use lic_core::format::{self, FileKind};
use subtle::ConstantTimeEq as _;

use super::{
    Brand, DOWNLOAD_TTL, EndUser, MAX_FORM, Refusal, Web, csrf_cookie, csrf_refused_page,
    file_stem, internal, page, read_fields, signin,
};
use crate::http::{ApiError, AppState, Client, client_ip, upload};

/// One upload page: what it takes and what it says.
pub(super) struct UploadForm {
    /// Its path (the form posts to it).
    path: &'static str,
    /// The page's heading (and title).
    title: &'static str,
    /// What the page is for, above the form.
    intro: &'static str,
    /// The kinds of file it takes.
    kinds: &'static [FileKind],
    /// The file input's label and help.
    file_label: &'static str,
    file_help: &'static str,
    /// The text box's label and help.
    text_label: &'static str,
    text_help: &'static str,
    /// The submit button.
    submit: &'static str,
    /// What happens next, under the form.
    next: &'static str,
    /// The refusal of a form with neither a file nor a text.
    empty: &'static str,
    empty_hint: &'static str,
}

const DEACTIVATE: UploadForm = UploadForm {
    path: "/deactivate",
    title: "Free a seat: deactivation or check-in",
    intro: "Send the file your computer wrote when it gave its license up: a deactivation \
            file (lic offline-deactivate), or, for a floating license's seat checked out for \
            offline use, a check-in file (lic checkin --out FILE). The portal frees the seat \
            and answers with a receipt.",
    kinds: &[FileKind::Deactivation, FileKind::CheckIn],
    file_label: "Deactivation or check-in file",
    file_help: "The file written by lic offline-deactivate --out FILE, or by lic checkin --out \
                FILE (at most 64 KiB).",
    text_label: "Or paste the file's text",
    text_help: "Its whole text, from -----BEGIN to -----END.",
    submit: "Free the seat",
    next: "The portal checks that the file was signed by the computer that held the seat, \
           frees the seat and counts the final usage the file carries. The next page offers \
           the vendor's receipt to download: keep it as proof; nothing needs to be \
           installed. Then you can activate the product on another computer.",
    empty: "no file was sent: no file was chosen and no text was pasted",
    empty_hint: "choose the file that lic offline-deactivate (or lic checkin --out) wrote, or \
                 paste its text, then send the form again",
};

const USAGE: UploadForm = UploadForm {
    path: "/usage",
    title: "Send a usage report",
    intro: "Send the usage report your computer wrote (lic usage-report --out FILE). It holds \
            the totals counted on that computer, signed by it; the vendor counts each unit \
            once however many reports you send, in any order.",
    kinds: &[FileKind::UsageReport],
    file_label: "Usage report file",
    file_help: "The file written by lic usage-report --out FILE (at most 64 KiB).",
    text_label: "Or paste the report's text",
    text_help: "Its whole text, from -----BEGIN to -----END.",
    submit: "Send the report",
    next: "The portal counts what is new since the last report it had from that computer. \
           The next page shows what it counted for that computer in all, and offers the \
           vendor's receipt to download: keep it as proof; nothing needs to be installed.",
    empty: "no usage report was sent: no file was chosen and no text was pasted",
    empty_hint: "choose the file that lic usage-report wrote, or paste its text, then send the \
                 form again",
};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/deactivate",
            get(deactivate_form)
                .post(deactivate_submit)
                .layer(DefaultBodyLimit::max(MAX_FORM)),
        )
        .route(
            "/usage",
            get(usage_form)
                .post(usage_submit)
                .layer(DefaultBodyLimit::max(MAX_FORM)),
        )
}

// ----- files of the wrong kind -----------------------------------------------------------

/// A file of `kind` in words: "an activation request".
fn named(kind: FileKind) -> &'static str {
    match kind {
        FileKind::ActivationRequest => "an activation request",
        FileKind::License => "a license file",
        FileKind::Refresh => "a refresh file",
        FileKind::Deactivation => "a deactivation file",
        FileKind::UsageReport => "a usage report",
        FileKind::Receipt => "a receipt",
        FileKind::KeySet => "a key set",
        FileKind::LeaseRequest => "a lease request",
        FileKind::Lease => "a lease",
        FileKind::CheckIn => "a check-in file",
        _ => "a lic file of another kind",
    }
}

/// The kind of file `input` holds, as far as its armor (or its signed content type)
/// tells without verifying it; `None` if it cannot be told (the upload then says why).
fn kind_of(input: &[u8]) -> Option<FileKind> {
    let (armor, bytes) = format::unarmor(input).ok()?;
    armor.or_else(|| format::kind_of(&bytes).ok())
}

/// The refusal of a file of another kind than `accepted` (which a page takes), naming the
/// page that takes it; `None` if the file is of an accepted kind (or its kind cannot be
/// told: applying it says what is wrong). Decided before anything is applied.
pub(super) fn misplaced(input: &[u8], accepted: &[FileKind]) -> Option<ApiError> {
    let found = kind_of(input)?;
    if accepted.contains(&found) {
        return None;
    }
    let here = accepted
        .iter()
        .map(|k| named(*k))
        .collect::<Vec<_>>()
        .join(" or ");
    let (message, hint) = match found {
        FileKind::ActivationRequest => (
            format!("this is {}, not {here}", named(found)),
            "send an activation request on the page \u{201c}Activate a license\u{201d} \
             (/activate): it gives the license file back",
        ),
        FileKind::Deactivation | FileKind::CheckIn => (
            format!("this is {}, not {here}", named(found)),
            "send a deactivation or check-in file on the page \u{201c}Free a seat\u{201d} \
             (/deactivate): it frees the seat and gives a receipt back",
        ),
        FileKind::UsageReport => (
            format!("this is {}, not {here}", named(found)),
            "send a usage report on the page \u{201c}Send a usage report\u{201d} (/usage)",
        ),
        FileKind::LeaseRequest => (
            format!(
                "this is {}: lic sends it online by itself (lic lease, lic checkout); it is \
                 not uploaded here",
                named(found)
            ),
            "run lic lease or lic checkout with --server; a page here takes activation \
             requests, deactivation and check-in files, and usage reports",
        ),
        _ => (
            format!(
                "this is {}: a file the vendor's portal makes, not one you send to it",
                named(found)
            ),
            "install a license, refresh or key set on the computer with lic install FILE; \
             keep a receipt as it is. Send here the files lic writes: an activation request \
             (/activate), a deactivation or check-in file (/deactivate), a usage report \
             (/usage)",
        ),
    };
    Some(ApiError::new(
        StatusCode::BAD_REQUEST,
        "wrong-kind",
        message,
        hint,
    ))
}

// ----- pages -------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage<'a> {
    brand: Brand<'a>,
    form: &'a UploadForm,
    csrf: &'a str,
    text: &'a str,
    refusal: Option<Refusal>,
}

/// One feature's count, as the receipt page shows it.
struct Counted {
    feature: String,
    total: i64,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage<'a> {
    brand: Brand<'a>,
    title: &'a str,
    /// What happened, in plain words.
    done: &'a str,
    product: &'a str,
    activation: &'a str,
    /// The portal's own words about the receipt (its note).
    note: &'a str,
    replay: bool,
    flags: &'a [String],
    /// What the portal has counted for the device in all (usage reports).
    counted: Vec<Counted>,
    usage: bool,
    filename: &'a str,
    token: &'a str,
    receipt: &'a str,
    minutes: u64,
    /// What to do next, step by step.
    next: Vec<&'a str>,
}

fn form_page(
    web: &Web,
    headers: &HeaderMap,
    user: Option<&EndUser>,
    form: &UploadForm,
    text: &str,
    refusal: Option<&ApiError>,
) -> Response {
    let Some((token, fresh)) = super::csrf_for(web, headers) else {
        return internal(web);
    };
    let status = refusal.map_or(StatusCode::OK, ApiError::status);
    let mut response = page(
        status,
        &UploadPage {
            brand: web.brand_for(user),
            form,
            csrf: &token,
            text,
            refusal: refusal.map(Refusal::from),
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

async fn deactivate_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let user = signin::end_user(&s, &headers).await;
    form_page(&s.web, &headers, user.as_ref(), &DEACTIVATE, "", None)
}

async fn usage_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let user = signin::end_user(&s, &headers).await;
    form_page(&s.web, &headers, user.as_ref(), &USAGE, "", None)
}

async fn deactivate_submit(State(s): State<AppState>, request: Request) -> Response {
    submit(&s, request, &DEACTIVATE).await
}

async fn usage_submit(State(s): State<AppState>, request: Request) -> Response {
    submit(&s, request, &USAGE).await
}

/// A form of `form` sent: CSRF, the upload limit, one file of the right kind, applied as
/// the API applies it; the receipt offered.
async fn submit(s: &AppState, request: Request, form: &'static UploadForm) -> Response {
    let web = &s.web;
    let client = Client(client_ip(&request));
    let headers = request.headers().clone();
    // A post from elsewhere has no cookie (SameSite=Strict): refused before its body is read.
    let Some(cookie) = csrf_cookie(&headers, web.cookie_name()) else {
        return csrf_refused_page(web, form.path);
    };
    let hint = if form.path == DEACTIVATE.path {
        "send the form from the portal's page /deactivate"
    } else {
        "send the form from the portal's page /usage"
    };
    let fields = match read_fields(request, hint).await {
        Ok(fields) => fields,
        Err(e) => return form_page(web, &headers, None, form, "", Some(&e)),
    };
    if !bool::from(cookie.as_bytes().ct_eq(fields.csrf.as_bytes())) {
        return csrf_refused_page(web, form.path);
    }
    let user = signin::end_user(s, &headers).await;
    let user = user.as_ref();
    let refuse = |text: &str, e: &ApiError| form_page(web, &headers, user, form, text, Some(e));
    let text = fields.text.trim();
    // The same limit as the upload API's, on the same client's bucket.
    if let Err(wait) = s.limiter.check(client.0) {
        return refuse(text, &ApiError::rate_limited(wait));
    }
    let input: &[u8] = match (fields.file.is_empty(), text.is_empty()) {
        (false, true) => &fields.file,
        (true, false) => text.as_bytes(),
        (true, true) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "empty",
                form.empty,
                form.empty_hint,
            );
            return refuse(text, &e);
        }
        (false, false) => {
            let e = ApiError::new(
                StatusCode::BAD_REQUEST,
                "two-files",
                "both a file and a pasted text were sent; the portal takes one file at a time",
                "send the file alone (clear the text box), or the text alone (send the form \
                 without choosing a file)",
            );
            return refuse(text, &e);
        }
    };
    if let Some(e) = misplaced(input, form.kinds) {
        return refuse(text, &e);
    }
    // The kind decides the API route it stands for: a check-in file is applied as
    // `POST /api/v1/checkin` applies it, a deactivation as `/deactivate`.
    let kind = kind_of(input)
        .filter(|k| form.kinds.contains(k))
        .unwrap_or(form.kinds[0]);
    let applied = match upload(&s.portal, kind, input, &client.actor()).await {
        Ok(Json(applied)) => applied,
        Err(e) => return refuse(text, &e),
    };
    let activation_id = applied.activation.clone().unwrap_or_default();
    let activation = match s.portal.activation(&activation_id).await {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!("cannot read activation {activation_id} after an upload: {e}");
            None
        }
    };
    let product = activation
        .as_ref()
        .map_or_else(|| "license".to_string(), |a| a.product.clone());
    let (title, done, suffix, next): (&str, &str, &str, Vec<&str>) = match kind {
        FileKind::Deactivation => (
            "The seat is free",
            "The vendor's portal applied the deactivation: the computer that wrote the file \
             no longer holds a seat of this license, and its final usage is counted.",
            "deactivation",
            vec![
                "Download the receipt and keep it: it is the vendor's signed confirmation. \
                 Nothing needs to be installed (lic inspect FILE shows what it says).",
                "To use the product on another computer, activate it there as usual: \
                 lic offline-activate, then the page \u{201c}Activate a license\u{201d}.",
            ],
        ),
        FileKind::CheckIn => (
            "The seat is back in the pool",
            "The vendor's portal applied the check-in: the checked-out seat returned to the \
             floating license's pool before its Offline Expiry Date, free for others.",
            "checkin",
            vec![
                "Download the receipt and keep it: it is the vendor's signed confirmation. \
                 Nothing needs to be installed.",
                "Back on the network, lic lease (or lic checkout) takes a seat again.",
            ],
        ),
        _ => (
            "Usage counted",
            "The vendor's portal counted the usage report: what is new since the last report \
             from that computer is added to the license's totals; nothing is counted twice.",
            "usage",
            vec![
                "Download the receipt and keep it: it is the vendor's signed confirmation. \
                 Nothing needs to be installed.",
                "Send the next report whenever the vendor asks for one: lic usage-report \
                 --out FILE, then this page.",
            ],
        ),
    };
    let filename = format!("{}-{suffix}.receipt", file_stem(&product));
    let Some(token) = web.offer(filename.clone(), applied.response.clone()) else {
        return internal(web);
    };
    let counted = activation
        .as_ref()
        .map(|a| {
            a.usage
                .iter()
                .map(|(feature, total)| Counted {
                    feature: feature.clone(),
                    total: *total,
                })
                .collect()
        })
        .unwrap_or_default();
    page(
        StatusCode::OK,
        &ReceiptPage {
            brand: web.brand_for(user),
            title,
            done,
            product: &product,
            activation: &activation_id,
            note: &applied.note,
            replay: applied.replay,
            flags: &applied.flags,
            counted,
            usage: kind == FileKind::UsageReport,
            filename: &filename,
            token: &token,
            receipt: &applied.response,
            minutes: DOWNLOAD_TTL.as_secs() / 60,
            next,
        },
    )
}
