//! Device groups: one entry for a fleet of identical devices, so thousands fit in the
//! twin's 32 KB of desired properties. A group names one map, one connection and the
//! device settings once, with a list or range of hosts and/or unit ids and a pattern
//! for the device ids:
//!
//! ```json
//! "groups": {"meters": {"map": "eastron-sdm120", "connection": {"type": "tcp", "port": 502},
//!            "hosts": ["10.0.0.1", "10.0.0.2-10.0.0.40"], "unitIds": "1-2",
//!            "idPattern": "meter-{host}-{unitId}", "pollIntervalMs": 5000}}
//! ```
//!
//! Groups are expanded into ordinary `devices` entries before validation; problems in
//! the expanded devices are reported once, at the group's path. Inline maps (of groups
//! and of devices) are hoisted into `maps`, deduplicated by content, so identical inline
//! maps are parsed once and shared (one `Arc`) instead of copied per device.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use bridge_core::config::{ConfigErrors, ConfigIssue};
use serde_json::{Map, Value};

/// Most devices the groups of one configuration may expand to.
pub const MAX_EXPANDED: usize = 10_000;

/// Where the devices of the expanded document came from, to put error paths back.
#[derive(Debug, Default)]
pub struct Origins {
    /// Generated device id → group name.
    devices: HashMap<String, String>,
    /// Issues found while expanding that do not stop validation.
    pending: Vec<ConfigIssue>,
}

/// Expands `groups` into `devices` and hoists inline maps into `maps`. The result has
/// no `groups` key. Errors in the groups themselves come back at once, with paths.
pub fn expand(doc: &Value) -> Result<(Value, Origins), ConfigErrors> {
    let mut origins = Origins::default();
    let Some(root) = doc.as_object() else {
        return Ok((doc.clone(), origins));
    };
    let mut root = root.clone();
    let mut issues = Vec::new();
    let groups = root.remove("groups");
    let mut devices = match root.remove("devices") {
        None => Map::new(),
        Some(Value::Object(d)) => d,
        Some(other) => {
            // Not ours to judge: put it back for the normal validation to report.
            root.insert("devices".into(), other);
            return Ok((Value::Object(root), origins));
        }
    };
    let mut maps = match root.remove("maps") {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            root.insert("maps".into(), other);
            root.insert("devices".into(), Value::Object(devices));
            return Ok((Value::Object(root), origins));
        }
    };
    let mut hoisted: HashMap<String, String> = HashMap::new();
    // Inline maps of explicit devices.
    for (id, dev) in devices.iter_mut() {
        hoist_map(dev, &format!("devices.{id}.map"), &mut maps, &mut hoisted);
    }
    match groups {
        None | Some(Value::Null) => {}
        Some(Value::Object(groups)) => {
            let mut total = 0usize;
            for (name, group) in &groups {
                let path = format!("groups.{name}");
                let Some(group) = group.as_object() else {
                    issues.push(ConfigIssue::new(&path, "A group is an object."));
                    continue;
                };
                let expanded = match expand_group(name, group, &path) {
                    Ok(e) => e,
                    Err(mut e) => {
                        issues.append(&mut e);
                        continue;
                    }
                };
                total += expanded.len();
                if total > MAX_EXPANDED {
                    issues.push(ConfigIssue::new(
                        &path,
                        format!("The groups expand to more than {MAX_EXPANDED} devices."),
                    ));
                    break;
                }
                for (id, mut dev) in expanded {
                    if devices.contains_key(&id) {
                        let other = origins
                            .devices
                            .get(&id)
                            .map_or_else(|| format!("devices.{id}"), |g| format!("groups.{g}"));
                        issues.push(ConfigIssue::new(
                            format!("{path}.idPattern"),
                            format!("The device id '{id}' is also defined by {other}; ids must be unique."),
                        ));
                        continue;
                    }
                    hoist_map(&mut dev, &format!("{path}.map"), &mut maps, &mut hoisted);
                    origins.devices.insert(id.clone(), name.clone());
                    devices.insert(id, dev);
                }
            }
        }
        Some(_) => issues.push(ConfigIssue::new(
            "groups",
            "groups is an object of device groups by name.",
        )),
    }
    for id in devices.keys() {
        if let Some(ch) = id.chars().find(|c| !twin_key_char(*c)) {
            // Reported with the other validation results (see `Origins::finish`).
            let path = format!("devices.{id}");
            origins.pending.push(ConfigIssue::new(
                path,
                format!("The device id '{id}' contains {ch:?}: ids are twin property names (deviceHealth.<id>), which cannot contain '.', '$', '#' or white space; use '-' instead."),
            ));
        }
    }
    if !issues.is_empty() {
        return Err(ConfigErrors(issues));
    }
    root.insert("devices".into(), Value::Object(devices));
    if !maps.is_empty() {
        root.insert("maps".into(), Value::Object(maps));
    }
    Ok((Value::Object(root), origins))
}

