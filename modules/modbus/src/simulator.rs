//! The built-in simulated device: a real Modbus TCP server (tokio-modbus) on loopback
//! that serves a device map with plausible, changing values. Used by the demo
//! (`connection: {"type": "simulated"}`) and by benchmarks.

use std::collections::HashMap;
use std::future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;

use crate::codec::{WriteValue, encode};
use crate::map::{DataType, DeviceMap, Point, Table};

/// Register and bit storage.
#[derive(Debug, Default)]
pub struct Bank {
    words: HashMap<(Table, u16), u16>,
    bits: HashMap<(Table, u16), bool>,
}

impl Bank {
    fn read_words(&self, table: Table, addr: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        if count == 0 || count > 125 || u32::from(addr) + u32::from(count) > 65_536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok((addr..addr + count)
            .map(|a| self.words.get(&(table, a)).copied().unwrap_or(0))
            .collect())
    }

    fn read_bits(&self, table: Table, addr: u16, count: u16) -> Result<Vec<bool>, ExceptionCode> {
        if count == 0 || count > 2000 || u32::from(addr) + u32::from(count) > 65_536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok((addr..addr + count)
            .map(|a| self.bits.get(&(table, a)).copied().unwrap_or(false))
            .collect())
    }

    /// Stores a point's engineering value.
    pub fn set(&mut self, point: &Point, value: &serde_json::Value) {
        match encode(point, value) {
            Ok(WriteValue::Coil(b)) => {
                self.bits.insert((point.spec.table, point.spec.address), b);
            }
            Ok(WriteValue::Registers(regs)) => {
                for (i, r) in regs.into_iter().enumerate() {
                    self.words
                        .insert((point.spec.table, point.spec.address + i as u16), r);
                }
            }
            Ok(WriteValue::Bit(bit, on)) => {
                let w = self
                    .words
                    .entry((point.spec.table, point.spec.address))
                    .or_default();
                if on {
                    *w |= 1 << bit
                } else {
                    *w &= !(1 << bit)
                }
            }
            Err(_) => {}
        }
    }

    /// Stores a string point.
    fn set_text(&mut self, point: &Point, text: &str) {
        let bytes: Vec<u8> = text
            .bytes()
            .chain(std::iter::repeat(0))
            .take(usize::from(point.width) * 2)
            .collect();
        for (i, c) in bytes.chunks(2).enumerate() {
            self.words.insert(
                (point.spec.table, point.spec.address + i as u16),
                u16::from_be_bytes([c[0], c[1]]),
            );
        }
    }
}

/// A plausible nominal value for a point (by unit and range).
fn nominal(point: &Point) -> f64 {
    if let (Some(lo), Some(hi)) = (point.spec.min, point.spec.max) {
        return (lo + (hi - lo) / 2.0).round();
    }
    match point.spec.unit.as_deref().unwrap_or("") {
        "V" => 230.0,
        "A" => 5.0,
        "W" => 1150.0,
        "VA" => 1180.0,
        "VAr" => 120.0,
        "Hz" => 50.0,
        "kWh" | "kVArh" | "Wh" => 1000.0,
        "°C" => 21.5,
        "%RH" => 45.0,
        "" if point.name.to_ascii_lowercase().contains("factor") => 0.95,
        _ => 100.0,
    }
}

