//! The read planner, pure: coalesce a device's points into as few requests as the
//! limits allow, reading across small gaps, never across a learned "cut".
//!
//! When a device rejects a merged read with an illegal-address exception, the poller
//! calls [`Cuts::split`]: the block is cut in two at a point boundary near its middle and
//! the cut is remembered for that device, so the next plan reads the halves separately.
//! Repeated rejections halve again until single points remain; a single point that is
//! still rejected is reported as that point's error.

use std::collections::BTreeSet;

use crate::map::{DeviceMap, Table};

/// Request size limits and gap tolerance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most registers in one read (Modbus allows 125).
    pub max_registers: u16,
    /// Most bits in one read (Modbus allows 2000).
    pub max_bits: u16,
    /// Largest run of unused registers (or bits) to read across.
    pub max_gap: u16,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_registers: 125,
            max_bits: 2000,
            max_gap: 10,
        }
    }
}

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Table to read.
    pub table: Table,
    /// First address.
    pub start: u16,
    /// Registers (or bits) to read.
    pub count: u16,
    /// Indexes into the map's points.
    pub points: Vec<usize>,
}

/// Addresses a block may not span across, learned per device: cut `(t, a)` forbids a
/// block in table `t` from holding both address `a - 1` and `a`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cuts(BTreeSet<(Table, u32)>);

impl Cuts {
    fn crosses(&self, table: Table, from: u32, to: u32) -> bool {
        // Is there a cut c with from < c <= to?
        to > from
            && self
                .0
                .range((table, from + 1)..=(table, to))
                .next()
                .is_some()
    }

    /// Learns from a rejected block. Returns false when the block is a single point
    /// (nothing left to split: that point itself is unreadable).
    pub fn split(&mut self, map: &DeviceMap, block: &Block) -> bool {
        let mut starts: Vec<u32> = block
            .points
            .iter()
            .map(|&i| u32::from(map.points[i].spec.address))
            .collect();
        starts.sort_unstable();
        starts.dedup();
        if starts.len() < 2 {
            return false;
        }
        let middle = starts[starts.len() / 2];
        self.0.insert((block.table, middle))
    }

