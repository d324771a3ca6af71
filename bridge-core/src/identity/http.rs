//! Just enough HTTP/1.1 for the IoT Edge workload API: one request per connection
//! (`Connection: close`), response framed by `Content-Length`, chunking, or EOF.

/// An HTTP response could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpParseError {
    /// The status line or headers are not HTTP/1.x.
    #[error("The response is not HTTP/1.x.")]
    NotHttp,
    /// The headers never ended.
    #[error("The response ended inside its headers.")]
    TruncatedHeaders,
    /// The body is shorter than announced or a chunk is malformed.
    #[error("The response body is truncated or badly chunked.")]
    TruncatedBody,
}

/// Builds a request with `Connection: close`.
pub(crate) fn request(method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(body) = body {
        out.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// Parses a complete response (read until EOF) into status and body.
pub(crate) fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), HttpParseError> {
    let head_end = find(raw, b"\r\n\r\n").ok_or(HttpParseError::TruncatedHeaders)?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| HttpParseError::NotHttp)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or(HttpParseError::NotHttp)?;
    let mut parts = status_line.split(' ');
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(HttpParseError::NotHttp);
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpParseError::NotHttp)?;
    let (mut length, mut chunked) = (None, false);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(HttpParseError::NotHttp)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| HttpParseError::NotHttp)?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else if let Some(len) = length {
        body.get(..len)
            .ok_or(HttpParseError::TruncatedBody)?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// True once `raw` holds the headers and the whole `Content-Length` body.
pub(crate) fn is_complete(raw: &[u8]) -> bool {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]);
    head.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| raw.len() >= head_end + 4 + len)
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, HttpParseError> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or(HttpParseError::TruncatedBody)?;
        let size_text =
            std::str::from_utf8(&body[..line_end]).map_err(|_| HttpParseError::TruncatedBody)?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| HttpParseError::TruncatedBody)?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).ok_or(HttpParseError::TruncatedBody)?);
        body = body.get(size + 2..).ok_or(HttpParseError::TruncatedBody)?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_eof_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_response(r).unwrap(), (200, b"hello".to_vec()));
        let r = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (201, b"abcde".to_vec()));
        let r = b"HTTP/1.0 404 Not Found\r\nX: y\r\n\r\n{}";
        assert_eq!(parse_response(r).unwrap(), (404, b"{}".to_vec()));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(
            parse_response(b"SSH-2.0\r\n\r\n"),
            Err(HttpParseError::NotHttp)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9"),
            Err(HttpParseError::TruncatedHeaders)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"),
            Err(HttpParseError::TruncatedBody)
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(HttpParseError::TruncatedBody)
        );
    }
}
