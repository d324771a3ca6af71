//! Liveness: every long-lived task proves progress, and a stalled one is restarted with
//! the reason reported, or, when that cannot heal it, the module exits non-zero so the
//! IoT Edge agent restarts it (the agent ignores container health checks).
//!
//! Two ways to prove progress, both one relaxed atomic operation on the hot path:
//! - a progress counter the task already keeps (an epoch: polls done, jobs done), which
//!   must move within `limit` ([`Watchdog::watch_counter`]);
//! - a [`Heartbeat`] for tasks that may rightly wait forever (a bus with no requests): each
//!   unit of work starts with `beat(limit)` and the task says `idle()` while it waits.
//!
//! A checker ([`Watchdog::run`]) samples every slot each 500 ms; the verdicts are pure
//! functions ([`counter_stalled`], [`RestartBudget`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{error, warn};

/// What to do with a task that stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Its owner restarts it (woken through [`Stall::wait`]); more than `max` restarts
    /// within `window` means restarting does not heal it: the module exits.
    Restart {
        /// Restarts allowed within the window.
        max: usize,
        /// The window.
        window: Duration,
    },
    /// It cannot be restarted in place: the module exits.
    Exit,
}

impl Policy {
    /// Up to 5 restarts in 10 minutes.
    pub const RESTART: Policy = Policy::Restart {
        max: 5,
        window: Duration::from_secs(600),
    };
}

/// Restarts in a sliding window, pure.
#[derive(Debug, Clone, Default)]
pub struct RestartBudget {
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// Whether one more restart at `now` stays within `max` per `window` (and records it).
    pub fn allow(&mut self, now: Instant, max: usize, window: Duration) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= max {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

/// Whether a counter that last moved at `moved_at` has stalled at `now`.
pub fn counter_stalled(moved_at: Instant, now: Instant, limit: Duration) -> bool {
    now.duration_since(moved_at) > limit
}

/// The owner's side of a slot: wakes when the watchdog found the task stalled.
#[derive(Debug, Clone)]
pub struct Stall {
    slot: Arc<Slot>,
}

impl Stall {
    /// Waits until the task is found stalled; returns the reason.
    pub async fn wait(&self) -> String {
        self.slot.stalled.notified().await;
        self.slot
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_reason
            .clone()
    }

    /// A heartbeat into this slot (for heartbeat slots).
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            slot: self.slot.clone(),
        }
    }
}

/// Progress proof of a task that may rightly be idle.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    slot: Arc<Slot>,
}

impl Heartbeat {
    /// A unit of work starts and must be done within `limit`.
    pub fn beat(&self, limit: Duration) {
        let deadline = self.slot.origin.elapsed() + limit;
        self.slot
            .deadline_ms
            .store(deadline.as_millis() as u64 + 1, Ordering::Relaxed);
    }

    /// [`Heartbeat::beat`] naming the unit of work, so a stall's reason says which one
    /// overran (for slots whose every beat names its step: GATT sessions).
    pub fn beat_step(&self, step: &'static str, limit: Duration) {
        *self.slot.step.lock().unwrap_or_else(|p| p.into_inner()) = step;
        self.beat(limit);
    }

    /// The task waits for work that may never come: not a stall.
    pub fn idle(&self) {
        self.slot.deadline_ms.store(0, Ordering::Relaxed);
    }
}

enum Source {
    Counter {
        read: Box<dyn Fn() -> u64 + Send + Sync>,
        limit: Duration,
    },
    Heartbeat,
}

#[derive(Default)]
struct SlotState {
    last_value: u64,
    moved_at: Option<Instant>,
    budget: RestartBudget,
    restarts: u64,
    last_reason: String,
}

struct Slot {
    name: String,
    policy: Policy,
    source: Source,
    origin: Instant,
    deadline_ms: AtomicU64,
    step: Mutex<&'static str>,
    stalled: Notify,
    state: Mutex<SlotState>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("name", &self.name).finish()
    }
}

/// A stall the watchdog acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The task.
    pub task: String,
    /// Why it counts as stalled.
    pub reason: String,
    /// Restarted (`true`) or beyond healing (`false`: the module must exit).
    pub restarted: bool,
}

/// The registry of long-lived tasks.
#[derive(Debug)]
pub struct Watchdog {
    origin: Instant,
    slots: Mutex<Vec<Weak<Slot>>>,
    restarts_total: AtomicU64,
    recent: Mutex<VecDeque<(String, String, String)>>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            slots: Mutex::new(Vec::new()),
            restarts_total: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

/// The process's watchdog.
pub fn global() -> &'static Watchdog {
    static GLOBAL: OnceLock<Watchdog> = OnceLock::new();
    GLOBAL.get_or_init(Watchdog::default)
}