    /// Number of cuts learned.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was learned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Plans the reads for the points `wanted` (indexes into `map.points`).
pub fn plan(map: &DeviceMap, wanted: &[usize], limits: Limits, cuts: &Cuts) -> Vec<Block> {
    let mut items: Vec<(Table, u32, u32, usize)> = wanted
        .iter()
        .map(|&i| {
            let p = &map.points[i];
            let start = u32::from(p.spec.address);
            (p.spec.table, start, start + u32::from(p.width), i)
        })
        .collect();
    items.sort_unstable();
    let mut blocks: Vec<Block> = Vec::new();
    let mut current: Option<(Table, u32, u32, Vec<usize>)> = None;
    for (table, start, end, idx) in items {
        let limit = u32::from(if table.is_bits() {
            limits.max_bits
        } else {
            limits.max_registers
        });
        if let Some((t, s, e, pts)) = &mut current {
            let fits = *t == table
                && start <= *e + u32::from(limits.max_gap)
                && end.max(*e) - *s <= limit
                && !cuts.crosses(table, *s, start);
            if fits {
                *e = (*e).max(end);
                pts.push(idx);
                continue;
            }
            blocks.push(to_block(current.take()));
        }
        current = Some((table, start, end, vec![idx]));
    }
    if current.is_some() {
        blocks.push(to_block(current));
    }
    blocks
}

fn to_block(b: Option<(Table, u32, u32, Vec<usize>)>) -> Block {
    let (table, start, end, points) = b.unwrap_or((Table::Holding, 0, 0, Vec::new()));
    // Validation keeps every point inside 0..=65535, so these fit in u16.
    Block {
        table,
        start: start as u16,
        count: (end - start) as u16,
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::parse_map;
    use serde_json::json;

    fn map() -> DeviceMap {
        parse_map(
            &json!({"name": "t", "points": {
                "a": {"table": "holding", "address": 0, "type": "u16"},
                "b": {"table": "holding", "address": 1, "type": "f32"},
                "c": {"table": "holding", "address": 8, "type": "u16"},
                "d": {"table": "holding", "address": 100, "type": "u16"},
                "e": {"table": "holding", "address": 130, "type": "u32"},
                "f": {"table": "input", "address": 0, "type": "u16"},
                "g": {"table": "coil", "address": 0, "type": "bool"},
                "h": {"table": "coil", "address": 1999, "type": "bool"}
            }}),
            "m",
        )
        .unwrap()
    }

    fn all(m: &DeviceMap) -> Vec<usize> {
        (0..m.points.len()).collect()
    }

    fn shape(blocks: &[Block]) -> Vec<(Table, u16, u16)> {
        blocks.iter().map(|b| (b.table, b.start, b.count)).collect()
    }

    #[test]
    fn coalesces_within_gap_and_limits() {
        let m = map();
        let blocks = plan(&m, &all(&m), Limits::default(), &Cuts::default());
        assert_eq!(
            shape(&blocks),
            [
                (Table::Coil, 0, 1),
                (Table::Coil, 1999, 1),
                (Table::Holding, 0, 9),
                (Table::Holding, 100, 1),
                (Table::Holding, 130, 2),
                (Table::Input, 0, 1)
            ]
        );
        let wide = plan(
            &m,
            &all(&m),
            Limits {
                max_registers: 125,
                max_bits: 2000,
                max_gap: 2000,
            },
            &Cuts::default(),
        );
        assert_eq!(
            shape(&wide),
            [
                (Table::Coil, 0, 2000),
                (Table::Holding, 0, 101),
                (Table::Holding, 130, 2),
                (Table::Input, 0, 1)
            ]
        );
        let every: usize = blocks.iter().map(|b| b.points.len()).sum();
        assert_eq!(every, m.points.len(), "every point is read exactly once");
        let tight = plan(
            &m,
            &all(&m),
            Limits {
                max_registers: 125,
                max_bits: 100,
                max_gap: 0,
            },
            &Cuts::default(),
        );
        assert_eq!(
            shape(&tight),
            [
                (Table::Coil, 0, 1),
                (Table::Coil, 1999, 1),
                (Table::Holding, 0, 3),
                (Table::Holding, 8, 1),
                (Table::Holding, 100, 1),
                (Table::Holding, 130, 2),
                (Table::Input, 0, 1)
            ]
        );
    }

    #[test]
    fn respects_the_register_limit() {
        let m = map();
        let blocks = plan(
            &m,
            &all(&m),
            Limits {
                max_registers: 20,
                max_bits: 2000,
                max_gap: 200,
            },
            &Cuts::default(),
        );
        assert!(
            blocks.iter().all(|b| b.table.is_bits() || b.count <= 20),
            "{blocks:?}"
        );
    }

    #[test]
    fn rejected_blocks_split_until_single_points() {
        let m = map();
        let wanted: Vec<usize> = ["a", "b", "c"]
            .iter()
            .map(|n| m.index_of(n).unwrap())
            .collect();
        let mut cuts = Cuts::default();
        let first = plan(&m, &wanted, Limits::default(), &cuts);
        assert_eq!(shape(&first), [(Table::Holding, 0, 9)]);
        assert!(cuts.split(&m, &first[0]));
        let second = plan(&m, &wanted, Limits::default(), &cuts);
        assert_eq!(
            shape(&second),
            [(Table::Holding, 0, 1), (Table::Holding, 1, 8)]
        );
        assert!(cuts.split(&m, &second[1]));
        let third = plan(&m, &wanted, Limits::default(), &cuts);
        assert_eq!(
            shape(&third),
            [
                (Table::Holding, 0, 1),
                (Table::Holding, 1, 2),
                (Table::Holding, 8, 1)
            ]
        );
        assert!(!cuts.split(&m, &third[2]), "a single point cannot be split");
        // Points sharing an address (bits of one register) plan fine with cuts around.
        let bits = parse_map(
            &json!({"name": "b", "points": {
                "x": {"table": "holding", "address": 4, "type": "bit", "bit": 0},
                "y": {"table": "holding", "address": 4, "type": "bit", "bit": 1},
                "z": {"table": "holding", "address": 5, "type": "u16"}
            }}),
            "m",
        )
        .unwrap();
        let mut c = Cuts::default();
        c.split(&bits, &plan(&bits, &[0, 1, 2], Limits::default(), &c)[0]);
        assert_eq!(
            shape(&plan(&bits, &[0, 1, 2], Limits::default(), &c)),
            [(Table::Holding, 4, 1), (Table::Holding, 5, 1)]
        );
        assert_eq!(cuts.len(), 2);
    }
}
