//! The forwarder: the only task that touches both the spool and the upstream.
//!
//! Producers hand messages to a [`TelemetrySender`]; each goes into the spool first and
//! leaves it only when the upstream reports it delivered. A window bounds how many are
//! in flight. When the upstream goes down, everything unacknowledged is sent again after
//! it comes back up. On shutdown the forwarder stops taking new work, waits (bounded)
//! for the spool to drain, and syncs what is left to disk for the next start.
//!
//! Crash consistency: after every burst of messages taken from producers the spool is
//! flushed (`write(2)`), so a killed process loses at most the burst being taken;
//! `fsync` follows [`FsyncPolicy`] (the power-loss window).
//!
//! Liveness: the forwarder proves progress to the process's watchdog (see its
//! `liveness` module); it owns the spool, so a stall ends the module (`Policy::Exit`) and the
//! next start sends what the spool kept.

mod fsync;
#[doc(hidden)]
pub mod hooks;
mod liveness;
pub use fsync::{FsyncPolicy, FsyncPolicyError};

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::link::{LinkEvent, Outbound, Upstream};
use crate::message::Message;
use crate::spool::{Spool, SpoolStats};
use crate::watchdog::{Heartbeat, Policy, Stall};

/// Forwarder tunables.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// Messages in flight at once.
    pub window: usize,
    /// How often the spool is fsynced and stats published.
    pub sync_interval: Duration,
    /// How long shutdown waits for the spool to drain.
    pub drain_timeout: Duration,
    /// When the spool is fsynced (the interval policy replaces `sync_interval`).
    pub fsync: FsyncPolicy,
    /// Larger messages are dropped with an error and counted, never sent: the hub
    /// would refuse them (edgeHub and IoT Hub: 256 KiB) and close the connection.
    pub max_message_bytes: usize,
    /// While the upstream is up and messages wait for it, one must be sent or
    /// acknowledged at least this often, else the forwarder counts as stalled. Well above
    /// the hub session's keep-alive detection (1.5 × 60 s), so a half-open hub is found
    /// and reconnected by the session, not blamed on the forwarder.
    pub stall_limit: Duration,
    /// The task's name for the watchdog and the reported `liveness`.
    pub name: String,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        Self {
            window: 64,
            sync_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(5),
            fsync: FsyncPolicy::default(),
            max_message_bytes: 256 * 1024,
            stall_limit: Duration::from_secs(180),
            name: "forwarder".into(),
        }
    }
}

/// Messages taken from producers per burst before the spool is flushed.
const BURST: usize = 1024;
/// While the disk fails, how often writing to it is tried again.
const DISK_RETRY: Duration = Duration::from_secs(2);

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
    let stall = crate::watchdog::global().heartbeat(options.name.clone(), Policy::Exit);
    spawn_watched(spool, upstream, options, shutdown, stall)
}

/// [`spawn_forwarder`] proving progress into `stall`'s slot.
fn spawn_watched<U: Upstream + 'static>(
    spool: Spool,
    upstream: U,
    options: ForwarderOptions,
    shutdown: CancellationToken,
    stall: Stall,
) -> (TelemetrySender, Forwarder) {
    let (tx, rx) = mpsc::channel(4096);
    let (stats_tx, stats) = watch::channel(spool.stats());
    let task = tokio::spawn(async move {
        // The slot lives as long as the task: a forwarder that ended is not watched.
        let beat = stall.heartbeat();
        let stats = run(spool, upstream, rx, options, shutdown, stats_tx, &beat).await;
        beat.idle();
        drop(stall);
        stats
    });
    (TelemetrySender { tx }, Forwarder { stats, task })
}

