//! Prometheus metrics for the IoT Edge metrics-collector (or any Prometheus scraper):
//! `GET /metrics` in the text exposition format, values collected at scrape time.
//!
//! [`Exposition`] renders (pure); [`serve`] is the small HTTP shell around it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A scrape being written: `# HELP`/`# TYPE` once per metric name, then samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
    declared: HashSet<String>,
}

impl Exposition {
    /// Adds a sample. Samples of one metric must be added together.
    pub fn sample(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        if self.declared.insert(name.to_owned()) {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            let help = help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
        }
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{k}=\"{v}\"");
            }
            self.text.push('}');
        }
        if value.is_finite() {
            let _ = writeln!(self.text, " {value}");
        } else if value.is_nan() {
            self.text.push_str(" NaN\n");
        } else {
            self.text
                .push_str(if value > 0.0 { " +Inf\n" } else { " -Inf\n" });
        }
    }

    /// The exposition text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Something that adds samples at scrape time.
pub type Collector = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

/// Serves `GET /metrics` on `addr` until `shutdown`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    collector: Collector,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(address = %bound, "Serving Prometheus metrics at /metrics.");
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "Metrics listener error.");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let collector = collector.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &collector).await {
                    debug!(%peer, error = %e, "Metrics request failed.");
                }
            });
        }
    });
    Ok(bound)
}

/// One request: `GET /metrics` gets the exposition, anything else 404 or 400.
async fn answer(mut stream: TcpStream, collector: &Collector) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "slow request"))??;
    let line = request.split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (status, body) = match (parts.next(), parts.next()) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let mut out = Exposition::default();
            collector(&mut out);
            ("200 OK", out.finish())
        }
        (Some(b"GET"), Some(_)) => ("404 Not Found", "Try /metrics.\n".to_owned()),
        _ => ("400 Bad Request", "GET /metrics\n".to_owned()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_labels_and_escapes() {
        let mut e = Exposition::default();
        e.sample("up", Kind::Gauge, "Module running.", &[], 1.0);
        e.sample(
            "polls_total",
            Kind::Counter,
            "Polls.",
            &[("device", "a\"b\\c\nd")],
            3.0,
        );
        e.sample(
            "polls_total",
            Kind::Counter,
            "Polls.",
            &[("device", "x")],
            4.5,
        );
        e.sample("weird", Kind::Gauge, "Odd values.", &[], f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP up Module running.\n# TYPE up gauge\nup 1\n\
             # HELP polls_total Polls.\n# TYPE polls_total counter\n\
             polls_total{device=\"a\\\"b\\\\c\\nd\"} 3\npolls_total{device=\"x\"} 4.5\n\
             # HELP weird Odd values.\n# TYPE weird gauge\nweird NaN\n"
        );
    }

    #[tokio::test]
    async fn serves_metrics_404_and_400() {
        let stop = CancellationToken::new();
        let collector: Collector =
            Arc::new(|e: &mut Exposition| e.sample("up", Kind::Gauge, "Up.", &[], 1.0));
        let addr = serve("127.0.0.1:0".parse().unwrap(), collector, stop.clone())
            .await
            .unwrap();
        let get = |req: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.ends_with("\r\n\r\n# HELP up Up.\n# TYPE up gauge\nup 1\n"),
            "{ok}"
        );
        assert!(
            get("GET / HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get("\u{1}\u{2}garbage\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 400")
        );
        stop.cancel();
    }
}