impl Watchdog {
    fn add(&self, name: String, policy: Policy, source: Source) -> Stall {
        let slot = Arc::new(Slot {
            name,
            policy,
            source,
            origin: self.origin,
            deadline_ms: AtomicU64::new(0),
            step: Mutex::new(""),
            stalled: Notify::new(),
            state: Mutex::new(SlotState::default()),
        });
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|w| w.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        Stall { slot }
    }

    /// Watches a counter that must move at least every `limit`. The slot lives as long as
    /// the returned [`Stall`] (drop it when the task ends on purpose).
    pub fn watch_counter(
        &self,
        name: impl Into<String>,
        limit: Duration,
        policy: Policy,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Stall {
        self.add(
            name.into(),
            policy,
            Source::Counter {
                read: Box::new(read),
                limit,
            },
        )
    }

    /// A heartbeat slot (see [`Heartbeat`]); idle until the first beat.
    pub fn heartbeat(&self, name: impl Into<String>, policy: Policy) -> Stall {
        self.add(name.into(), policy, Source::Heartbeat)
    }

    /// Stalls restarted since start.
    pub fn restarts_total(&self) -> u64 {
        self.restarts_total.load(Ordering::Relaxed)
    }

    /// Tasks watched now.
    pub fn tasks(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// The reported `liveness` document: tasks watched, restarts, the last stalls.
    pub fn report(&self) -> Value {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = Map::new();
        for (task, reason, at) in recent.iter() {
            // Twin property names take no '.', '$', '#' or white space (IoT Hub refuses
            // the whole patch otherwise): task names like "bus tcp://10.0.0.5:502" do.
            let key: String = task
                .chars()
                .map(|c| {
                    if c.is_whitespace() || c.is_control() || matches!(c, '.' | '$' | '#') {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            last.insert(key, json!({"task": task, "reason": reason, "at": at}));
        }
        json!({"tasks": self.tasks(), "restarts": self.restarts_total(), "stalls": last})
    }

    /// One pass over every slot at `now`; the stalls acted on.
    pub fn check(&self, now: Instant) -> Vec<Event> {
        let slots: Vec<Arc<Slot>> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.retain(|w| w.strong_count() > 0);
            slots.iter().filter_map(Weak::upgrade).collect()
        };
        let mut events = Vec::new();
        for slot in slots {
            let mut st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            let reason = match &slot.source {
                Source::Counter { read, limit } => {
                    let value = read();
                    let moved_at = *st.moved_at.get_or_insert(now);
                    if value != st.last_value {
                        st.last_value = value;
                        st.moved_at = Some(now);
                        None
                    } else if counter_stalled(moved_at, now, *limit) {
                        // Start counting afresh after acting, so one stall is one event.
                        st.moved_at = Some(now);
                        Some(format!("no progress for {} ms", limit.as_millis()))
                    } else {
                        None
                    }
                }
                Source::Heartbeat => {
                    let deadline = slot.deadline_ms.load(Ordering::Relaxed);
                    let elapsed = now.duration_since(slot.origin).as_millis() as u64;
                    if deadline != 0 && elapsed + 1 > deadline {
                        slot.deadline_ms.store(0, Ordering::Relaxed);
                        let step = *slot.step.lock().unwrap_or_else(|p| p.into_inner());
                        let what = if step.is_empty() {
                            "a unit of work".to_owned()
                        } else {
                            format!("step '{step}'")
                        };
                        Some(format!(
                            "{what} overran its limit by {} ms",
                            elapsed + 1 - deadline
                        ))
                    } else {
                        None
                    }
                }
            };
            let Some(reason) = reason else { continue };
            let restarted = match slot.policy {
                Policy::Restart { max, window } => st.budget.allow(now, max, window),
                Policy::Exit => false,
            };
            st.last_reason = reason.clone();
            if restarted {
                st.restarts += 1;
                self.restarts_total.fetch_add(1, Ordering::Relaxed);
                warn!(task = %slot.name, %reason, "Task stalled; restarting it.");
                slot.stalled.notify_one();
            } else {
                error!(task = %slot.name, %reason, "Task stalled and restarting cannot heal it.");
            }
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.retain(|(t, _, _)| t != &slot.name);
            recent.push_back((
                slot.name.clone(),
                reason.clone(),
                crate::time::rfc3339(std::time::SystemTime::now()),
            ));
            if recent.len() > 20 {
                recent.pop_front();
            }
            events.push(Event {
                task: slot.name.clone(),
                reason,
                restarted,
            });
        }
        events
    }

    /// Checks every 500 ms and passes each event to `on_event`; returns the first stall
    /// that restarting cannot heal (the caller exits non-zero).
    pub async fn run(&self, mut on_event: impl FnMut(&Event)) -> Event {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for event in self.check(Instant::now()) {
                on_event(&event);
                if !event.restarted {
                    return event;
                }
            }
        }
    }
}

/// Exit status of a module that stopped because a task stalled beyond healing.
pub const EXIT_STALLED: i32 = 70;

/// Starts the process's checker once (later calls do nothing): each stall is logged and
/// reported as `liveness` through `reporter`; a stall restarting cannot heal ends the
/// process with [`EXIT_STALLED`] so the IoT Edge agent restarts the module (it ignores
/// container health checks). The runtime starts it for every module.
pub fn spawn_checker(reporter: crate::reporter::Reporter) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        tokio::spawn(async move {
            let wd = global();
            let fatal = wd
                .run(|_| reporter.report(json!({"liveness": wd.report()})))
                .await;
            error!(task = %fatal.task, reason = %fatal.reason, "Exiting: a task stalled beyond healing.");
            // Give the reported `liveness` a moment to leave.
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::process::exit(EXIT_STALLED);
        });
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn budget_slides() {
        let t0 = Instant::now();
        let w = Duration::from_secs(10);
        let mut b = RestartBudget::default();
        assert!(b.allow(t0, 2, w));
        assert!(b.allow(t0 + Duration::from_secs(1), 2, w));
        assert!(!b.allow(t0 + Duration::from_secs(2), 2, w));
        assert!(
            b.allow(t0 + Duration::from_secs(11), 2, w),
            "the first one aged out"
        );
        assert!(!counter_stalled(t0, t0 + w, w));
        assert!(counter_stalled(t0, t0 + w + Duration::from_millis(1), w));
    }

    #[tokio::test]
    async fn counters_heartbeats_restarts_and_exit() {
        let wd = Watchdog::default();
        let polls = Arc::new(AtomicU64::new(0));
        let p = polls.clone();
        let poller = wd.watch_counter(
            "poller a",
            Duration::from_secs(5),
            Policy::Restart {
                max: 1,
                window: Duration::from_secs(600),
            },
            move || p.load(Ordering::Relaxed),
        );
        let bus = wd.heartbeat("bus b", Policy::Exit);
        let hb = bus.heartbeat();
        let t0 = Instant::now();
        assert!(wd.check(t0).is_empty());
        hb.beat(Duration::from_secs(10));
        polls.fetch_add(1, Ordering::Relaxed);
        assert!(
            wd.check(t0 + Duration::from_secs(4)).is_empty(),
            "poller moved"
        );
        hb.idle();
        // The poller has not moved since t0 + 4 s; the idle bus is not stalled.
        let waiter = poller.clone();
        let woken = tokio::spawn(async move { waiter.wait().await });
        tokio::task::yield_now().await;
        let events = wd.check(t0 + Duration::from_secs(20));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].task, "poller a");
        assert!(events[0].restarted);
        assert!(woken.await.unwrap().contains("no progress"));
        assert_eq!(wd.restarts_total(), 1);
        // Stalled again: beyond its budget.
        let events = wd.check(t0 + Duration::from_secs(30));
        assert_eq!(
            events,
            [Event {
                task: "poller a".into(),
                reason: "no progress for 5000 ms".into(),
                restarted: false
            }]
        );
        // A named step that overruns its limit says which.
        let session = wd.heartbeat("gatt s", Policy::RESTART);
        session
            .heartbeat()
            .beat_step("subscribe", Duration::from_secs(1));
        let events = wd.check(Instant::now() + Duration::from_secs(2));
        assert!(
            events.iter().any(|e| e.task == "gatt s"
                && e.restarted
                && e.reason.starts_with("step 'subscribe' overran")),
            "{events:?}"
        );
        drop(session);
        // A heartbeat that overruns its limit: Exit policy.
        hb.beat(Duration::from_secs(1));
        let events = wd.check(Instant::now() + Duration::from_secs(2));
        assert!(events.iter().any(|e| e.task == "bus b" && !e.restarted));
        assert_eq!(wd.report()["restarts"], 2, "the poller's and the session's");
        drop((poller, bus, hb));
        assert_eq!(wd.tasks(), 0, "slots end with their owners");
    }
}