async fn run<U: Upstream>(
    mut spool: Spool,
    mut upstream: U,
    mut rx: mpsc::Receiver<Message>,
    options: ForwarderOptions,
    shutdown: CancellationToken,
    stats_tx: watch::Sender<SpoolStats>,
    beat: &Heartbeat,
) -> SpoolStats {
    let window = options.window.max(1);
    let (mut up, mut cursor, mut in_flight) = (false, 0u64, 0usize);
    let mut draining: Option<tokio::time::Instant> = None;
    let tick = match options.fsync {
        FsyncPolicy::Interval(d) => d.max(Duration::from_millis(1)),
        FsyncPolicy::Batch | FsyncPolicy::Never => options.sync_interval,
    };
    let turn = tick + liveness::TURN_MARGIN;
    let mut progress = liveness::Progress::new(options.stall_limit);
    let (mut moved, mut sent) = (false, 0u64);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_drops = 0;
    let mut disk = DiskWatch::default();
    let mut intake = Intake {
        max_bytes: options.max_message_bytes,
        oversized: 0,
    };
    // Made once, not per message (each fresh future registers a waiter).
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        hooks::turn(sent).await;
        while up && in_flight < window {
            let Some((seq, message)) = spool.next_from(cursor) else {
                break;
            };
            // Waiting for room in the upstream's queue is waiting for the upstream: the
            // stall limit applies, not the turn's.
            beat.beat_step("send upstream", options.stall_limit);
            if upstream.send(Outbound { seq, message }).await.is_err() {
                warn!("The upstream stopped; the spool keeps what is unsent.");
                return finish(spool, &stats_tx);
            }
            cursor = seq + 1;
            in_flight += 1;
            sent += 1;
            moved = true;
        }
        let owed = up && !spool.is_empty();
        let now = tokio::time::Instant::now();
        let left = progress.left(now, owed, std::mem::take(&mut moved));
        let limit = liveness::turn_limit(turn, left);
        beat.beat_step(liveness::step(limit, turn), limit);
        if draining.is_some() && spool.is_empty() {
            break;
        }
        tokio::select! {
            received = rx.recv(), if draining.is_none() => match received {
                Some(message) => {
                    intake.push(&mut spool, message);
                    // Take the rest of the burst, then hand it to the kernel at once.
                    for _ in 1..BURST {
                        match rx.try_recv() {
                            Ok(message) => intake.push(&mut spool, message),
                            Err(_) => break,
                        }
                    }
                    let flushed = if options.fsync == FsyncPolicy::Batch {
                        spool.sync(true)
                    } else {
                        spool.flush()
                    };
                    disk.observe(&spool, flushed.err());
                }
                None => draining = Some(tokio::time::Instant::now() + options.drain_timeout),
            },
            event = upstream.next_event() => match event {
                Some(LinkEvent::Up) => {
                    up = true;
                    moved = true;
                    cursor = 0;
                    in_flight = 0;
                }
                Some(LinkEvent::Down) => {
                    up = false;
                    in_flight = 0;
                }
                Some(LinkEvent::Acked(seq)) => {
                    spool.ack(seq);
                    moved = true;
                    in_flight = in_flight.saturating_sub(1);
                }
                None => {
                    warn!("The upstream stopped; the spool keeps what is unsent.");
                    break;
                }
            },
            _ = ticker.tick() => {
                if disk.may_try() {
                    let synced = spool.sync(options.fsync != FsyncPolicy::Never);
                    disk.observe(&spool, synced.err());
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
                    intake.push(&mut spool, message);
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

/// Takes messages into the spool; refuses those the hub could never accept.
struct Intake {
    max_bytes: usize,
    oversized: u64,
}

impl Intake {
    fn push(&mut self, spool: &mut Spool, message: Message) {
        let size = message.size();
        if size > self.max_bytes {
            // Sent, it would be refused on every reconnect and stall all telemetry.
            self.oversized += 1;
            error!(
                size,
                limit = self.max_bytes,
                device = message.device_id.as_deref().unwrap_or(""),
                output = message.output.as_deref().unwrap_or(""),
                dropped_total = self.oversized,
                "Message larger than the hub accepts: dropped."
            );
            spool.count_rejected();
            return;
        }
        // Disk trouble must not stop telemetry: the message stays in memory either way
        // (the error is logged by `DiskWatch` when the state changes).
        let _in_memory_anyway = spool.push(message);
    }
}

/// Logs disk trouble once when it starts and once when it ends, not per message.
#[derive(Default)]
struct DiskWatch {
    failing: bool,
    last_try: Option<tokio::time::Instant>,
}

impl DiskWatch {
    fn observe(&mut self, spool: &Spool, error: Option<crate::spool::LogError>) {
        let now_failing = spool.stats().error.is_some();
        if now_failing && !self.failing {
            let detail = error.map_or_else(
                || spool.disk_error().unwrap_or("").to_owned(),
                |e| crate::mqtt::error_chain(&e),
            );
            error!(error = %detail, "Spool directory cannot be written: messages are kept in memory and forwarded from there; retrying.");
        } else if !now_failing && self.failing {
            info!("Spool directory writable again: waiting messages written to disk.");
        }
        self.failing = now_failing;
    }

    /// Whether the periodic sync may run now; while the disk fails, at most every
    /// [`DISK_RETRY`] (each try rewrites what waits in memory).
    fn may_try(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self.failing && self.last_try.is_some_and(|t| now < t + DISK_RETRY) {
            return false;
        }
        self.last_try = Some(now);
        true
    }
}

fn finish(mut spool: Spool, stats_tx: &watch::Sender<SpoolStats>) -> SpoolStats {
    if let Err(e) = spool.sync(true) {
        warn!(error = %e, "Final spool sync failed.");
    }
    let stats = spool.stats();
    let _ignored = stats_tx.send(stats);
    stats
}

#[cfg(test)]
mod tests;
