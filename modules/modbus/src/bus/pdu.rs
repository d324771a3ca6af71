//! Modbus PDUs (function code + data), shared by the RTU and TCP framings. Pure.

use super::{Op, OpResult};
use crate::map::Table;

/// The function code of an operation.
pub fn function_code(op: &Op) -> u8 {
    match op {
        Op::Read(Table::Coil, ..) => 1,
        Op::Read(Table::DiscreteInput, ..) => 2,
        Op::Read(Table::Holding, ..) => 3,
        Op::Read(Table::Input, ..) => 4,
        Op::WriteCoil(..) => 5,
        Op::WriteRegister(..) => 6,
        Op::WriteCoils(..) => 15,
        Op::WriteRegisters(..) => 16,
        Op::ReadDeviceId(..) => 43,
    }
}

/// Appends the request PDU for `op` to `out`.
pub fn encode_request(op: &Op, out: &mut Vec<u8>) {
    out.push(function_code(op));
    match op {
        Op::Read(_, addr, count) => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&count.to_be_bytes());
        }
        Op::WriteCoil(addr, on) => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&coil_word(*on).to_be_bytes());
        }
        Op::WriteRegister(addr, v) => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        Op::WriteCoils(addr, bits) => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&(bits.len() as u16).to_be_bytes());
            let packed: Vec<u8> = bits
                .chunks(8)
                .map(|byte| {
                    byte.iter()
                        .enumerate()
                        .fold(0u8, |acc, (i, on)| acc | (u8::from(*on) << i))
                })
                .collect();
            out.push(packed.len() as u8);
            out.extend_from_slice(&packed);
        }
        Op::WriteRegisters(addr, values) => {
            out.extend_from_slice(&addr.to_be_bytes());
            out.extend_from_slice(&(values.len() as u16).to_be_bytes());
            out.push((values.len() * 2) as u8);
            for v in values {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Op::ReadDeviceId(code, object) => out.extend_from_slice(&[0x0E, *code, *object]),
    }
}

/// One FC43/14 response: identification objects (id, text) and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId {
    /// More objects follow: ask again from `next_object`.
    pub more_follows: bool,
    /// The next object id to ask for.
    pub next_object: u8,
    /// Objects: 0 VendorName, 1 ProductCode, 2 MajorMinorRevision, 3 VendorUrl,
    /// 4 ProductName, 5 ModelName, 6 UserApplicationName.
    pub objects: Vec<(u8, String)>,
}

/// Length of an FC43/14 response PDU at the start of `pdu` (function code first), or
/// `None` while incomplete. Its length is only known by walking its objects.
pub fn device_id_len(pdu: &[u8]) -> Option<usize> {
    let count = usize::from(*pdu.get(6)?);
    let mut at = 7;
    for _ in 0..count {
        at += 2 + usize::from(*pdu.get(at + 1)?);
    }
    (pdu.len() >= at).then_some(at)
}

fn decode_device_id(pdu: &[u8]) -> Option<DeviceId> {
    if pdu.get(1) != Some(&0x0E) || device_id_len(pdu) != Some(pdu.len()) {
        return None;
    }
    let mut objects = Vec::new();
    let mut at = 7;
    for _ in 0..pdu[6] {
        let (id, len) = (pdu[at], usize::from(pdu[at + 1]));
        let text = String::from_utf8_lossy(&pdu[at + 2..at + 2 + len]);
        objects.push((id, text.trim_end_matches('\0').trim().to_owned()));
        at += 2 + len;
    }
    Some(DeviceId {
        more_follows: pdu[4] == 0xFF,
        next_object: pdu[5],
        objects,
    })
}

fn coil_word(on: bool) -> u16 {
    if on { 0xFF00 } else { 0 }
}

/// Length of the response PDU to `op` (function code included), when it is not an
/// exception.
pub fn response_len(op: &Op) -> usize {
    match op {
        Op::Read(table, _, count) => 2 + data_len(*table, *count),
        _ => 5,
    }
}

/// Bytes of data a read of `count` items returns.
pub fn data_len(table: Table, count: u16) -> usize {
    if table.is_bits() {
        usize::from(count.div_ceil(8))
    } else {
        usize::from(count) * 2
    }
}

/// What a response PDU says about `op`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The expected response.
    Ok(OpResult),
    /// An exception response with its code.
    Exception(u8),
    /// Not a response to `op` (wrong function, byte count or write echo).
    Mismatch,
}

