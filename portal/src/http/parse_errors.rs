//! JSON for the answers hyper gives by itself.
//!
//! A request hyper cannot parse never reaches the router: hyper answers it at once —
//! `400 Bad Request` (a malformed request line, header or framing, or bytes that are not
//! HTTP at all), `414 URI Too Long` (a URI over 65,534 bytes), `431 Request Header
//! Fields Too Large` (more than 100 header fields, or a header section over hyper's
//! buffer of 408 KiB) — with an empty body, and closes the connection. hyper offers no
//! hook for these answers, so [`JsonParseErrors`] wraps each connection and recognises
//! them on their way out: a 400, 414 or 431 head with `content-length: 0` and no content
//! type, ending what hyper writes (the router never answers so: every error of it is
//! JSON). It sends the same status, with the API's JSON error body instead.
//!
//! What is left without JSON: a connection that ends, or stops sending, before its
//! request head is complete gets no answer at all, and an HTTP/2 connection preface (the
//! portal speaks HTTP/1.1 only) is closed without one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{DOCS_HINT, ErrorBody, ErrorDetail};

/// A TCP listener whose connections answer hyper's own parse errors in JSON.
#[derive(Debug)]
pub(super) struct JsonErrorsListener(pub(super) TcpListener);

impl axum::serve::Listener for JsonErrorsListener {
    type Io = JsonParseErrors<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // TcpListener's own accept retries (and logs) failed accepts.
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonParseErrors::new(io, Some(addr)), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection that rewrites hyper's own parse-error answers into JSON errors (see the
/// module documentation). Everything else passes through unchanged.
#[derive(Debug)]
pub(super) struct JsonParseErrors<T> {
    io: T,
    /// The client, for the log.
    peer: Option<SocketAddr>,
    /// Bytes taken from hyper and not yet sent (a rewritten answer), from `sent` on.
    pending: Vec<u8>,
    sent: usize,
}

impl<T> JsonParseErrors<T> {
    pub(super) fn new(io: T, peer: Option<SocketAddr>) -> Self {
        JsonParseErrors {
            io,
            peer,
            pending: Vec::new(),
            sent: 0,
        }
    }

    /// The connection itself.
    pub(super) fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Send what is pending.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some((start, status)) = hyper_answer(buf) {
            // The request log's line for a request the router never saw.
            tracing::info!(
                status,
                client = %this.peer.map_or_else(|| "-".to_string(), |a| a.ip().to_string()),
                "request not parsed: {}",
                parse_error(status).0
            );
            let mut pending = buf[..start].to_vec();
            pending.extend_from_slice(&json_answer(&buf[start..], status));
            this.pending = pending;
            // All of `buf` is taken; what the socket does not take now goes with the next
            // write, flush or shutdown.
            if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }

    // Not vectored (the default): hyper then writes each batch of response bytes as one
    // buffer, so an answer of its own is whole at the end of one `poll_write`.
}

/// The largest answer head hyper writes by itself (status line, `connection`,
/// `content-length` and `date`: about 120 bytes).
const MAX_HYPER_HEAD: usize = 512;

/// If `buf` ends with an answer hyper made by itself for a request it could not parse,
/// where that answer starts and its status.
fn hyper_answer(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let from = buf.len().saturating_sub(MAX_HYPER_HEAD);
    let start = from + rfind(&buf[from..], b"HTTP/1.1 ")?;
    let head = &buf[start..];
    let status = match head.get(9..13)? {
        b"400 " => 400,
        b"414 " => 414,
        b"431 " => 431,
        _ => return None,
    };
    // One head, no body; a length of 0 and no content type.
    if find(head, b"\r\n\r\n") != Some(head.len() - 4) {
        return None;
    }
    let lower = head.to_ascii_lowercase();
    let bare = find(&lower, b"\r\ncontent-length: 0\r\n").is_some()
        && find(&lower, b"\r\ncontent-type:").is_none()
        && find(&lower, b"\r\ntransfer-encoding:").is_none();
    bare.then_some((start, status))
}

/// The answer `head` (hyper's, with `status`) with the API's JSON error as its body.
fn json_answer(head: &[u8], status: u16) -> Vec<u8> {
    let (code, message, hint) = parse_error(status);
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
            hint: hint.into(),
        },
    })
    .unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + body.len() + 64);
    let text = &head[..head.len() - 4];
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if i > 0 && line.to_ascii_lowercase().starts_with(b"content-length:") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        if i == 0 {
            out.extend_from_slice(b"content-type: application/json\r\n");
            out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

/// The code, message and hint of a request hyper could not parse.
pub(super) fn parse_error(status: u16) -> (&'static str, &'static str, &'static str) {
    match status {
        414 => (
            "uri-too-long",
            "the request's URI is longer than the portal accepts (65,534 bytes)",
            "shorten the URI; the API is described at /openapi.json",
        ),
        431 => (
            "headers-too-large",
            "the request's header section is larger than the portal accepts (100 header \
             fields, 408 KiB in all)",
            "send fewer or smaller headers",
        ),
        _ => (
            "bad-request",
            "the request is not valid HTTP/1.1: its request line, a header or its framing \
             (Content-Length, Transfer-Encoding) is malformed",
            DOCS_HINT,
        ),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
                               date: Wed, 02 Dec 2026 05:22:20 GMT\r\n\r\n";

    fn parts(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hyper_answers_are_recognised_alone_and_after_a_response() {
        assert_eq!(hyper_answer(HYPER_400), Some((0, 400)));
        let earlier =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let both = [&earlier[..], HYPER_400].concat();
        assert_eq!(hyper_answer(&both), Some((earlier.len(), 400)));
        for (status, line) in [
            (414, "414 URI Too Long"),
            (431, "431 Request Header Fields Too Large"),
        ] {
            let head = format!("HTTP/1.1 {line}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n");
            assert_eq!(hyper_answer(head.as_bytes()), Some((0, status)));
        }
    }

    #[test]
    fn other_answers_pass_unchanged() {
        for other in [
            // The router's errors have a JSON body and type.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"[..],
            // A body-less JSON answer (HEAD).
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 90\r\n\r\n",
            // Other statuses.
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            // A body that merely ends like a head.
            b"\"HTTP/1.1 400 x\r\ncontent-length: 0\r\n\r\n\"}\r\n\r\n",
            b"",
        ] {
            assert_eq!(hyper_answer(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn the_rewritten_answer_keeps_the_status_and_headers_and_carries_json() {
        let (head, body) = parts(&json_answer(HYPER_400, 400));
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\ndate: Wed, 02 Dec 2026 05:22:20 GMT",
                body.to_string().len()
            )
        );
        assert_eq!(body["error"]["code"], "bad-request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        assert!(
            body["error"]["hint"]
                .as_str()
                .is_some_and(|h| !h.is_empty())
        );
    }

    #[tokio::test]
    async fn a_connection_sends_the_rewritten_answer_whole() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        // A pipe that takes a few bytes at a time.
        let (client, server) = tokio::io::duplex(7);
        let mut conn = JsonParseErrors::new(server, None);
        let earlier = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let writer = tokio::spawn(async move {
            conn.write_all(&earlier).await.unwrap();
            conn.write_all(HYPER_400).await.unwrap();
            conn.shutdown().await.unwrap();
        });
        let mut client = client;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        let text = String::from_utf8(got).unwrap();
        let (first, rest) = text.split_at(text.find("{}").unwrap() + 2);
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
        let (head, body) = parts(rest.as_bytes());
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert_eq!(body["error"]["code"], "bad-request");
    }
}
