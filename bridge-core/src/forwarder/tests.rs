use super::*;
use crate::spool::SpoolOptions;
use crate::upstream::{LinkEnd, link};

fn msg(n: u32) -> Message {
    Message::json("telemetry", &serde_json::json!({ "n": n }))
}

async fn next(end: &mut LinkEnd) -> Outbound {
    tokio::time::timeout(Duration::from_secs(5), end.rx.recv())
        .await
        .expect("timed out")
        .expect("closed")
}

fn fast() -> ForwarderOptions {
    ForwarderOptions {
        window: 4,
        sync_interval: Duration::from_millis(20),
        drain_timeout: Duration::from_millis(300),
        ..ForwarderOptions::default()
    }
}

#[tokio::test]
async fn releases_only_acknowledged_messages_and_resends_after_a_drop() {
    let (link, mut end) = link(16);
    let shutdown = CancellationToken::new();
    let (sender, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        fast(),
        shutdown.clone(),
    );
    for n in 0..3 {
        sender.send(msg(n)).await.unwrap();
    }
    end.emit(LinkEvent::Up);
    let first: Vec<_> = [
        next(&mut end).await,
        next(&mut end).await,
        next(&mut end).await,
    ]
    .into_iter()
    .map(|o| o.seq)
    .collect();
    end.emit(LinkEvent::Acked(first[0]));
    // Connection drops with two unacknowledged: both come again after Up.
    end.emit(LinkEvent::Down);
    end.emit(LinkEvent::Up);
    let again: Vec<_> = [next(&mut end).await, next(&mut end).await]
        .into_iter()
        .map(|o| o.seq)
        .collect();
    assert_eq!(again, first[1..]);
    for seq in again {
        end.emit(LinkEvent::Acked(seq));
    }
    shutdown.cancel();
    let stats = fwd.task.await.unwrap();
    assert_eq!(stats.pending, 0);
}

#[tokio::test]
async fn window_bounds_messages_in_flight() {
    let (link, mut end) = link(16);
    let shutdown = CancellationToken::new();
    let (sender, _fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        fast(),
        shutdown.clone(),
    );
    end.emit(LinkEvent::Up);
    for n in 0..10 {
        sender.send(msg(n)).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next(&mut end).await.seq);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), end.rx.recv())
            .await
            .is_err(),
        "more than the window in flight"
    );
    end.emit(LinkEvent::Acked(got[0]));
    assert_eq!(next(&mut end).await.seq, got[3] + 1);
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_while_offline_keeps_everything_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        dir: Some(dir.path().to_owned()),
        max_bytes: 1 << 20,
    };
    let (link, _end) = link(16);
    let shutdown = CancellationToken::new();
    let (sender, fwd) = spawn_forwarder(
        Spool::open(&options).unwrap(),
        link,
        fast(),
        shutdown.clone(),
    );
    for n in 0..5 {
        sender.send(msg(n)).await.unwrap();
    }
    shutdown.cancel();
    assert_eq!(fwd.task.await.unwrap().pending, 5);
    assert!(
        sender.send(msg(9)).await.is_err(),
        "the forwarder takes nothing after shutdown"
    );
    let spool = Spool::open(&options).unwrap();
    assert_eq!(spool.stats().recovered, 5);
}

#[tokio::test]
async fn an_oversized_message_is_dropped_and_counted_and_the_rest_flow() {
    let (link, mut end) = link(16);
    let shutdown = CancellationToken::new();
    let options = ForwarderOptions {
        max_message_bytes: 1000,
        ..fast()
    };
    let (sender, fwd) = spawn_forwarder(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        options,
        shutdown.clone(),
    );
    end.emit(LinkEvent::Up);
    sender.send(msg(1)).await.unwrap();
    let huge = Message::json("telemetry", &serde_json::json!({"x": "y".repeat(5000)}));
    sender.send(huge).await.unwrap();
    sender.send(msg(2)).await.unwrap();
    let bodies: Vec<Vec<u8>> = [next(&mut end).await, next(&mut end).await]
        .into_iter()
        .map(|o| o.message.body.clone())
        .collect();
    assert_eq!(bodies, [msg(1).body, msg(2).body]);
    shutdown.cancel();
    let stats = fwd.task.await.unwrap();
    assert_eq!(stats.oversized, 1);
}

