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
        s.sync().unwrap();
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
        s.sync().unwrap();
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
    s.sync().unwrap();
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
    s.sync().unwrap();
    assert_eq!(count(), 1, "only the segment being written remains");
    drop(s);
    let s = Spool::open(&disk(dir.path(), 1 << 30)).unwrap();
    assert!(s.is_empty());
}
