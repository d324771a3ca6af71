//! A minimal HTTP/1.1 server loop (keep-alive, Content-Length bodies) shared by the
//! workload API and the control API. Requests are small JSON; nothing more is needed.

use std::collections::BTreeMap;

use bridge_core::identity::encode::percent_decode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// A parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path segments after the leading `/`, percent-decoded.
    pub segments: Vec<String>,
    /// Query parameters, percent-decoded.
    pub query: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
    /// The client sent `Connection: close`.
    pub close: bool,
}

/// What a handler returns.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A JSON response.
    Json(u16, Value),
    /// Stream recorded messages as JSON lines until the client goes away.
    Follow,
}

const MAX_BODY: usize = 1 << 20;

/// Reads one request; `None` at EOF or on garbage.
async fn read_request<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut length = 0usize;
    let mut close = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            } else if name.eq_ignore_ascii_case("connection")
                && value.trim().eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
    }
    if length > MAX_BODY {
        return None;
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some(Request {
        method,
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query: bridge_core::hub::topics::decode_bag(query),
        body,
        close,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Serves requests on one connection until it closes.
pub(crate) async fn serve<S, H, F>(stream: S, hub: std::sync::Arc<crate::state::Hub>, handler: H)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request) -> F,
    F: Future<Output = Reply>,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::new(reader);
    while let Some(request) = read_request(&mut reader).await {
        let close = request.close;
        match handler(request).await {
            Reply::Json(status, body) => {
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    reason(status),
                    body.len()
                );
                if writer.write_all(head.as_bytes()).await.is_err()
                    || writer.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
                if close {
                    let _ignored = writer.shutdown().await;
                    return;
                }
            }
            Reply::Follow => {
                let mut feed = hub.subscribe();
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
                if writer.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(message) = feed.recv().await {
                    let line = format!("{}\n", serde_json::to_string(&message).unwrap_or_default());
                    if writer.write_all(line.as_bytes()).await.is_err()
                        || writer.flush().await.is_err()
                    {
                        return;
                    }
                }
                return;
            }
        }
    }
}
