//! Modbus RTU framing (pure) and a transport over any byte stream (a serial port, or TCP
//! for RTU-over-TCP converters).
//!
//! Bus time is the limit on RS-485, so the next request goes out one inter-frame gap
//! (t3.5, see [`t35`]) after the last byte received, timed precisely, not on a timer tick.
//!
//! RTU has no transaction id, so a reply that arrives after its request timed out could
//! be taken as the answer to the next request. Three defences: responses must match
//! unit, function and byte count of the request (a stale reply to a different request is
//! skipped as noise); whatever is buffered before a request is discarded, and the gap is
//! counted again from those bytes; and the input is drained again right after a
//! timeout. Draining reads only what is already buffered (no fixed wait), so a silent
//! unit id costs exactly its timeout. A reply of the same unit and shape that arrives
//! later than the timeout and after the next request went out cannot be told apart:
//! choose `timeoutMs` above the slowest device's turnaround.

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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

/// The RTU inter-frame gap: 3.5 character times of `bits_per_char` (start, data,
/// parity and stop bits) at `baud`; 1.75 ms above 19,200 baud (Modbus over serial line
/// specification V1.02, section 2.5.1.1).
pub fn t35(baud: u32, bits_per_char: u32) -> Duration {
    if baud > 19_200 {
        return Duration::from_micros(1750);
    }
    Duration::from_secs_f64(3.5 * f64::from(bits_per_char) / f64::from(baud.max(1)))
}

