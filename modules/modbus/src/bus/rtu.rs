//! Modbus RTU framing (pure) and a transport over any byte stream (a serial port, or TCP
//! for RTU-over-TCP converters).
//!
//! RTU has no transaction id, so a reply that arrives after its request timed out could
//! be taken as the answer to the next request. Three defences: responses must match
//! unit, function and byte count of the request (a stale reply to a different request is
//! skipped as noise); any bytes waiting before a request are discarded; and after a
//! timeout the line is drained until it has been quiet for twice the timeout, before
//! anything new is sent.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::pdu::{self, Answer};
use super::{BusError, Op, OpResult};

/// CRC-16/MODBUS, sent low byte first.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for b in data {
        crc ^= u16::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The request frame (unit + PDU + CRC).
pub fn request(unit: u8, op: &Op) -> Vec<u8> {
    let mut f = vec![unit];
    pdu::encode_request(op, &mut f);
    let crc = crc16(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

/// What the bytes received so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet.
    Incomplete,
    /// A matching response.
    Response(OpResult),
    /// A matching exception response.
    Exception(u8),
}

/// Looks for the response to `(unit, op)` in `buf`, skipping anything that does not
/// match (noise, stale replies, bad CRCs). Consumed bytes are removed from `buf`.
pub fn parse_response(unit: u8, op: &Op, buf: &mut Vec<u8>) -> Parsed {
    let fc = pdu::function_code(op);
    let mut i = 0;
    while i + 2 <= buf.len() {
        if buf[i] != unit || (buf[i + 1] != fc && buf[i + 1] != fc | 0x80) {
            i += 1;
            continue;
        }
        let expected_len = if buf[i + 1] & 0x80 != 0 {
            5
        } else if matches!(op, Op::ReadDeviceId(..)) {
            // Variable length: known once its objects are in.
            match pdu::device_id_len(&buf[i + 1..]) {
                Some(n) => 1 + n + 2,
                None => return Parsed::Incomplete,
            }
        } else {
            if let Op::Read(table, _, count) = op {
                // The byte count field must agree with the request.
                match buf.get(i + 2) {
                    None => return Parsed::Incomplete,
                    Some(b) if usize::from(*b) != pdu::data_len(*table, *count) => {
                        i += 1;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            1 + pdu::response_len(op) + 2
        };
        let Some(frame) = buf.get(i..i + expected_len) else {
            return Parsed::Incomplete;
        };
        let (body, crc) = frame.split_at(expected_len - 2);
        if crc16(body).to_le_bytes() != [crc[0], crc[1]] {
            i += 1;
            continue;
        }
        let answer = pdu::decode_response(op, &body[1..]);
        buf.drain(..i + expected_len);
        match answer {
            Answer::Ok(r) => return Parsed::Response(r),
            Answer::Exception(code) => return Parsed::Exception(code),
            Answer::Mismatch => i = 0,
        }
    }
    Parsed::Incomplete
}

/// An RTU master on a byte stream.
#[derive(Debug)]
pub struct RtuTransport<S> {
    stream: S,
    buf: Vec<u8>,
    /// A request timed out: drain before the next one.
    dirty: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RtuTransport<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            dirty: false,
        }
    }

    /// Discards input until the line has been quiet for `quiet` (at most `limit`).
    async fn drain(&mut self, quiet: Duration, limit: Duration) -> Result<(), BusError> {
        let deadline = Instant::now() + limit;
        let mut scratch = [0u8; 256];
        loop {
            let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, self.stream.read(&mut scratch)).await {
                Err(_) => return Ok(()),
                Ok(Ok(0)) => return Err(BusError::Io("the connection closed".into())),
                Ok(Ok(n)) => {
                    tracing::debug!(bytes = n, "Discarded late or stray bytes on the bus.")
                }
                Ok(Err(e)) => return Err(BusError::Io(e.to_string())),
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    /// One request/response exchange with a timeout.
    pub async fn call(
        &mut self,
        unit: u8,
        op: &Op,
        timeout: Duration,
    ) -> Result<OpResult, BusError> {
        if self.dirty {
            // A late reply to the timed-out request may still be on its way: wait until
            // the line has been quiet for twice the timeout. A device answering later
            // than that cannot be told apart (RTU has no transaction id).
            let quiet = (timeout * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
            self.drain(quiet, quiet * 3).await?;
            self.dirty = false;
        } else {
            self.drain(Duration::from_millis(1), Duration::from_millis(2))
                .await?;
        }
        self.buf.clear();
        let frame = request(unit, op);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| BusError::Io(e.to_string()))?;
        self.stream
            .flush()
            .await
            .map_err(|e| BusError::Io(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut scratch = [0u8; 512];
        loop {
            match parse_response(unit, op, &mut self.buf) {
                Parsed::Response(r) => return Ok(r),
                Parsed::Exception(code) => return Err(BusError::Exception(code)),
                Parsed::Incomplete => {}
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => {
                    self.dirty = true;
                    return Err(BusError::Timeout(timeout));
                }
                Ok(Ok(0)) => return Err(BusError::Io("the connection closed".into())),
                Ok(Ok(n)) => self.buf.extend_from_slice(&scratch[..n]),
                Ok(Err(e)) => return Err(BusError::Io(e.to_string())),
            }
            if self.buf.len() > 4096 {
                // Only garbage accumulates this much.
                self.buf.drain(..2048);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Table;

    fn respond(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    #[test]
    fn crc_and_request_fixtures() {
        // Read holding registers unit 1, address 0, count 2: classic fixture 01 03 00 00 00 02 C4 0B.
        assert_eq!(
            request(1, &Op::Read(Table::Holding, 0, 2)),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B]
        );
        assert_eq!(
            request(1, &Op::WriteCoil(0x00AC, true)),
            [0x01, 0x05, 0x00, 0xAC, 0xFF, 0x00, 0x4C, 0x1B]
        );
    }

    #[test]
    fn parses_responses_fragmented_and_after_noise() {
        let op = Op::Read(Table::Holding, 0, 2);
        let frame = respond(&[1, 3, 4, 0x41, 0xAC, 0, 0]);
        let mut buf = frame[..4].to_vec();
        assert_eq!(parse_response(1, &op, &mut buf), Parsed::Incomplete);
        buf.extend_from_slice(&frame[4..]);
        assert_eq!(
            parse_response(1, &op, &mut buf),
            Parsed::Response(OpResult::Registers(vec![0x41AC, 0]))
        );
        let mut noisy = vec![0x00, 0xFF, 0x01];
        noisy.extend_from_slice(&frame);
        assert_eq!(
            parse_response(1, &op, &mut noisy),
            Parsed::Response(OpResult::Registers(vec![0x41AC, 0]))
        );
    }

    #[test]
    fn skips_stale_replies_bad_crcs_and_other_units() {
        let op = Op::Read(Table::Holding, 10, 1);
        let stale = respond(&[1, 3, 4, 0, 1, 0, 2]); // reply to a 2-register read
        let other_unit = respond(&[2, 3, 2, 0, 9]);
        let mut corrupt = respond(&[1, 3, 2, 0, 8]);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xFF;
        let good = respond(&[1, 3, 2, 0, 7]);
        let mut buf = [stale, other_unit, corrupt, good].concat();
        assert_eq!(
            parse_response(1, &op, &mut buf),
            Parsed::Response(OpResult::Registers(vec![7]))
        );
        let mut exc = respond(&[1, 0x83, 2]);
        assert_eq!(parse_response(1, &op, &mut exc), Parsed::Exception(2));
        let mut bits = respond(&[1, 1, 2, 0b0000_0101, 0b1]);
        assert_eq!(
            parse_response(1, &Op::Read(Table::Coil, 0, 9), &mut bits),
            Parsed::Response(OpResult::Bits(vec![
                true, false, true, false, false, false, false, false, true
            ]))
        );
        let mut garbage: Vec<u8> = (0..=255).collect();
        assert_eq!(parse_response(1, &op, &mut garbage), Parsed::Incomplete);
    }

    #[test]
    fn write_echo_must_match() {
        let op = Op::WriteRegister(5, 42);
        let mut wrong = respond(&[1, 6, 0, 5, 0, 41]);
        assert_eq!(parse_response(1, &op, &mut wrong), Parsed::Incomplete);
        let mut right = respond(&[1, 6, 0, 5, 0, 42]);
        assert_eq!(
            parse_response(1, &op, &mut right),
            Parsed::Response(OpResult::Written)
        );
    }

    #[tokio::test]
    async fn late_reply_after_a_timeout_is_not_taken_for_the_next_answer() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = RtuTransport::new(client);
        let op = Op::Read(Table::Holding, 0, 1);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 8];
            server.read_exact(&mut req).await.unwrap();
            // Answer the first request late (after the client timed out)...
            tokio::time::sleep(Duration::from_millis(120)).await;
            server
                .write_all(&respond(&[1, 3, 2, 0, 111]))
                .await
                .unwrap();
            // ...then the second one promptly.
            server.read_exact(&mut req).await.unwrap();
            server
                .write_all(&respond(&[1, 3, 2, 0, 222]))
                .await
                .unwrap();
            server
        });
        assert!(matches!(
            t.call(1, &op, Duration::from_millis(60)).await,
            Err(BusError::Timeout(_))
        ));
        assert_eq!(
            t.call(1, &op, Duration::from_millis(500)).await.unwrap(),
            OpResult::Registers(vec![222])
        );
        drop(srv.await);
    }
}