/// Whether `c` may appear in a twin property name (IoT Hub: no control characters,
/// `.`, `$`, `#` or white space).
pub fn twin_key_char(c: char) -> bool {
    !(c.is_control() || c.is_whitespace() || matches!(c, '.' | '$' | '#'))
}

/// Replaces an inline map by a reference to an entry of `maps`, keyed by the path of
/// its first occurrence (a key with dots, which no twin key can be, so no user map is
/// shadowed); identical inline maps share one entry.
fn hoist_map(
    dev: &mut Value,
    path: &str,
    maps: &mut Map<String, Value>,
    hoisted: &mut HashMap<String, String>,
) {
    let Some(map) = dev.get_mut("map") else {
        return;
    };
    if !map.is_object() {
        return;
    }
    let content = map.to_string();
    let key = hoisted.entry(content).or_insert_with(|| {
        maps.insert(path.to_owned(), map.clone());
        path.to_owned()
    });
    *map = Value::String(key.clone());
}

/// Keys a group has besides the device fields it passes on.
pub(crate) const GROUP_KEYS: [&str; 3] = ["hosts", "unitIds", "idPattern"];

fn expand_group(
    name: &str,
    group: &Map<String, Value>,
    path: &str,
) -> Result<Vec<(String, Value)>, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let pattern = match group.get("idPattern") {
        Some(Value::String(p)) => match Pattern::parse(p) {
            Ok(p) => Some(p),
            Err(e) => {
                issues.push(ConfigIssue::new(format!("{path}.idPattern"), e));
                None
            }
        },
        _ => {
            issues.push(ConfigIssue::new(
                format!("{path}.idPattern"),
                "idPattern is required: the device id of each member, e.g. \"meter-{host}-{unitId}\" or \"meter-{n:03}\".",
            ));
            None
        }
    };
    let connection = group.get("connection").and_then(Value::as_object);
    let conn_type = connection
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str);
    let hosts = match group.get("hosts") {
        None => None,
        Some(v) => match parse_hosts(v, &format!("{path}.hosts")) {
            Ok(h) => Some(h),
            Err(e) => {
                issues.push(e);
                None
            }
        },
    };
    if hosts.is_some() {
        if !matches!(conn_type, Some("tcp" | "rtuOverTcp")) {
            issues.push(ConfigIssue::new(
                format!("{path}.hosts"),
                "hosts needs a tcp or rtuOverTcp connection.",
            ));
        }
        if connection.is_some_and(|c| c.contains_key("host")) {
            issues.push(ConfigIssue::new(
                format!("{path}.connection.host"),
                "Give either connection.host or hosts, not both.",
            ));
        }
    }
    let units = match group.get("unitIds") {
        None => None,
        Some(v) => match parse_units(v, &format!("{path}.unitIds")) {
            Ok(u) => Some(u),
            Err(e) => {
                issues.push(e);
                None
            }
        },
    };
    if units.is_some() && group.contains_key("unitId") {
        issues.push(ConfigIssue::new(
            format!("{path}.unitId"),
            "Give either unitId or unitIds, not both.",
        ));
    }
    if hosts.is_none()
        && units.is_none()
        && !group.contains_key("hosts")
        && !group.contains_key("unitIds")
    {
        issues.push(ConfigIssue::new(
            path,
            "A group needs hosts, unitIds or both: the members it stands for.",
        ));
    }
    let Some(pattern) = pattern.filter(|_| issues.is_empty()) else {
        return Err(issues);
    };
    let hosts: Vec<Option<String>> =
        hosts.map_or_else(|| vec![None], |h| h.into_iter().map(Some).collect());
    let units: Vec<Option<u64>> =
        units.map_or_else(|| vec![None], |u| u.into_iter().map(Some).collect());
    if hosts.len().saturating_mul(units.len()) > MAX_EXPANDED {
        return Err(vec![ConfigIssue::new(
            path,
            format!("The group expands to more than {MAX_EXPANDED} devices."),
        )]);
    }
    let mut template = group.clone();
    for k in GROUP_KEYS {
        template.remove(k);
    }
    let mut out = Vec::with_capacity(hosts.len() * units.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut n = 0;
    for host in &hosts {
        for unit in &units {
            n += 1;
            let id = pattern.render(name, host.as_deref(), *unit, n);
            if let Some(first) = seen.insert(id.clone(), n) {
                return Err(vec![ConfigIssue::new(
                    format!("{path}.idPattern"),
                    format!(
                        "The pattern gives members {first} and {n} the same id '{id}'; use {{host}}, {{unitId}} or {{n}}."
                    ),
                )]);
            }
            let mut dev = template.clone();
            if let Some(h) = host
                && let Some(Value::Object(c)) = dev.get_mut("connection")
            {
                c.insert("host".into(), Value::String(h.clone()));
            }
            if let Some(u) = unit {
                dev.insert("unitId".into(), Value::from(*u));
            }
            out.push((id, Value::Object(dev)));
        }
    }
    Ok(out)
}

