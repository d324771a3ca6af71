//! Modbus TCP framing (MBAP header, pure) and a client transport over a byte stream.
//!
//! Every request carries a transaction id that the server echoes, so a reply arriving
//! after its request timed out is recognised and dropped: unlike RTU, a timeout does not
//! cost the connection, and the other unit ids behind a gateway keep theirs. Buffers are
//! a few hundred bytes per connection and reused (a general-purpose framed codec keeps
//! 16 KiB per connection, 32 MiB at 2000 devices).

use std::ops::Range;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::pdu::{self, Answer};
use super::{BusError, Op, OpResult};

/// Largest MBAP length field: unit id + a 253-byte PDU.
const MAX_LENGTH: usize = 254;

/// Writes the request frame (MBAP header + PDU) into `out`, replacing its contents.
pub fn encode_frame(tid: u16, unit: u8, op: &Op, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, unit]);
    pdu::encode_request(op, out);
    let length = (out.len() - 6) as u16;
    out[4..6].copy_from_slice(&length.to_be_bytes());
}

/// One complete frame at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Transaction id.
    pub tid: u16,
    /// Unit id.
    pub unit: u8,
    /// Where the PDU is in the buffer.
    pub pdu: Range<usize>,
    /// Bytes the frame takes.
    pub total: usize,
}

/// The frame at the start of `buf`: `Ok(None)` until it is complete; an error when the
/// header cannot be Modbus TCP (the stream is then out of step and must be reopened).
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, String> {
    let Some(header) = buf.get(..7) else {
        return Ok(None);
    };
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    let length = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if protocol != 0 {
        return Err(format!("not a Modbus TCP reply (protocol id {protocol})"));
    }
    if !(2..=MAX_LENGTH).contains(&length) {
        return Err(format!("not a Modbus TCP reply (length {length})"));
    }
    let total = 6 + length;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        tid: u16::from_be_bytes([header[0], header[1]]),
        unit: header[6],
        pdu: 7..total,
        total,
    }))
}

