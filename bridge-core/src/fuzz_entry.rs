//! Entry points for the fuzzer (`fuzz/`) into parsers that are private to the crate: the
//! workload API's HTTP response parser and the spool's segment record decoder. Hidden:
//! not an API for modules.

/// Parses a workload API response as the client does; the status on success.
#[doc(hidden)]
pub fn workload_http_response(raw: &[u8]) -> Result<u16, String> {
    let complete = crate::identity::http::is_complete(raw);
    match crate::identity::http::parse_response(raw) {
        Ok((status, body)) => {
            // A complete response's body is never longer than what arrived.
            if body.len() > raw.len() {
                return Err(format!(
                    "body of {} bytes from {} bytes",
                    body.len(),
                    raw.len()
                ));
            }
            let _ = complete;
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Decodes the records of one spool segment as recovery does: (messages kept, corrupt
/// records, next sequence number).
#[doc(hidden)]
pub fn spool_segment(bytes: &[u8], watermark: u64) -> (usize, u64, u64) {
    let mut out = crate::spool::log::Recovered {
        next_seq: watermark,
        ..Default::default()
    };
    crate::spool::log::read_records(bytes, watermark, &mut out);
    (out.messages.len(), out.corrupt, out.next_seq)
}