#[tokio::test]
async fn every_burst_is_written_before_the_next_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        dir: Some(dir.path().to_owned()),
        max_bytes: 1 << 20,
    };
    let (link, _end) = link(16);
    let shutdown = CancellationToken::new();
    // No periodic sync within the test: only the per-burst write can put data on disk.
    let fwd_options = ForwarderOptions {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        ..fast()
    };
    let (sender, _fwd) = spawn_forwarder(
        Spool::open(&options).unwrap(),
        link,
        fwd_options,
        shutdown.clone(),
    );
    for n in 0..20 {
        sender.send(msg(n)).await.unwrap();
    }
    // Let the forwarder take the burst, then read the directory as a restart would.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
    }
    let spool = Spool::open(&SpoolOptions {
        dir: Some(copy.path().to_owned()),
        max_bytes: 1 << 20,
    })
    .unwrap();
    assert_eq!(spool.stats().recovered, 20);
    shutdown.cancel();
}

/// A forwarder watched by a watchdog of its own (not the process's).
fn watched(
    options: ForwarderOptions,
) -> (
    &'static crate::watchdog::Watchdog,
    TelemetrySender,
    LinkEnd,
    CancellationToken,
) {
    let wd: &'static crate::watchdog::Watchdog =
        Box::leak(Box::new(crate::watchdog::Watchdog::default()));
    let (link, end) = link(16);
    let shutdown = CancellationToken::new();
    let (sender, _fwd) = spawn_watched(
        Spool::open(&SpoolOptions::default()).unwrap(),
        link,
        options,
        shutdown.clone(),
        wd.heartbeat("forwarder", Policy::Exit),
    );
    (wd, sender, end, shutdown)
}

#[tokio::test(start_paused = true)]
async fn a_down_upstream_or_an_empty_spool_is_not_a_stall() {
    let (wd, sender, mut end, _stop) = watched(ForwarderOptions {
        stall_limit: Duration::from_secs(10),
        ..fast()
    });
    for n in 0..5 {
        sender.send(msg(n)).await.unwrap();
    }
    // Messages wait, the upstream is down: an hour is not a stall.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(wd.check(tokio::time::Instant::now()), []);
    end.emit(LinkEvent::Up);
    for _ in 0..4 {
        let o = next(&mut end).await;
        end.emit(LinkEvent::Acked(o.seq));
    }
    let o = next(&mut end).await;
    end.emit(LinkEvent::Acked(o.seq));
    // Up with nothing to send: idle, however long.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(wd.check(tokio::time::Instant::now()), []);
}

#[tokio::test(start_paused = true)]
async fn owed_messages_that_never_move_on_a_connected_upstream_are_a_stall() {
    let (wd, sender, mut end, _stop) = watched(ForwarderOptions {
        stall_limit: Duration::from_secs(10),
        ..fast()
    });
    end.emit(LinkEvent::Up);
    for n in 0..6 {
        sender.send(msg(n)).await.unwrap();
    }
    // Acknowledgements keep it alive past the limit.
    for _ in 0..2 {
        let o = next(&mut end).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        end.emit(LinkEvent::Acked(o.seq));
        tokio::task::yield_now().await;
        assert_eq!(wd.check(tokio::time::Instant::now()), []);
    }
    // None for longer than the limit while connected with messages owed.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let events = wd.check(tokio::time::Instant::now());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].task, "forwarder");
    assert!(!events[0].restarted, "the forwarder owns the spool: exit");
    assert!(
        events[0]
            .reason
            .starts_with("step 'owed messages sent or acknowledged' overran"),
        "{events:?}"
    );
}