/// Sleeps until `until` with sub-millisecond precision: tokio's timer wheel rounds up to
/// whole milliseconds (a 3.65 ms gap would become 4-5 ms, 10-25 % of a short
/// transaction), so the last stretch is slept on a blocking thread.
async fn sleep_precisely(until: Instant) {
    let coarse = until.checked_sub(Duration::from_millis(2));
    if let Some(c) = coarse.filter(|c| *c > Instant::now()) {
        tokio::time::sleep_until(c).await;
    }
    let rest = until.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        let _ignored = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// An RTU master on a byte stream.
#[derive(Debug)]
pub struct RtuTransport<S> {
    stream: S,
    buf: Vec<u8>,
    /// Silence required between the last byte received and the next request.
    gap: Duration,
    /// When the line was last seen busy (bytes received, or our request written).
    busy_at: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RtuTransport<S> {
    /// Wraps a stream; `gap` is the inter-frame silence (t3.5).
    pub fn new(stream: S, gap: Duration) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            gap,
            busy_at: None,
        }
    }

    /// Reads whatever is buffered right now without waiting; returns the byte count
    /// (an error if the stream has closed).
    async fn take_buffered(&mut self, into: &mut Vec<u8>) -> Result<usize, BusError> {
        let mut scratch = [0u8; 512];
        let mut total = 0;
        loop {
            let stream = &mut self.stream;
            let step = std::future::poll_fn(|cx| {
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(rb.filled().len()))),
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Pending => Poll::Ready(None),
                }
            })
            .await;
            match step {
                None => return Ok(total),
                Some(Ok(0)) => return Err(BusError::Io("the connection closed".into())),
                Some(Ok(n)) => {
                    into.extend_from_slice(&scratch[..n]);
                    total += n;
                    self.busy_at = Some(Instant::now());
                }
                Some(Err(e)) => return Err(BusError::Io(e.to_string())),
            }
        }
    }

    /// Discards buffered input without waiting.
    async fn drain(&mut self) -> Result<(), BusError> {
        let mut junk = Vec::new();
        let n = self.take_buffered(&mut junk).await?;
        if n > 0 {
            tracing::debug!(bytes = n, "Discarded late or stray bytes on the bus.");
        }
        Ok(())
    }

    /// Waits until the line has been silent for the gap, discarding what arrives.
    async fn wait_for_silence(&mut self) -> Result<(), BusError> {
        loop {
            self.drain().await?;
            let Some(busy) = self.busy_at else {
                return Ok(());
            };
            let until = busy + self.gap;
            if Instant::now() >= until {
                return Ok(());
            }
            sleep_precisely(until).await;
            // Bytes that came in meanwhile restart the gap.
            if self.busy_at == Some(busy) {
                self.drain().await?;
                if self.busy_at == Some(busy) {
                    return Ok(());
                }
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
        self.wait_for_silence().await?;
        self.buf.clear();
        let frame = request(unit, op);
        let deadline = Instant::now() + timeout;
        // A wedged port (adapter gone, output blocked) must not hang the bus: a write that
        // cannot finish in time reopens the port.
        let sent = tokio::time::timeout_at(deadline, async {
            self.stream.write_all(&frame).await?;
            self.stream.flush().await
        })
        .await;
        match sent {
            Err(_) => {
                return Err(BusError::Io(
                    "the request could not be written in time".into(),
                ));
            }
            Ok(Err(e)) => return Err(BusError::Io(e.to_string())),
            Ok(Ok(())) => self.busy_at = Some(Instant::now()),
        }
        let mut scratch = [0u8; 512];
        loop {
            match parse_response(unit, op, &mut self.buf) {
                Parsed::Response(r) => return Ok(r),
                Parsed::Exception(code) => return Err(BusError::Exception(code)),
                Parsed::Incomplete => {}
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => {
                    self.drain().await?;
                    return Err(BusError::Timeout(timeout));
                }
                Ok(Ok(0)) => return Err(BusError::Io("the connection closed".into())),
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&scratch[..n]);
                    self.busy_at = Some(Instant::now());
                }
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

    #[test]
    fn t35_follows_the_serial_line_spec() {
        // 3.5 chars of 11 bits at 9600 baud = 4.01 ms; of 10 bits = 3.65 ms.
        assert_eq!(t35(9600, 11).as_micros(), 4010);
        assert_eq!(t35(9600, 10).as_micros(), 3645);
        assert_eq!(t35(19_200, 11).as_micros(), 2005);
        // Above 19200 the fixed 1.75 ms.
        assert_eq!(t35(38_400, 11), Duration::from_micros(1750));
        assert_eq!(t35(115_200, 10), Duration::from_micros(1750));
    }

    #[tokio::test]
    async fn late_reply_is_not_taken_for_the_next_answer() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = RtuTransport::new(client, Duration::from_millis(2));
        let op = Op::Read(Table::Holding, 0, 1);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 8];
            server.read_exact(&mut req).await.unwrap();
            // Answer the first request late (after the client timed out)...
            tokio::time::sleep(Duration::from_millis(90)).await;
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
            // A late reply of unit 1 while unit 2 is being asked is skipped as noise.
            server.read_exact(&mut req).await.unwrap();
            assert_eq!(req[0], 2);
            server
                .write_all(&respond(&[1, 3, 2, 0, 111]))
                .await
                .unwrap();
            server
                .write_all(&respond(&[2, 3, 2, 0, 233]))
                .await
                .unwrap();
            server
        });
        let before = Instant::now();
        assert!(matches!(
            t.call(1, &op, Duration::from_millis(60)).await,
            Err(BusError::Timeout(_))
        ));
        // A silent unit costs its timeout, not a fixed drain on top.
        assert!(before.elapsed() < Duration::from_millis(85));
        // The line is busy with other traffic meanwhile; the stale reply is buffered by
        // the time of the next request and drained before it.
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(
            t.call(1, &op, Duration::from_millis(500)).await.unwrap(),
            OpResult::Registers(vec![222])
        );
        assert_eq!(
            t.call(2, &op, Duration::from_millis(500)).await.unwrap(),
            OpResult::Registers(vec![233])
        );
        drop(srv.await);
    }

    #[tokio::test]
    async fn the_next_request_waits_one_gap_after_the_last_byte() {
        let (client, mut server) = tokio::io::duplex(1024);
        let gap = Duration::from_millis(4);
        let mut t = RtuTransport::new(client, gap);
        let op = Op::Read(Table::Holding, 0, 1);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 8];
            let mut gaps = Vec::new();
            for _ in 0..20 {
                server.read_exact(&mut req).await.unwrap();
                let reply = respond(&[1, 3, 2, 0, 7]);
                server.write_all(&reply[..3]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                server.write_all(&reply[3..]).await.unwrap();
                let sent = Instant::now();
                server.read_exact(&mut req).await.unwrap();
                gaps.push(sent.elapsed());
                server.write_all(&reply).await.unwrap();
            }
            gaps
        });
        for _ in 0..40 {
            t.call(1, &op, Duration::from_millis(500)).await.unwrap();
        }
        let gaps = srv.await.unwrap();
        let min = gaps.iter().min().copied().unwrap_or_default();
        assert!(min >= gap, "a request went out {min:?} after a reply");
    }

    #[tokio::test]
    async fn stray_bytes_before_a_request_restart_the_gap() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = RtuTransport::new(client, Duration::from_millis(30));
        let op = Op::Read(Table::Holding, 0, 1);
        let mut req = [0u8; 8];
        let first = tokio::spawn(async move {
            server.read_exact(&mut req).await.unwrap();
            server.write_all(&respond(&[1, 3, 2, 0, 1])).await.unwrap();
            server
        });
        t.call(1, &op, Duration::from_millis(500)).await.unwrap();
        let mut server = first.await.unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Noise 40 ms after the reply: the request must wait 30 ms from the noise.
        server.write_all(&[0xAA, 0x55]).await.unwrap();
        let noise_at = Instant::now();
        let srv = tokio::spawn(async move {
            server.read_exact(&mut req).await.unwrap();
            let waited = noise_at.elapsed();
            server.write_all(&respond(&[1, 3, 2, 0, 2])).await.unwrap();
            waited
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        t.call(1, &op, Duration::from_millis(500)).await.unwrap();
        let waited = srv.await.unwrap();
        assert!(waited >= Duration::from_millis(29), "{waited:?}");
    }
}