/// `["10.0.0.1", "10.0.0.2-10.0.0.40", "10.0.1.5-9", "plc.local"]`.
fn parse_hosts(v: &Value, path: &str) -> Result<Vec<String>, ConfigIssue> {
    let list = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => {
            let mut list = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => list.push(s),
                    None => {
                        return Err(ConfigIssue::new(
                            format!("{path}[{i}]"),
                            "A host is a string: a name, an address or an IPv4 range a.b.c.d-a.b.c.e.",
                        ));
                    }
                }
            }
            list
        }
        _ => {
            return Err(ConfigIssue::new(
                path,
                "hosts is a list of names, addresses or IPv4 ranges (a.b.c.d-a.b.c.e).",
            ));
        }
    };
    let mut out = Vec::new();
    for (i, item) in list.into_iter().enumerate() {
        let at = if v.is_array() {
            format!("{path}[{i}]")
        } else {
            path.to_owned()
        };
        match item
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<Ipv4Addr>().ok()?, b)))
        {
            Some((first, last)) => {
                let last: Ipv4Addr = if last.contains('.') {
                    last.parse().map_err(|_| {
                        ConfigIssue::new(
                            &at,
                            format!("'{item}' is not an IPv4 range a.b.c.d-a.b.c.e."),
                        )
                    })?
                } else {
                    let octet: u8 = last.parse().map_err(|_| {
                        ConfigIssue::new(&at, format!("'{item}' is not an IPv4 range a.b.c.d-e."))
                    })?;
                    let [a, b, c, _] = first.octets();
                    Ipv4Addr::new(a, b, c, octet)
                };
                let (lo, hi) = (u32::from(first), u32::from(last));
                if hi < lo {
                    return Err(ConfigIssue::new(
                        &at,
                        format!("The range '{item}' ends before it starts."),
                    ));
                }
                if (hi - lo) as usize >= MAX_EXPANDED {
                    return Err(ConfigIssue::new(
                        &at,
                        format!("The range '{item}' has more than {MAX_EXPANDED} addresses."),
                    ));
                }
                out.extend((lo..=hi).map(|a| Ipv4Addr::from(a).to_string()));
            }
            None if item.is_empty() => {
                return Err(ConfigIssue::new(&at, "A host must not be empty."));
            }
            None => out.push(item.to_owned()),
        }
    }
    Ok(out)
}

/// `"1-32"`, `7`, or `[1, 2, "10-12"]`.
fn parse_units(v: &Value, path: &str) -> Result<Vec<u64>, ConfigIssue> {
    fn one(v: &Value, at: &str, out: &mut Vec<u64>) -> Result<(), ConfigIssue> {
        let bad = || ConfigIssue::new(at, "A unit id is 0-255, or a range \"a-b\".");
        match v {
            Value::Number(n) => out.push(n.as_u64().filter(|u| *u <= 255).ok_or_else(bad)?),
            Value::String(s) => {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                let (a, b): (u64, u64) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b || b > 255 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            _ => return Err(bad()),
        }
        Ok(())
    }
    let mut out = Vec::new();
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                one(item, &format!("{path}[{i}]"), &mut out)?;
            }
        }
        other => one(other, path, &mut out)?,
    }
    if out.is_empty() {
        return Err(ConfigIssue::new(path, "unitIds lists no unit id."));
    }
    Ok(out)
}