/// Decodes a response PDU (function code first) to `op`.
pub fn decode_response(op: &Op, pdu: &[u8]) -> Answer {
    let fc = function_code(op);
    match pdu {
        [f, code] if *f == fc | 0x80 => return Answer::Exception(*code),
        [f, ..] if *f == fc && matches!(op, Op::ReadDeviceId(..)) => {
            return decode_device_id(pdu)
                .map_or(Answer::Mismatch, |d| Answer::Ok(OpResult::DeviceId(d)));
        }
        [f, ..] if *f == fc && pdu.len() == response_len(op) => {}
        _ => return Answer::Mismatch,
    }
    match op {
        Op::Read(table, _, count) => {
            if usize::from(pdu[1]) != data_len(*table, *count) {
                return Answer::Mismatch;
            }
            let data = &pdu[2..];
            if table.is_bits() {
                let bits = (0..usize::from(*count))
                    .map(|n| data[n / 8] >> (n % 8) & 1 == 1)
                    .collect();
                Answer::Ok(OpResult::Bits(bits))
            } else {
                let regs = data
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                Answer::Ok(OpResult::Registers(regs))
            }
        }
        // Writes echo address and value/quantity: a mismatch is someone else's reply.
        Op::WriteCoil(addr, on) => echo(pdu, *addr, coil_word(*on)),
        Op::WriteRegister(addr, v) => echo(pdu, *addr, *v),
        Op::WriteRegisters(addr, values) => echo(pdu, *addr, values.len() as u16),
        Op::WriteCoils(addr, bits) => echo(pdu, *addr, bits.len() as u16),
        Op::ReadDeviceId(..) => Answer::Mismatch,
    }
}

fn echo(pdu: &[u8], addr: u16, value: u16) -> Answer {
    let [a0, a1] = addr.to_be_bytes();
    let [v0, v1] = value.to_be_bytes();
    if pdu[1..5] == [a0, a1, v0, v1] {
        Answer::Ok(OpResult::Written)
    } else {
        Answer::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses() {
        let mut out = Vec::new();
        encode_request(&Op::WriteRegisters(0x10, vec![1, 2]), &mut out);
        assert_eq!(out, [16, 0, 0x10, 0, 2, 4, 0, 1, 0, 2]);
        let read = Op::Read(Table::Holding, 0, 2);
        assert_eq!(
            decode_response(&read, &[3, 4, 0x41, 0xAC, 0, 0]),
            Answer::Ok(OpResult::Registers(vec![0x41AC, 0]))
        );
        assert_eq!(decode_response(&read, &[0x83, 2]), Answer::Exception(2));
        // Wrong byte count, wrong length, other function, empty.
        assert_eq!(
            decode_response(&read, &[3, 2, 0, 1, 0, 0]),
            Answer::Mismatch
        );
        assert_eq!(decode_response(&read, &[3, 4, 0, 1]), Answer::Mismatch);
        assert_eq!(
            decode_response(&read, &[4, 4, 0, 1, 0, 0]),
            Answer::Mismatch
        );
        assert_eq!(decode_response(&read, &[]), Answer::Mismatch);
        let coils = Op::Read(Table::Coil, 0, 9);
        assert_eq!(
            decode_response(&coils, &[1, 2, 0b101, 1]),
            Answer::Ok(OpResult::Bits(vec![
                true, false, true, false, false, false, false, false, true
            ]))
        );
        // FC15, the specification's example: 10 coils from 19 = CD 01.
        let coils = Op::WriteCoils(
            19,
            [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
                .iter()
                .map(|b| *b == 1)
                .collect(),
        );
        out.clear();
        encode_request(&coils, &mut out);
        assert_eq!(out, [15, 0, 19, 0, 10, 2, 0xCD, 0x01]);
        assert_eq!(
            decode_response(&coils, &[15, 0, 19, 0, 10]),
            Answer::Ok(OpResult::Written)
        );
        let w = Op::WriteCoil(0xAC, true);
        assert_eq!(
            decode_response(&w, &[5, 0, 0xAC, 0xFF, 0]),
            Answer::Ok(OpResult::Written)
        );
        assert_eq!(decode_response(&w, &[5, 0, 0xAC, 0, 0]), Answer::Mismatch);
        // FC43/14, the application protocol's example shape: basic identification.
        let id = Op::ReadDeviceId(1, 0);
        out.clear();
        encode_request(&id, &mut out);
        assert_eq!(out, [0x2B, 0x0E, 1, 0]);
        let reply = [
            0x2B, 0x0E, 1, 1, 0, 0, 3, 0, 7, b'C', b'o', b'm', b'p', b'a', b'n', b'y', 1, 4, b'P',
            b'-', b'1', b'0', 2, 4, b'V', b'2', b'.', b'1',
        ];
        assert_eq!(device_id_len(&reply), Some(reply.len()));
        assert_eq!(device_id_len(&reply[..20]), None);
        assert_eq!(
            decode_response(&id, &reply),
            Answer::Ok(OpResult::DeviceId(DeviceId {
                more_follows: false,
                next_object: 0,
                objects: vec![
                    (0, "Company".into()),
                    (1, "P-10".into()),
                    (2, "V2.1".into())
                ]
            }))
        );
        assert_eq!(decode_response(&id, &reply[..20]), Answer::Mismatch);
        assert_eq!(decode_response(&id, &[0xAB, 1]), Answer::Exception(1));
    }
}
