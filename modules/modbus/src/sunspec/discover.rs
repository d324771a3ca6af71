//! The I/O of SunSpec: find the `SunS` marker, walk the model chain, read models. Every
//! request goes through the device's bus (its task owns the connection, applies the
//! timeout and drops late replies).

use std::time::Duration;

use crate::bus::{BusError, BusHandle, Op, OpResult};
use crate::map::Table;

/// Where SunSpec devices put their marker, in the order probed.
pub const BASES: [u16; 3] = [40000, 0, 50000];
/// "SunS" as two registers.
pub const MARKER: [u16; 2] = [0x5375, 0x6e53];
/// Model id of the end marker.
pub const END: u16 = 0xFFFF;
/// More models than this means a broken chain.
const MAX_MODELS: usize = 200;

/// One model in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEntry {
    /// Model id.
    pub id: u16,
    /// Address of its `ID` register.
    pub address: u16,
    /// Its `L` (registers after `ID` and `L`).
    pub len: u16,
}

/// A discovered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Address of the `SunS` marker.
    pub base: u16,
    /// Models in chain order.
    pub models: Vec<ChainEntry>,
}

impl Chain {
    /// Model ids in chain order.
    pub fn ids(&self) -> Vec<u16> {
        self.models.iter().map(|m| m.id).collect()
    }
}

/// Discovery or a model read failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SunSpecError {
    /// No base address holds the marker.
    #[error("No SunSpec marker at 40000, 0 or 50000.")]
    NoMarker,
    /// The chain is inconsistent (runs past the address space, never ends).
    #[error("Broken SunSpec model chain: {0}")]
    BadChain(String),
    /// A model's id or length changed since discovery (the device restarted or was
    /// reconfigured); it is rediscovered.
    #[error("The SunSpec model list changed at register {0}; rediscovering.")]
    Changed(u16),
    /// The bus failed or the device refused.
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl SunSpecError {
    /// Transport failures (the device is unreachable), as opposed to answers.
    pub fn unreachable(&self) -> bool {
        matches!(self, SunSpecError::Bus(e) if !matches!(e, BusError::Exception(_)))
    }
}

/// Reads registers of one unit through a bus, in chunks.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    /// The bus.
    pub bus: &'a BusHandle,
    /// Unit id.
    pub unit: u8,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest read (1-125).
    pub max_registers: u16,
    /// Requests made so far.
    pub requests: u32,
}

impl<'a> Reader<'a> {
    /// A reader.
    pub fn new(bus: &'a BusHandle, unit: u8, timeout: Duration, max_registers: u16) -> Self {
        Self {
            bus,
            unit,
            timeout,
            max_registers: max_registers.clamp(1, 125),
            requests: 0,
        }
    }

    /// Reads `count` holding registers from `address` in requests of at most
    /// `max_registers`.
    pub async fn read(&mut self, address: u16, count: u32) -> Result<Vec<u16>, SunSpecError> {
        if u32::from(address) + count > 65_536 {
            return Err(SunSpecError::BadChain(format!(
                "{count} registers from {address} run past 65535"
            )));
        }
        let mut out = Vec::with_capacity(count as usize);
        let mut at = u32::from(address);
        let end = at + count;
        while at < end {
            let n = (end - at).min(u32::from(self.max_registers)) as u16;
            self.requests += 1;
            match self
                .bus
                .call(
                    self.unit,
                    Op::Read(Table::Holding, at as u16, n),
                    self.timeout,
                )
                .await?
            {
                OpResult::Registers(r) => out.extend(r),
                _ => return Err(BusError::Io("unexpected answer".into()).into()),
            }
            at += u32::from(n);
        }
        Ok(out)
    }

    /// Finds the marker and walks the chain to the end marker.
    pub async fn discover(&mut self) -> Result<Chain, SunSpecError> {
        let mut base = None;
        for b in BASES {
            match self.read(b, 2).await {
                Ok(r) if r == MARKER => {
                    base = Some(b);
                    break;
                }
                Ok(_) | Err(SunSpecError::Bus(BusError::Exception(_))) => {}
                Err(e) => return Err(e),
            }
        }
        let base = base.ok_or(SunSpecError::NoMarker)?;
        let mut models = Vec::new();
        let mut at = u32::from(base) + 2;
        loop {
            if at + 2 > 65_536 {
                return Err(SunSpecError::BadChain(format!(
                    "no end marker before register 65535 (base {base})"
                )));
            }
            let head = match self.read(at as u16, 2).await {
                Ok(h) => h,
                // Some devices end the chain without an end marker: past the last model
                // is an illegal address.
                Err(SunSpecError::Bus(BusError::Exception(2))) if !models.is_empty() => break,
                Err(e) => return Err(e),
            };
            let (id, len) = (head[0], head.get(1).copied().unwrap_or(0));
            if id == END {
                break;
            }
            models.push(ChainEntry {
                id,
                address: at as u16,
                len,
            });
            if models.len() > MAX_MODELS {
                return Err(SunSpecError::BadChain(format!(
                    "more than {MAX_MODELS} models from base {base}"
                )));
            }
            at += 2 + u32::from(len);
        }
        Ok(Chain { base, models })
    }

    /// Reads a model's `L + 2` registers (and, with `with_end`, one more that must be the
    /// end marker) and checks its id and length against the chain.
    pub async fn read_model(
        &mut self,
        m: &ChainEntry,
        with_end: bool,
    ) -> Result<Vec<u16>, SunSpecError> {
        let count = u32::from(m.len) + 2 + u32::from(with_end);
        let mut regs = match self.read(m.address, count).await {
            // The device may not hold an end marker after its last model (or may refuse
            // a read that runs past it, whatever exception it picks).
            Err(SunSpecError::Bus(BusError::Exception(_))) if with_end => {
                self.read(m.address, count - 1).await?
            }
            r => r?,
        };
        if regs.first() != Some(&m.id) || regs.get(1) != Some(&m.len) {
            return Err(SunSpecError::Changed(m.address));
        }
        if regs.len() > usize::from(m.len) + 2 {
            if regs.last() != Some(&END) {
                return Err(SunSpecError::Changed(m.address.wrapping_add(m.len + 2)));
            }
            regs.pop();
        }
        Ok(regs)
    }
}
