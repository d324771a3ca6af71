//! Modbus ASCII framing (pure) and a transport over a serial port ("MODBUS over Serial
//! Line Specification and Implementation Guide V1.02", section 2.5.2): `:`, then unit id,
//! PDU and LRC as two upper-case hex digits per byte, then CR LF. The LRC is the two's
//! complement of the 8-bit sum of unit id and PDU bytes.
//!
//! Like RTU, ASCII has no transaction id; the same defences apply: a reply must match
//! the unit and function of the request (and the byte count or write echo), anything
//! waiting before a request is discarded, and after a timeout the line is drained until
//! quiet for twice the timeout. Frames with bad hex or a wrong LRC are dropped.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::pdu::{self, Answer};
use super::rtu::Parsed;
use super::{BusError, Op, OpResult};

/// Longest ASCII frame: ':' + 2 × 256 hex digits + CR LF, with some slack.
const MAX_FRAME: usize = 520;

/// The LRC of `data`: two's complement of the byte sum.
pub fn lrc(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

fn hex_digit(n: u8) -> u8 {
    b"0123456789ABCDEF"[usize::from(n & 0x0F)]
}

/// The request frame for `op` to `unit`.
pub fn request(unit: u8, op: &Op) -> Vec<u8> {
    let mut bin = vec![unit];
    pdu::encode_request(op, &mut bin);
    bin.push(lrc(&bin));
    let mut f = Vec::with_capacity(bin.len() * 2 + 3);
    f.push(b':');
    for b in bin {
        f.push(hex_digit(b >> 4));
        f.push(hex_digit(b));
    }
    f.extend_from_slice(b"\r\n");
    f
}

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// The bytes of a frame body (between ':' and CR LF) when its hex and LRC are valid.
pub fn decode_frame(body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < 6 || body.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = body
        .chunks_exact(2)
        .map(|p| Some(unhex(p[0])? << 4 | unhex(p[1])?))
        .collect();
    let mut bytes = bytes?;
    let sum = bytes.pop()?;
    (lrc(&bytes) == sum).then_some(bytes)
}

/// Looks for the response to `(unit, op)` in `buf`, dropping anything that is not one:
/// bytes outside frames, frames with bad hex or LRC, other units' or stale replies.
/// Consumed bytes are removed from `buf`.
pub fn parse_response(unit: u8, op: &Op, buf: &mut Vec<u8>) -> Parsed {
    loop {
        let Some(start) = buf.iter().position(|b| *b == b':') else {
            buf.clear();
            return Parsed::Incomplete;
        };
        buf.drain(..start);
        // A new ':' restarts the frame (the spec's receiver does the same).
        let end = buf[1..]
            .iter()
            .position(|b| *b == b'\n' || *b == b':')
            .map(|i| i + 1);
        let Some(end) = end else {
            if buf.len() > MAX_FRAME {
                buf.drain(..1);
                continue;
            }
            return Parsed::Incomplete;
        };
        if buf[end] == b':' {
            buf.drain(..end);
            continue;
        }
        let frame: Vec<u8> = buf.drain(..=end).collect();
        let body = frame[1..frame.len() - 1].strip_suffix(b"\r");
        let Some(bytes) = body.and_then(decode_frame) else {
            tracing::debug!("Dropped an ASCII frame with bad hex or LRC.");
            continue;
        };
        if bytes.first() != Some(&unit) {
            continue;
        }
        match pdu::decode_response(op, &bytes[1..]) {
            Answer::Ok(r) => return Parsed::Response(r),
            Answer::Exception(code) => return Parsed::Exception(code),
            Answer::Mismatch => continue,
        }
    }
}

/// An ASCII master on a byte stream (a serial port).
#[derive(Debug)]
pub struct AsciiTransport<S> {
    stream: S,
    buf: Vec<u8>,
    /// A request timed out: drain before the next one.
    dirty: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsciiTransport<S> {
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
                Ok(Ok(n)) => tracing::debug!(bytes = n, "Discarded late or stray bytes."),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::Table;

    fn frame(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn request_fixtures() {
        // The application protocol's FC3 example (unit 0x11, registers 108-110) in ASCII.
        assert_eq!(
            request(0x11, &Op::Read(Table::Holding, 0x006B, 3)),
            frame(":1103006B00037E\r\n")
        );
        assert_eq!(
            request(1, &Op::Read(Table::Holding, 0, 1)),
            frame(":010300000001FB\r\n")
        );
        assert_eq!(
            request(0x11, &Op::WriteRegister(1, 3)),
            frame(":110600010003E5\r\n")
        );
        assert_eq!(lrc(&[0x11, 0x03, 0x00, 0x6B, 0x00, 0x03]), 0x7E);
    }

    #[test]
    fn responses_fragmented_noisy_and_bad_frames() {
        let op = Op::Read(Table::Holding, 0x006B, 3);
        // The example response: 0x022B, 0x0000, 0x0064.
        let good = frame(":110306022B0000006455\r\n");
        assert_eq!(lrc(&[0x11, 3, 6, 0x02, 0x2B, 0, 0, 0, 0x64]), 0x55);
        let mut buf = good[..9].to_vec();
        assert_eq!(parse_response(0x11, &op, &mut buf), Parsed::Incomplete);
        buf.extend_from_slice(&good[9..]);
        assert_eq!(
            parse_response(0x11, &op, &mut buf),
            Parsed::Response(OpResult::Registers(vec![0x022B, 0, 0x64]))
        );
        // Garbage, a wrong LRC, bad hex, a truncated frame restarted by ':', another unit,
        // a stale reply to another read, then the good one.
        let mut buf = [
            b"\x00\xFFjunk\r\n".to_vec(),
            frame(":110306022B0000006555\r\n"),
            frame(":1103060G2B0000006455\r\n"),
            frame(":110306022B"),
            frame(":120306022B0000006553\r\n"),
            frame(":1103020001E9\r\n"),
            good.clone(),
        ]
        .concat();
        assert_eq!(
            parse_response(0x11, &op, &mut buf),
            Parsed::Response(OpResult::Registers(vec![0x022B, 0, 0x64]))
        );
        assert!(buf.is_empty());
        let mut exc = frame(":1183026A\r\n");
        assert_eq!(lrc(&[0x11, 0x83, 0x02]), 0x6A);
        assert_eq!(parse_response(0x11, &op, &mut exc), Parsed::Exception(2));
        let mut garbage: Vec<u8> = (0..=255).cycle().take(4000).collect();
        assert_eq!(parse_response(1, &op, &mut garbage), Parsed::Incomplete);
        assert!(garbage.len() <= MAX_FRAME + 1);
    }

    #[test]
    fn ascii_connections_default_to_7e1_and_share_ports_like_rtu() {
        use crate::config::{Connection, Parity, parse};
        use serde_json::json;
        let cfg = parse(&json!({"devices": {"a": {"map": "xy-md02", "connection": {"type": "ascii", "port": "/dev/ttyS1"}}}})).unwrap();
        assert_eq!(
            cfg.devices["a"].connection,
            Connection::Ascii {
                port: "/dev/ttyS1".into(),
                baud_rate: 9600,
                parity: Parity::Even,
                data_bits: 7,
                stop_bits: 1,
                frame_gap_ms: 5
            }
        );
        assert_eq!(
            cfg.devices["a"].connection.bus_key("a"),
            "ascii:///dev/ttyS1"
        );
        let e = parse(&json!({"devices": {
            "a": {"map": "xy-md02", "connection": {"type": "ascii", "port": "/dev/ttyS1"}},
            "b": {"map": "xy-md02", "connection": {"type": "rtu", "port": "/dev/ttyS1"}},
            "c": {"map": "xy-md02", "connection": {"type": "ascii", "port": "/dev/ttyS2", "dataBits": 6}, "unitId": 0}
        }}))
        .unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"devices.b.connection"), "{paths:?}");
        assert!(
            paths.contains(&"devices.c.connection.dataBits"),
            "{paths:?}"
        );
        assert!(paths.contains(&"devices.c.unitId"), "{paths:?}");
        // The deployment manifest maps ASCII ports into the container like RTU ones.
        assert!(
            crate::deploy::deployment(&cfg)
                .devices
                .contains("/dev/ttyS1")
        );
    }

    #[tokio::test]
    async fn late_reply_after_a_timeout_is_not_taken_for_the_next_answer() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = AsciiTransport::new(client);
        let op = Op::Read(Table::Holding, 0, 1);
        let answer = |v: u8| {
            let mut bin = vec![1, 3, 2, 0, v];
            bin.push(lrc(&bin));
            let hex: String = bin.iter().map(|b| format!("{b:02X}")).collect();
            format!(":{hex}\r\n").into_bytes()
        };
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 17];
            server.read_exact(&mut req).await.unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            server.write_all(&answer(111)).await.unwrap();
            server.read_exact(&mut req).await.unwrap();
            server.write_all(&answer(222)).await.unwrap();
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
