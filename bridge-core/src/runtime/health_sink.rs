//! Routes `deviceHealth` entries of reported patches through a [`HealthBoard`], so the
//! module twin gets a summary of large installations and calm updates of flapping
//! devices, whichever protocol reports them.

use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::health_board::{BoardLimits, HealthBoard};
use crate::hub::HubSession;

/// Sender side; cheap to clone with the [`Reporter`](super::Reporter).
#[derive(Debug, Clone)]
pub(crate) struct HealthSink {
    tx: mpsc::UnboundedSender<(String, Value)>,
}

impl HealthSink {
    /// Starts the board's task; it ends when the last sink is dropped.
    pub(crate) fn spawn(session: HubSession) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(rx, session, HealthBoard::new(BoardLimits::default())));
        Self { tx }
    }

    /// Takes the `deviceHealth` entries out of `patch`; returns what is left to report.
    pub(crate) fn intercept(&self, mut patch: Value) -> Option<Value> {
        let Some(map) = patch.as_object_mut() else {
            return Some(patch);
        };
        if let Some(Value::Object(health)) = map.remove("deviceHealth") {
            for (id, detail) in health {
                let _ignored = self.tx.send((id, detail));
            }
        }
        (!map.is_empty()).then_some(patch)
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<(String, Value)>,
    session: HubSession,
    mut board: HealthBoard,
) {
    loop {
        let due = board.next_due();
        tokio::select! {
            received = rx.recv() => match received {
                Some((id, detail)) => {
                    board.update(&id, detail);
                    while let Ok((id, detail)) = rx.try_recv() {
                        board.update(&id, detail);
                    }
                }
                None => return,
            },
            () = sleep_until(due) => {}
        }
        if let Some(patch) = board.take_patch(Instant::now()) {
            session.report(patch);
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
