//! edgeHub routes of the manifest form, pure:
//! `FROM /messages/modules/X/outputs/Y [WHERE …] INTO BrokeredEndpoint("/modules/Z/inputs/W")`
//! or `INTO $upstream`. Sources match as case-insensitive prefixes, as in edgeHub.
//! `WHERE` conditions are accepted but not evaluated (every message matches).

/// Where a route sends messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// IoT Hub.
    Upstream,
    /// Another module's input.
    ModuleInput {
        /// Target module.
        module: String,
        /// Its input.
        input: String,
    },
}

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Normalised source prefix (lowercase, trailing `/`).
    source: String,
    /// The sink.
    pub sink: Sink,
    /// The condition text, if any (not evaluated).
    pub condition: Option<String>,
}

/// A route could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The route '{route}' is invalid: {reason}")]
pub struct RouteError {
    route: String,
    reason: &'static str,
}

impl std::str::FromStr for Route {
    type Err = RouteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| RouteError {
            route: text.into(),
            reason,
        };
        let t = text.trim();
        let rest = strip_keyword(t, "FROM").ok_or(err("it must start with FROM"))?;
        let into_at = find_keyword(rest, "INTO").ok_or(err("it has no INTO"))?;
        let (source_part, sink_part) = (&rest[..into_at], rest[into_at + 4..].trim());
        let (source, condition) = match find_keyword(source_part, "WHERE") {
            Some(w) => (
                source_part[..w].trim(),
                Some(source_part[w + 5..].trim().to_owned()),
            ),
            None => (source_part.trim(), None),
        };
        if !source.starts_with('/') {
            return Err(err("the source must start with /"));
        }
        let sink = if sink_part.eq_ignore_ascii_case("$upstream") {
            Sink::Upstream
        } else {
            let inner = sink_part
                .strip_prefix("BrokeredEndpoint(")
                .and_then(|s| s.strip_suffix(')'))
                .ok_or(err(
                    "the sink must be $upstream or BrokeredEndpoint(\"/modules/M/inputs/I\")",
                ))?
                .trim()
                .trim_matches('"');
            let parts: Vec<&str> = inner.trim_matches('/').split('/').collect();
            match parts.as_slice() {
                ["modules", module, "inputs", input] => Sink::ModuleInput {
                    module: (*module).into(),
                    input: (*input).into(),
                },
                _ => return Err(err("the endpoint must be /modules/M/inputs/I")),
            }
        };
        let mut source = source
            .trim_end_matches('*')
            .trim_end_matches('/')
            .to_ascii_lowercase();
        source.push('/');
        Ok(Route {
            source,
            sink,
            condition,
        })
    }
}

fn strip_keyword<'a>(text: &'a str, keyword: &str) -> Option<&'a str> {
    let head = text.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &text[keyword.len()..])
}

fn find_keyword(text: &str, keyword: &str) -> Option<usize> {
    let upper = text.to_ascii_uppercase();
    let pattern = format!(" {keyword} ");
    upper.find(&pattern).map(|i| i + 1)
}

/// The source path of a message: `/messages/modules/{m}/outputs/{o}/`, `/messages/modules/{m}/`
/// or `/messages/` for devices.
pub fn message_source(module_id: Option<&str>, output: Option<&str>) -> String {
    match (module_id, output) {
        (Some(m), Some(o)) => format!("/messages/modules/{m}/outputs/{o}/"),
        (Some(m), None) => format!("/messages/modules/{m}/"),
        (None, _) => "/messages/".into(),
    }
}

impl Route {
    /// Whether a message from `source` (see [`message_source`]) takes this route.
    pub fn matches(&self, source: &str) -> bool {
        self.source == "/" || source.to_ascii_lowercase().starts_with(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches_manifest_routes() {
        let r: Route = r#"FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filtermodule/inputs/input1")"#
            .parse()
            .unwrap();
        assert_eq!(
            r.sink,
            Sink::ModuleInput {
                module: "filtermodule".into(),
                input: "input1".into()
            }
        );
        assert!(r.matches(&message_source(
            Some("TempSensor"),
            Some("temperatureOutput")
        )));
        assert!(!r.matches(&message_source(Some("tempSensor"), Some("other"))));
        let up: Route = "FROM /messages/modules/filtermodule/outputs/* INTO $upstream"
            .parse()
            .unwrap();
        assert!(up.matches(&message_source(Some("filtermodule"), Some("output1"))));
        assert!(!up.matches(&message_source(Some("filtermodule"), None)));
        let all: Route =
            "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream"
                .parse()
                .unwrap();
        assert!(all.matches("/messages/"));
        assert_eq!(
            all.condition.as_deref(),
            Some("NOT IS_DEFINED($connectionModuleId)")
        );
        let star: Route = "FROM /* INTO $upstream".parse().unwrap();
        assert!(star.matches("/messages/modules/x/"));
    }

    #[test]
    fn rejects_bad_routes() {
        for bad in [
            "",
            "SELECT x",
            "FROM /a",
            "FROM a INTO $upstream",
            "FROM /a INTO BrokeredEndpoint(\"/x\")",
            "FROM /a INTO somewhere",
        ] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }
}
