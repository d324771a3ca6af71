//! The forwarder: the only task that touches both the spool and the upstream.
//!
//! Producers hand messages to a [`TelemetrySender`]; each goes into the spool first and
//! leaves it only when the upstream reports it delivered. A window bounds how many are
//! in flight. When the upstream goes down, everything unacknowledged is sent again after
//! it comes back up. On shutdown the forwarder stops taking new work, waits (bounded)
//! for the spool to drain, and syncs what is left to disk for the next start.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::link::{LinkEvent, Outbound, Upstream};
use crate::message::Message;
use crate::spool::{Spool, SpoolStats};

/// Forwarder tunables.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// Messages in flight at once.
    pub window: usize,
    /// How often the spool is fsynced and stats published.
    pub sync_interval: Duration,
    /// How long shutdown waits for the spool to drain.
    pub drain_timeout: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        Self {
            window: 64,
            sync_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The forwarder has stopped (shutdown); the message was not taken.
#[derive(Debug, thiserror::Error)]
#[error("The telemetry forwarder has stopped.")]
pub struct ForwarderStopped(pub Message);

/// Cheap handle producers use to send telemetry.
#[derive(Debug, Clone)]
pub struct TelemetrySender {
    tx: mpsc::Sender<Message>,
}

impl TelemetrySender {
    /// Queues a message for the spool (waits if the forwarder is momentarily busy).
    pub async fn send(&self, message: Message) -> Result<(), ForwarderStopped> {
        self.tx
            .send(message)
            .await
            .map_err(|e| ForwarderStopped(e.0))
    }
}

/// The running forwarder.
#[derive(Debug)]
pub struct Forwarder {
    /// Spool counters, refreshed every sync interval.
    pub stats: watch::Receiver<SpoolStats>,
    /// Ends with the final counters.
    pub task: JoinHandle<SpoolStats>,
}

/// Starts the forwarder task.
pub fn spawn_forwarder<U: Upstream + 'static>(
    spool: Spool,
    upstream: U,
    options: ForwarderOptions,
    shutdown: CancellationToken,
) -> (TelemetrySender, Forwarder) {
    let (tx, rx) = mpsc::channel(4096);
    let (stats_tx, stats) = watch::channel(spool.stats());
    let task = tokio::spawn(run(spool, upstream, rx, options, shutdown, stats_tx));
    (TelemetrySender { tx }, Forwarder { stats, task })
}

async fn run<U: Upstream>(
    mut spool: Spool,
    mut upstream: U,
    mut rx: mpsc::Receiver<Message>,
    options: ForwarderOptions,
    shutdown: CancellationToken,
    stats_tx: watch::Sender<SpoolStats>,
) -> SpoolStats {
    let window = options.window.max(1);
    let (mut up, mut cursor, mut in_flight) = (false, 0u64, 0usize);
    let mut draining: Option<tokio::time::Instant> = None;
    let mut ticker = tokio::time::interval(options.sync_interval);
    let mut reported_drops = 0;
    // Made once, not per message (each fresh future registers a waiter).
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        while up && in_flight < window {
            let Some((seq, message)) = spool.next_from(cursor) else {
                break;
            };
            if upstream.send(Outbound { seq, message }).await.is_err() {
                warn!("The upstream stopped; the spool keeps what is unsent.");
                return finish(spool, &stats_tx);
            }
            cursor = seq + 1;
            in_flight += 1;
        }
        if draining.is_some() && spool.is_empty() {
            break;
        }
        tokio::select! {
            received = rx.recv(), if draining.is_none() => match received {
                Some(message) => push(&mut spool, message),
                None => draining = Some(tokio::time::Instant::now() + options.drain_timeout),
            },
            event = upstream.next_event() => match event {
                Some(LinkEvent::Up) => {
                    up = true;
                    cursor = 0;
                    in_flight = 0;
                }
                Some(LinkEvent::Down) => {
                    up = false;
                    in_flight = 0;
                }
                Some(LinkEvent::Acked(seq)) => {
                    spool.ack(seq);
                    in_flight = in_flight.saturating_sub(1);
                }
                None => {
                    warn!("The upstream stopped; the spool keeps what is unsent.");
                    break;
                }
            },
            _ = ticker.tick() => {
                if let Err(e) = spool.sync() {
                    warn!(error = %e, "Spool sync failed.");
                }
                let stats = spool.stats();
                if stats.dropped > reported_drops {
                    warn!(dropped = stats.dropped - reported_drops, total_dropped = stats.dropped, "Spool full: oldest messages dropped.");
                    reported_drops = stats.dropped;
                }
                let _ignored = stats_tx.send(stats);
            }
            _ = &mut cancelled, if draining.is_none() => {
                // Take everything producers already handed over, then drain.
                while let Ok(message) = rx.try_recv() {
                    push(&mut spool, message);
                }
                rx.close();
                draining = Some(tokio::time::Instant::now() + options.drain_timeout);
            }
            _ = sleep_until_opt(draining) => {
                info!(pending = spool.stats().pending, "Drain timeout: unsent messages stay in the spool.");
                break;
            }
        }
    }
    finish(spool, &stats_tx)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn push(spool: &mut Spool, message: Message) {
    if let Err(e) = spool.push(message) {
        // Disk trouble must not stop telemetry: the message stays in memory.
        warn!(error = %e, "Could not write a message to the spool file.");
    }
}

fn finish(mut spool: Spool, stats_tx: &watch::Sender<SpoolStats>) -> SpoolStats {
    if let Err(e) = spool.sync() {
        warn!(error = %e, "Final spool sync failed.");
    }
    let stats = spool.stats();
    let _ignored = stats_tx.send(stats);
    stats
}

#[cfg(test)]
mod tests;