/// Fills the bank with values for time `t` (seconds): counters grow, others wobble.
pub fn fill(bank: &mut Bank, map: &DeviceMap, t: f64) {
    for p in &map.points {
        let name = p.name.to_ascii_lowercase();
        match p.spec.data_type {
            DataType::String => bank.set_text(p, &format!("SIM-{}", p.name.to_uppercase())),
            DataType::Bool | DataType::Bit => bank.set(p, &json!(((t as u64) / 5) % 2 == 0)),
            // SunSpec helpers: scale factors, marker, model id.
            DataType::I16 if name.ends_with("sf") => bank.set(p, &json!(-1)),
            _ if name == "sunsmarker" => bank.set(p, &json!(0x5375_6e53u32)),
            _ if name == "modelid" => bank.set(p, &json!(103)),
            _ => {
                let base = nominal(p);
                let unit = p.spec.unit.as_deref().unwrap_or("");
                let v = if matches!(unit, "kWh" | "kVArh" | "Wh") {
                    base + t / 36.0
                } else {
                    base * (1.0 + 0.02 * (t / 7.0).sin())
                };
                let v = match p.spec.data_type {
                    DataType::F32 | DataType::F64 => v,
                    _ => {
                        // Integers: keep within the type once unscaled (SunSpec sf -1 → ×10).
                        let sf = if p.spec.scale_point.is_some() {
                            0.1
                        } else {
                            p.spec.scale.unwrap_or(1.0)
                        };
                        (v / sf).round() * sf
                    }
                };
                let v = match (p.spec.min, p.spec.max) {
                    (Some(lo), Some(hi)) => v.clamp(lo, hi),
                    _ => v,
                };
                if p.spec.scale_point.is_some() {
                    // Raw register = value / 10^sf with sf = -1.
                    let raw = (v * 10.0).round();
                    let mut unscaled = p.clone();
                    unscaled.spec.scale = None;
                    unscaled.spec.offset = None;
                    bank.set(&unscaled, &json!(raw));
                } else {
                    bank.set(p, &json!(v));
                }
            }
        }
    }
}

#[derive(Clone)]
struct SimService {
    bank: Arc<Mutex<Bank>>,
}

impl Service for SimService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let mut bank = self.bank.lock().unwrap_or_else(|p| p.into_inner());
        let result = match req {
            Request::ReadCoils(a, n) => bank.read_bits(Table::Coil, a, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(a, n) => bank
                .read_bits(Table::DiscreteInput, a, n)
                .map(Response::ReadDiscreteInputs),
            Request::ReadHoldingRegisters(a, n) => bank
                .read_words(Table::Holding, a, n)
                .map(Response::ReadHoldingRegisters),
            Request::ReadInputRegisters(a, n) => bank
                .read_words(Table::Input, a, n)
                .map(Response::ReadInputRegisters),
            Request::WriteSingleCoil(a, v) => {
                bank.bits.insert((Table::Coil, a), v);
                Ok(Response::WriteSingleCoil(a, v))
            }
            Request::WriteSingleRegister(a, v) => {
                bank.words.insert((Table::Holding, a), v);
                Ok(Response::WriteSingleRegister(a, v))
            }
            Request::WriteMultipleRegisters(a, values) => {
                for (i, v) in values.iter().enumerate() {
                    bank.words
                        .insert((Table::Holding, a.wrapping_add(i as u16)), *v);
                }
                Ok(Response::WriteMultipleRegisters(a, values.len() as u16))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        };
        future::ready(result)
    }
}

/// Starts a simulated device for `map` on 127.0.0.1 (any free port). Values refresh
/// every second until `shutdown`; writes to holding registers and coils stick until then.
pub async fn start(
    map: Arc<DeviceMap>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    start_at(map, SocketAddr::from(([127, 0, 0, 1], 0)), shutdown).await
}

/// [`start`] on a given address (benchmarks: many devices on one port, one loopback
/// address each, as a fleet on a LAN).
pub async fn start_at(
    map: Arc<DeviceMap>,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let bank = Arc::new(Mutex::new(Bank::default()));
    let started = std::time::Instant::now();
    if let Ok(mut b) = bank.lock() {
        fill(&mut b, &map, 0.0);
    }
    let refresh = bank.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    if let Ok(mut b) = refresh.lock() {
                        // Only input registers and discrete inputs change on their own, so
                        // written settings (holding registers, coils) stay as written.
                        let mut fresh = Bank::default();
                        fill(&mut fresh, &map, started.elapsed().as_secs_f64());
                        b.words.extend(fresh.words.into_iter().filter(|((t, _), _)| *t == Table::Input));
                        b.bits.extend(fresh.bits.into_iter().filter(|((t, _), _)| *t == Table::DiscreteInput));
                    }
                }
            }
        }
    });
    let service = SimService { bank };
    tokio::spawn(async move {
        let server = Server::new(listener);
        let svc = move |_addr| Ok(Some(service.clone()));
        let on_connected = move |stream, addr| {
            let svc = svc.clone();
            async move { accept_tcp_connection(stream, addr, svc) }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = server.serve(&on_connected, |_err| {}) => {}
        }
    });
    Ok(addr)
}