/// A Modbus TCP client on a byte stream.
#[derive(Debug)]
pub struct TcpTransport<S> {
    stream: S,
    tid: u16,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Timeouts in a row with nothing at all received: the link is probably dead.
    pub silent_timeouts: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> TcpTransport<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            tid: 0,
            out: Vec::with_capacity(16),
            buf: Vec::with_capacity(2 * (6 + MAX_LENGTH)),
            silent_timeouts: 0,
        }
    }

    /// One request/response exchange with a timeout.
    pub async fn call(
        &mut self,
        unit: u8,
        op: &Op,
        timeout: Duration,
    ) -> Result<OpResult, BusError> {
        self.tid = self.tid.wrapping_add(1);
        encode_frame(self.tid, unit, op, &mut self.out);
        let deadline = Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, self.stream.write_all(&self.out)).await {
            Err(_) => return Err(BusError::Timeout(timeout)),
            Ok(Err(e)) => return Err(BusError::Io(e.to_string())),
            Ok(Ok(())) => {}
        }
        let mut scratch = [0u8; 6 + MAX_LENGTH];
        loop {
            while let Some(frame) = parse_frame(&self.buf).map_err(BusError::Io)? {
                self.silent_timeouts = 0;
                let answer = (frame.tid == self.tid).then(|| {
                    if frame.unit != unit {
                        // The transaction id matches, so this is our answer; some devices
                        // do not echo the unit id (the specification says they should).
                        tracing::debug!(
                            asked = unit,
                            answered = frame.unit,
                            "Reply with another unit id."
                        );
                    }
                    match pdu::decode_response(op, &self.buf[frame.pdu.clone()]) {
                        Answer::Ok(r) => Ok(r),
                        Answer::Exception(code) => Err(BusError::Exception(code)),
                        Answer::Mismatch => {
                            Err(BusError::Io("the reply does not match the request".into()))
                        }
                    }
                });
                self.buf.drain(..frame.total);
                match answer {
                    Some(result) => return result,
                    None => tracing::debug!(tid = frame.tid, "Dropped a late reply."),
                }
            }
            match tokio::time::timeout_at(deadline, self.stream.read(&mut scratch)).await {
                Err(_) => {
                    self.silent_timeouts += 1;
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

    fn reply(tid: u16, unit: u8, pdu: &[u8]) -> Vec<u8> {
        let mut f = tid.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        f.push(unit);
        f.extend_from_slice(pdu);
        f
    }

    #[test]
    fn frames_fixture() {
        let mut out = Vec::new();
        encode_frame(0x0102, 17, &Op::Read(Table::Holding, 0x006B, 3), &mut out);
        // The specification's example: read 3 holding registers from 0x006B.
        assert_eq!(out, [1, 2, 0, 0, 0, 6, 17, 3, 0, 0x6B, 0, 3]);
        let r = reply(7, 1, &[3, 2, 0, 42]);
        assert_eq!(parse_frame(&r[..8]), Ok(None));
        assert_eq!(
            parse_frame(&r),
            Ok(Some(Frame {
                tid: 7,
                unit: 1,
                pdu: 7..11,
                total: 11
            }))
        );
        assert!(
            parse_frame(&[0, 1, 0, 9, 0, 3, 1, 3, 0]).is_err(),
            "protocol id"
        );
        assert!(parse_frame(&[0, 1, 0, 0, 0xFF, 0xFF, 1]).is_err(), "length");
        assert!(parse_frame(&[0, 1, 0, 0, 0, 1, 1]).is_err(), "too short");
    }

    #[tokio::test]
    async fn late_reply_is_dropped_and_the_link_kept() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = TcpTransport::new(client);
        let op = Op::Read(Table::Holding, 0, 1);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 12];
            server.read_exact(&mut req).await.unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            // The late answer to request 1, then the answer to request 2.
            server
                .write_all(&reply(1, 1, &[3, 2, 0, 111]))
                .await
                .unwrap();
            server.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[..2], &[0, 2]);
            server
                .write_all(&reply(2, 1, &[3, 2, 0, 222]))
                .await
                .unwrap();
            // Garbage: the stream is out of step.
            server.read_exact(&mut req).await.unwrap();
            server
                .write_all(b"HTTP/1.1 400 Bad Request\r\n")
                .await
                .unwrap();
            server
        });
        assert!(matches!(
            t.call(1, &op, Duration::from_millis(60)).await,
            Err(BusError::Timeout(_))
        ));
        assert_eq!(t.silent_timeouts, 1);
        assert_eq!(
            t.call(1, &op, Duration::from_millis(500)).await,
            Ok(OpResult::Registers(vec![222]))
        );
        assert_eq!(t.silent_timeouts, 0);
        assert!(matches!(
            t.call(1, &op, Duration::from_millis(500)).await,
            Err(BusError::Io(_))
        ));
        drop(srv.await);
    }

    #[tokio::test]
    async fn exceptions_unechoed_units_and_mismatches() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut t = TcpTransport::new(client);
        let op = Op::Read(Table::Holding, 0, 1);
        let srv = tokio::spawn(async move {
            let mut req = [0u8; 12];
            for (tid, answer) in [
                (1u16, reply(1, 1, &[0x83, 2])),
                (2, reply(2, 9, &[3, 2, 0, 1])),
                (3, reply(3, 1, &[3, 4, 0, 1, 0, 2])),
            ] {
                server.read_exact(&mut req).await.unwrap();
                assert_eq!(u16::from_be_bytes([req[0], req[1]]), tid);
                // Fragmented on purpose.
                let (a, b) = answer.split_at(5);
                server.write_all(a).await.unwrap();
                server.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
                server.write_all(b).await.unwrap();
            }
            server
        });
        let wait = Duration::from_millis(500);
        assert_eq!(t.call(1, &op, wait).await, Err(BusError::Exception(2)));
        assert_eq!(
            t.call(1, &op, wait).await,
            Ok(OpResult::Registers(vec![1])),
            "a reply with the right transaction id but another unit id is still ours"
        );
        assert!(
            matches!(t.call(1, &op, wait).await, Err(BusError::Io(e)) if e.contains("does not match"))
        );
        drop(srv.await);
    }
}
