//! The requests waiting for one bus, served in deadline order: each carries the time its
//! poll was due (a method call: the time it was made), so when the line is the
//! bottleneck the device that has waited longest goes next, whatever its unit id, and
//! a new request never overtakes an older one.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tokio::sync::mpsc;
use tokio::time::Instant;

tokio::task_local! {
    /// When the poll now running on this task was due (set by the poller).
    pub static POLL_DUE: Instant;
}

/// The deadline of a request made now from this task.
pub(crate) fn current_due() -> Instant {
    POLL_DUE.try_with(|d| *d).unwrap_or_else(|_| Instant::now())
}

struct Entry<T> {
    due: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Earliest deadline first; equal deadlines in arrival order.
pub(crate) struct DeadlineQueue<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
}

impl<T> Default for DeadlineQueue<T> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> DeadlineQueue<T> {
    /// Adds an item due at `due`.
    pub(crate) fn push(&mut self, due: Instant, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            due,
            seq: self.seq,
            item,
        }));
    }

    /// The most urgent item.
    pub(crate) fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|Reverse(e)| e.item)
    }

    /// Takes everything already sent on `rx`, waiting for one item if the queue is
    /// empty, and returns the most urgent. `None` when the channel closed and nothing is
    /// left.
    pub(crate) async fn next(
        &mut self,
        rx: &mut mpsc::Receiver<T>,
        due: impl Fn(&T) -> Instant,
    ) -> Option<T> {
        if self.heap.is_empty() {
            let item = rx.recv().await?;
            self.push(due(&item), item);
        }
        while let Ok(item) = rx.try_recv() {
            self.push(due(&item), item);
        }
        self.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn earliest_deadline_first_then_arrival_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (tx, mut rx) = mpsc::channel(16);
        for (name, due) in [("late", 30), ("first", 0), ("tie-a", 10), ("tie-b", 10)] {
            tx.send((name, t0 + ms(due))).await.unwrap();
        }
        let mut q = DeadlineQueue::default();
        let mut order = Vec::new();
        order.push(q.next(&mut rx, |j| j.1).await.unwrap().0);
        // Something more urgent arriving meanwhile goes ahead of the queued ones.
        tx.send(("urgent", t0)).await.unwrap();
        drop(tx);
        while let Some((name, _)) = q.next(&mut rx, |j| j.1).await {
            order.push(name);
        }
        assert_eq!(order, ["first", "urgent", "tie-a", "tie-b", "late"]);
    }

    #[tokio::test]
    async fn the_poll_deadline_travels_with_the_task() {
        let t = Instant::now() - Duration::from_secs(3);
        assert_eq!(POLL_DUE.scope(t, async { current_due() }).await, t);
        assert!(current_due() > t);
    }
}
