//! The mutation engine, pure and deterministic: byte mutations (flips, interesting
//! values, inserts, deletes, truncations, splices, repeated chunks) and, for JSON inputs,
//! structure-aware ones (values replaced by edge cases of every type, keys removed,
//! duplicated or misspelt, objects and arrays nested, numbers at their limits), so
//! mutated configurations get past the JSON parser into the validators.

use serde_json::{Map, Value, json};

/// xorshift64*: fast, seeded, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.bits() % n.max(1) as u64) as usize
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

const INTERESTING: [u8; 12] = [
    0, 1, 2, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x40, b'{', b'"',
];

/// One to eight stacked byte mutations of `input`, bounded to `max_len`.
pub fn mutate_bytes(rng: &mut Rng, input: &[u8], others: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        match rng.below(10) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.bits() as u8;
            }
            3 => {
                let i = rng.below(data.len() + 1);
                data.insert(i, rng.bits() as u8);
            }
            4 if !data.is_empty() => {
                let i = rng.below(data.len());
                let n = 1 + rng.below((data.len() - i).min(16));
                data.drain(i..i + n);
            }
            5 => data.truncate(rng.below(data.len() + 1)),
            6 if !others.is_empty() => {
                // Splice: our head, another input's tail.
                let other = &others[rng.below(others.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if !data.is_empty() => {
                // Repeat a chunk (length fields, repeated records).
                let i = rng.below(data.len());
                let n = 1 + rng.below((data.len() - i).min(32));
                let chunk = data[i..i + n].to_vec();
                for _ in 0..1 + rng.below(4) {
                    data.splice(i..i, chunk.iter().copied());
                }
            }
            8 if data.len() >= 2 => {
                // 16-bit interesting values, both byte orders (lengths, counts).
                let i = rng.below(data.len() - 1);
                let v: u16 = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF][rng.below(9)];
                let b = if rng.one_in(2) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                data[i..i + 2].copy_from_slice(&b);
            }
            _ => {
                let i = rng.below(data.len() + 1);
                let n = rng.below(8);
                for _ in 0..n {
                    data.insert(i, rng.bits() as u8);
                }
            }
        }
    }
    data.truncate(max_len);
    data
}

fn edge_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e308),
        7 => json!(-0.5),
        8 => json!(65535),
        9 => json!(65536),
        10 => json!(""),
        11 => json!("x".repeat(1 + rng.below(300))),
        12 => json!("\u{0}\u{ffff}é/../$%"),
        13 => json!([]),
        14 => json!({}),
        15 => json!([1, "a", null]),
        16 => json!(248),
        17 => json!(127),
        18 => json!("rtu"),
        19 => json!("tcp"),
        20 => json!(4294967296u64),
        _ => json!(rng.bits() as i64 % 100_000),
    }
}

/// A random JSON pointer into `v` (possibly the root).
fn random_pointer(rng: &mut Rng, v: &Value) -> String {
    let mut ptr = String::new();
    let mut at = v;
    for _ in 0..8 {
        if rng.below(3) == 0 {
            break;
        }
        match at {
            Value::Object(m) if !m.is_empty() => {
                let Some((k, child)) = m.iter().nth(rng.below(m.len())) else {
                    break;
                };
                ptr.push('/');
                ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                at = child;
            }
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                ptr.push('/');
                ptr.push_str(&i.to_string());
                at = &a[i];
            }
            _ => break,
        }
    }
    ptr
}

fn walk_mut<'a>(rng: &mut Rng, v: &'a mut Value) -> &'a mut Value {
    let ptr = random_pointer(rng, v);
    if ptr.is_empty() {
        return v;
    }
    v.pointer_mut(&ptr)
        .unwrap_or_else(|| unreachable!("the pointer was made from this document"))
}

/// One to four structure-aware mutations of a JSON document.
pub fn mutate_json(rng: &mut Rng, doc: &Value, donors: &[Value]) -> Value {
    let mut doc = doc.clone();
    for _ in 0..1 + rng.below(4) {
        let target = walk_mut(rng, &mut doc);
        match rng.below(9) {
            0 | 1 => *target = edge_value(rng),
            2 => {
                if let Value::Object(m) = target
                    && !m.is_empty()
                {
                    let k = m
                        .keys()
                        .nth(rng.below(m.len()))
                        .cloned()
                        .unwrap_or_default();
                    m.remove(&k);
                }
            }
            3 => {
                if let Value::Object(m) = target {
                    let name = ["typo", "pollIntervalMS", "unitID", "$version", "", "points"]
                        [rng.below(6)];
                    m.insert(name.to_owned(), edge_value(rng));
                }
            }
            4 => {
                if let Value::Object(m) = target
                    && let Some((k, v)) = m
                        .iter()
                        .nth(rng.below(m.len().max(1)))
                        .map(|(k, v)| (k.clone(), v.clone()))
                {
                    // The same entry under a second name (duplicated devices, points).
                    m.insert(format!("{k}-{}", rng.below(100)), v);
                }
            }
            5 => {
                // Nest: wrap in an array or object.
                let inner = target.take();
                *target = if rng.one_in(2) {
                    Value::Array(vec![inner])
                } else {
                    let mut m = Map::new();
                    m.insert("x".into(), inner);
                    Value::Object(m)
                };
            }
            6 if !donors.is_empty() => {
                // Graft a subtree of another seed (a real map into a device, ...).
                let mut donor = donors[rng.below(donors.len())].clone();
                *target = walk_mut(rng, &mut donor).take();
            }
            7 => {
                if let Value::Number(n) = target {
                    let f = n.as_f64().unwrap_or(0.0);
                    *target = json!([f + 1.0, f - 1.0, f * 1000.0, -f, f / 3.0][rng.below(5)]);
                } else if let Value::String(s) = target {
                    let mut b = s.clone().into_bytes();
                    b = mutate_bytes(rng, &b, &[], 512);
                    *s = String::from_utf8_lossy(&b).into_owned();
                }
            }
            _ => {
                if let Value::Array(a) = target {
                    if rng.one_in(2) {
                        a.clear();
                    } else if let Some(first) = a.first().cloned() {
                        for _ in 0..rng.below(50) {
                            a.push(first.clone());
                        }
                    }
                }
            }
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let seed = b"hello world".to_vec();
        for _ in 0..1000 {
            let x = mutate_bytes(&mut a, &seed, std::slice::from_ref(&seed), 64);
            let y = mutate_bytes(&mut b, &seed, std::slice::from_ref(&seed), 64);
            assert_eq!(x, y);
            assert!(x.len() <= 64);
        }
        let doc = json!({"devices": {"a": {"unitId": 1}}});
        let distinct: std::collections::BTreeSet<String> = (0..200)
            .map(|_| mutate_json(&mut a, &doc, std::slice::from_ref(&doc)).to_string())
            .collect();
        assert!(distinct.len() > 50, "mutations vary: {}", distinct.len());
    }
}