/// A parsed `idPattern`.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Group,
    Host,
    Unit,
    N(usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Pattern(Vec<Part>);

impl Pattern {
    /// Placeholders: `{group}`, `{host}` (dots and colons become `-`, so the id can be a
    /// twin key), `{unitId}`, `{n}` (1-based member number) and `{n:03}` (zero-padded).
    fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("Unclosed '{{' in idPattern '{text}'."));
            };
            let name = &rest[open + 1..open + close];
            parts.push(match name {
                "group" => Part::Group,
                "host" => Part::Host,
                "unitId" => Part::Unit,
                "n" => Part::N(0),
                _ => match name.strip_prefix("n:").and_then(|w| w.parse::<usize>().ok()) {
                    Some(w) if w <= 10 => Part::N(w),
                    _ => {
                        return Err(format!(
                            "Unknown placeholder {{{name}}} in idPattern; known: {{group}}, {{host}}, {{unitId}}, {{n}}, {{n:03}}."
                        ));
                    }
                },
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    fn render(&self, group: &str, host: Option<&str>, unit: Option<u64>, n: usize) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Group => out.push_str(group),
                Part::Host => out.extend(
                    host.unwrap_or("")
                        .chars()
                        .map(|c| if c == '.' || c == ':' { '-' } else { c }),
                ),
                Part::Unit => out.push_str(&unit.unwrap_or(1).to_string()),
                Part::N(w) => out.push_str(&format!("{n:0w$}", w = *w)),
            }
        }
        out
    }
}

impl Origins {
    /// Puts paths of expanded devices back on their group (`devices.<id>.x` →
    /// `groups.<g>.x`, an invalid generated id → `groups.<g>.idPattern`) and hoisted
    /// maps back on the device or group that wrote them; drops repeats, so a mistake
    /// in a group of 2,000 is reported once.
    fn rewrite(&self, errors: ConfigErrors) -> ConfigErrors {
        let mut out: Vec<ConfigIssue> = Vec::new();
        for mut issue in errors.0 {
            if let Some(rest) = issue.path.strip_prefix("maps.devices.") {
                issue.path = format!("devices.{rest}");
            } else if let Some(rest) = issue.path.strip_prefix("maps.groups.") {
                issue.path = format!("groups.{rest}");
            } else if let Some(rest) = issue.path.strip_prefix("devices.") {
                // Device ids may contain dots: find the longest generated id that prefixes.
                let found = rest
                    .char_indices()
                    .filter(|(_, c)| *c == '.' || *c == '[')
                    .map(|(i, _)| i)
                    .chain([rest.len()])
                    .filter_map(|i| self.devices.get_key_value(&rest[..i]))
                    .next_back();
                if let Some((id, group)) = found {
                    let tail = &rest[id.len()..];
                    issue.path = if tail.is_empty() {
                        issue.message = format!("Generated id '{id}': {}", issue.message);
                        format!("groups.{group}.idPattern")
                    } else {
                        format!("groups.{group}{tail}")
                    };
                }
            }
            if !out
                .iter()
                .any(|o| o.path == issue.path && o.message == issue.message)
            {
                out.push(issue);
            }
        }
        ConfigErrors(out)
    }

    /// The validation result with the expansion's own findings added, every path put
    /// back on the group or device that was written.
    pub fn finish<T>(self, validated: Result<T, ConfigErrors>) -> Result<T, ConfigErrors> {
        let mut issues = match validated {
            Ok(v) if self.pending.is_empty() => return Ok(v),
            Ok(_) => Vec::new(),
            Err(e) => e.0,
        };
        for p in &self.pending {
            // A device id already refused by the id check needs no second message.
            if !issues.iter().any(|i| i.path == p.path) {
                issues.push(p.clone());
            }
        }
        Err(self.rewrite(ConfigErrors(issues)))
    }

    /// How many devices came from groups.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// No device came from a group.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests;
