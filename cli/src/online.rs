//! Talking to the vendor's portal, for a machine that has a network: `lic activate
//! --server URL` and `lic deactivate --server URL` upload the file the offline commands
//! would write and take the answer, so no curl and no copying are needed.
//!
//! The portal's refusal is shown as the portal wrote it (message, what to do, code).

use std::time::Duration;

use serde::Deserialize;

use crate::Failure;

/// How long one exchange with the portal may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read: a response file is far smaller.
const MAX_ANSWER: u64 = 1 << 20;

/// The portal's answer to an uploaded file (`Applied` in the portal's API).
#[derive(Debug, Deserialize)]
pub struct Answer {
    /// The response file (a license, or a receipt), armored.
    pub response: String,
    /// The activation the file was for.
    #[serde(default)]
    pub activation: Option<String>,
    /// The file had been applied before: the same answer again, nothing changed.
    #[serde(default)]
    pub replay: bool,
    /// What applying it flagged on the activation at the vendor.
    #[serde(default)]
    pub flags: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    hint: String,
}

/// The portal's refusal, when `input` (a file that should hold a lic file) holds the
/// portal's JSON error instead — as `curl --fail-with-body -o FILE` or a browser's save
/// leaves it: shown with the portal's own words rather than "not a lic file".
pub fn refusal_in(input: &[u8]) -> Option<Failure> {
    let text = std::str::from_utf8(input).ok()?.trim_start();
    if !text.starts_with('{') {
        return None;
    }
    let ApiError { error } = serde_json::from_str::<ApiError>(text).ok()?;
    Some(Failure::new(
        format!(
            "this file holds the portal's refusal, not a lic file: {}",
            error.message
        ),
        if error.hint.is_empty() {
            "contact your vendor with this message".to_string()
        } else {
            error.hint
        },
        error.code,
    ))
}

/// The endpoint `path` of the portal at `server` (`https://portal.example` or with a path
/// prefix; a trailing `/` is fine).
fn endpoint(server: &str, path: &str) -> Result<String, Failure> {
    let base = server.trim().trim_end_matches('/');
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(Failure::new(
            format!("'{server}' is not a portal address"),
            "give the address your vendor told you, starting with https:// (for example \
             --server https://licensing.example.com)",
            "usage",
        ));
    }
    Ok(format!("{base}{path}"))
}

/// Upload an armored device file to `path` of the portal at `server`; the portal's
/// answer, or its refusal as a [`Failure`] that quotes it.
pub fn upload(server: &str, path: &str, armored: &str) -> Result<Answer, Failure> {
    let url = endpoint(server, path)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("lic/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let unreachable = |e: ureq::Error| {
        Failure::new(
            format!("cannot reach the portal at {url}: {e}"),
            "check the address and the network connection; without a network use `lic \
             offline-activate` (or `offline-deactivate`) and send the file to your vendor",
            "portal-unreachable",
        )
    };
    let mut response = agent
        .post(&url)
        .header("Content-Type", "text/plain")
        .header("Accept", "application/json")
        .send(armored)
        .map_err(unreachable)?;
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(unreachable)?;
    if status.is_success() {
        return serde_json::from_str::<Answer>(&body).map_err(|e| {
            Failure::new(
                format!(
                    "the portal at {url} answered with something that is not a lic answer ({e})"
                ),
                "check that --server is your vendor's lic portal (its address, not a web page)",
                "portal-answer",
            )
        });
    }
    Err(match serde_json::from_str::<ApiError>(&body) {
        Ok(ApiError { error }) => Failure::new(
            format!("the portal refused the file: {}", error.message),
            if error.hint.is_empty() {
                "contact your vendor with this message".to_string()
            } else {
                error.hint
            },
            error.code,
        ),
        Err(_) => Failure::new(
            format!(
                "the portal at {url} answered {status} without saying why{}",
                if body.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", body.chars().take(200).collect::<String>())
                }
            ),
            "check that --server is your vendor's lic portal; try again later, or use the \
             offline commands and send the file to your vendor",
            "portal-refused",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_joins_without_double_slash_and_refuses_other_schemes() {
        assert_eq!(
            endpoint("https://p.example/", "/api/v1/activate").ok(),
            Some("https://p.example/api/v1/activate".to_string())
        );
        assert_eq!(
            endpoint(" http://127.0.0.1:8477 ", "/api/v1/activate").ok(),
            Some("http://127.0.0.1:8477/api/v1/activate".to_string())
        );
        let refused = endpoint("p.example", "/x")
            .err()
            .map(|f| f.code.to_string());
        assert_eq!(refused.as_deref(), Some("usage"));
    }

    #[test]
    fn a_portal_error_saved_as_a_file_is_recognised_with_its_words() {
        let body = br#"{"error":{"code":"no-seats","message":"all 3 seats are taken","hint":"deactivate a machine"}}"#;
        let f = refusal_in(body).map(|f| (f.code.to_string(), f.message, f.hint));
        assert_eq!(
            f,
            Some((
                "no-seats".to_string(),
                "this file holds the portal's refusal, not a lic file: all 3 seats are taken"
                    .to_string(),
                "deactivate a machine".to_string()
            ))
        );
        assert!(refusal_in(b"-----BEGIN LIC LICENSE-----").is_none());
        assert!(refusal_in(b"{\"other\": 1}").is_none());
        assert!(refusal_in(&[0xd2, 0x84]).is_none());
    }
}
