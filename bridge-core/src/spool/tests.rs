use super::*;
use std::fs;

fn msg(n: u32) -> Message {
    Message::json("telemetry", &serde_json::json!({ "n": n })).for_device("d1")
}

fn body_n(m: &Message) -> u64 {
    serde_json::from_slice::<serde_json::Value>(&m.body).unwrap()["n"]
        .as_u64()
        .unwrap()
}

fn disk(dir: &std::path::Path, max_bytes: u64) -> SpoolOptions {
    SpoolOptions {
        dir: Some(dir.to_owned()),
        max_bytes,
    }
}

#[test]
fn out_of_order_acks_release_only_the_contiguous_prefix() {
    let mut s = Spool::open(&SpoolOptions::default()).unwrap();
    let seqs: Vec<_> = (0..4).map(|n| s.push(msg(n)).unwrap()).collect();
    s.ack(seqs[1]);
    s.ack(seqs[2]);
    assert_eq!(s.stats().pending, 4);
    assert_eq!(s.next_from(0).unwrap().0, seqs[0]);
    assert_eq!(
        s.next_from(seqs[0] + 1).unwrap().0,
        seqs[3],
        "acked entries are skipped"
    );
    s.ack(seqs[0]);
    assert_eq!(s.stats().pending, 1);
    s.ack(seqs[0]);
    s.ack(999);
    assert_eq!(s.first_seq(), Some(seqs[3]));
}

#[test]
fn bound_drops_oldest_and_counts() {
    let one = msg(0).size() as u64;
    let mut s = Spool::open(&SpoolOptions {
        dir: None,
        max_bytes: one * 3,
    })
    .unwrap();
    for n in 0..10 {
        s.push(msg(n)).unwrap();
    }
    let stats = s.stats();
    assert_eq!(stats.pending, 3);
    assert_eq!(stats.dropped, 7);
    assert_eq!(body_n(&s.next_from(0).unwrap().1), 7, "the newest survive");
}

#[test]
fn restart_recovers_unacked_messages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        for n in 0..5 {
            s.push(msg(n)).unwrap();
        }
        s.ack(1);
        s.ack(2);
        s.sync(true).unwrap();
    }
    let mut s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(s.stats().recovered, 3);
    let got: Vec<_> = std::iter::successors(s.next_from(0), |(seq, _)| s.next_from(seq + 1))
        .map(|(_, m)| body_n(&m))
        .collect();
    assert_eq!(got, [2, 3, 4]);
    let seq = s.push(msg(5)).unwrap();
    assert_eq!(seq, 6, "sequence numbers continue after a restart");
}

#[test]
fn torn_tail_and_garbage_are_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
        for n in 0..3 {
            s.push(msg(n)).unwrap();
        }
        s.sync(true).unwrap();
    }
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .unwrap()
        .path();
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes.truncate(len - 5); // torn last record
    fs::write(&seg, &bytes).unwrap();
    fs::write(
        dir.path().join("seg-00000000000000000099.log"),
        b"\xA5garbage that is not a record",
    )
    .unwrap();
    fs::write(dir.path().join("watermark"), b"not a number").unwrap();
    let s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    let stats = s.stats();
    assert_eq!(stats.recovered, 2);
    assert_eq!(stats.corrupt, 2);
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&disk(dir.path(), 1 << 30)).unwrap();
    // Enough data for several 4 MiB segments.
    let big = Message {
        body: vec![b'x'; 100_000],
        ..Message::default()
    };
    let seqs: Vec<_> = (0..130).map(|_| s.push(big.clone()).unwrap()).collect();
    s.sync(true).unwrap();
    let count = || {
        fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .count()
    };
    assert!(count() >= 3);
    for seq in seqs {
        s.ack(seq);
    }
    s.sync(true).unwrap();
    assert_eq!(count(), 1, "only the segment being written remains");
    drop(s);
    let s = Spool::open(&disk(dir.path(), 1 << 30)).unwrap();
    assert!(s.is_empty());
}

fn pending_bodies(s: &Spool) -> Vec<u64> {
    std::iter::successors(s.next_from(0), |(seq, _)| s.next_from(seq + 1))
        .map(|(_, m)| body_n(&m))
        .collect()
}

#[test]
fn a_flushed_spool_survives_a_killed_process_without_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    for n in 0..50 {
        s.push(msg(n)).unwrap();
    }
    s.flush().unwrap();
    // A SIGKILL runs no destructor and no sync: forget the spool entirely.
    std::mem::forget(s);
    let s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(pending_bodies(&s), (0..50).collect::<Vec<_>>());
}

#[test]
fn a_removed_directory_keeps_messages_in_memory_and_is_rewritten_when_possible() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool");
    let mut s = Spool::open(&disk(&dir, 1 << 20)).unwrap();
    for n in 0..3 {
        s.push(msg(n)).unwrap();
    }
    s.sync(true).unwrap();
    fs::remove_dir_all(&dir).unwrap();
    // A file in its place: the directory cannot be recreated for a while.
    fs::write(&dir, b"not a directory").unwrap();
    // Writes to the unlinked segment succeed; the periodic sync notices.
    for n in 3..6 {
        s.push(msg(n)).unwrap();
    }
    assert!(s.sync(true).is_err());
    assert_eq!(s.stats().error, Some(DiskFault::Missing));
    for n in 6..8 {
        s.push(msg(n)).unwrap();
    }
    assert!(s.sync(true).is_err(), "still not writable");
    assert!(s.stats().error.is_some());
    assert!(s.stats().write_failures >= 2);
    assert!(s.disk_error().is_some());
    s.ack(s.first_seq().unwrap());
    assert_eq!(pending_bodies(&s), (1..8).collect::<Vec<_>>());
    // The disk recovers: everything waiting goes to disk again.
    fs::remove_file(&dir).unwrap();
    s.sync(true).unwrap();
    assert_eq!(s.stats().error, None);
    s.push(msg(8)).unwrap();
    s.flush().unwrap();
    std::mem::forget(s);
    let s = Spool::open(&disk(&dir, 1 << 20)).unwrap();
    assert_eq!(pending_bodies(&s), (1..9).collect::<Vec<_>>());
}

#[test]
fn recovery_reads_a_rewritten_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = SegmentLog::open(dir.path()).unwrap();
    let m: Vec<Message> = (0..5).map(msg).collect();
    for seq in 1..=3 {
        log.append(seq, &m[seq as usize]).unwrap();
    }
    log.flush().unwrap();
    // As after a failed write: 2 and 3 are written again into a new segment with 4.
    log.rewrite((2..=4).map(|seq| (seq, &m[seq as usize])))
        .unwrap();
    drop(log);
    let s = Spool::open(&disk(dir.path(), 1 << 20)).unwrap();
    assert_eq!(pending_bodies(&s), [1, 2, 3, 4]);
    assert_eq!(s.stats().corrupt, 0);
}

#[test]
fn an_unusable_directory_at_start_is_not_fatal_and_is_used_once_it_works() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool");
    fs::write(&dir, b"a file where the directory should be").unwrap();
    let mut s = Spool::open(&disk(&dir, 1 << 20)).unwrap();
    assert!(s.stats().error.is_some());
    for n in 0..3 {
        s.push(msg(n)).unwrap();
    }
    assert!(s.sync(true).is_err());
    fs::remove_file(&dir).unwrap();
    s.sync(true).unwrap();
    assert_eq!(s.stats().error, None);
    std::mem::forget(s);
    let s = Spool::open(&disk(&dir, 1 << 20)).unwrap();
    assert_eq!(pending_bodies(&s), [0, 1, 2]);
}
