"""A serial relay with true RS-485 timing, between two pseudo-terminals.

The master (the module) opens one pty, a Modbus RTU server (pymodbus) the other. The
relay models one half-duplex line: every byte occupies the wire for one character time
(bits per character / baud; 11 bits for 8E1 or 8N2, 10 for 8N1) and is delivered when
its last bit would have arrived; the slave's reply starts no earlier than the request's
end plus t3.5 plus a fixed turnaround. It checks the master: a request that starts less
than t3.5 after the end of the previous frame (or while a frame is on the wire) is a
violation. After a warm-up it measures for a window and prints one JSON line:
transactions, per-unit request times (for jitter), violations, the smallest gap seen.

    rtu_relay.py --baud 9600 --bits 11 --turnaround-ms 5 --warmup 3 --seconds 15

Prints {"master": PATH, "server": PATH} first (the pty paths), the figures at the end.
Timing is by the monotonic clock; the relay sleeps in select() (no busy wait), so its own
lateness only slows the line down, never makes the master look early.
"""
import argparse
import collections
import json
import os
import select
import time
import tty


def open_pty():
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, required=True)
    ap.add_argument("--bits", type=int, default=11, help="bits per character on the wire")
    ap.add_argument("--turnaround-ms", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    args = ap.parse_args()
    char = args.bits / args.baud
    t35 = 0.00175 if args.baud > 19200 else 3.5 * char
    turnaround = args.turnaround_ms / 1000.0

    mfd, mslave, mpath = open_pty()  # the module's side
    sfd, sslave, spath = open_pty()  # pymodbus's side
    print(json.dumps({"master": mpath, "server": spath}), flush=True)

    # Scheduled deliveries in wire order: (due, fd, bytes, kind) where kind marks the
    # last byte of a frame ("req_end"/"rep_end") or None.
    out = collections.deque()
    free_at = 0.0  # when the wire is free (scheduled)
    last_end = -1.0  # actual delivery time of the last byte of the last frame
    req_until = 0.0  # scheduled end of the master's current frame
    rep_until = 0.0  # scheduled end of the slave's current frame
    req_end = 0.0  # scheduled end of the last request
    start = time.monotonic()
    w0, w1 = start + args.warmup, start + args.warmup + args.seconds
    stats = {
        "violations": 0,
        "minGapMs": None,
        "requests": 0,
        "replies": 0,
        "lateReplies": 0,
        "collisions": 0,
        "requestTimes": collections.defaultdict(list),
        "replyUnits": collections.Counter(),
        "busyMs": 0.0,
    }

    def schedule(data, fd, t0, kind):
        nonlocal free_at
        t = max(t0, free_at)
        for i, b in enumerate(data):
            t += char
            last = i == len(data) - 1
            out.append((t, fd, bytes([b]), kind if last else None))
        free_at = t
        return t

    while True:
        now = time.monotonic()
        if now >= w1:
            break
        # Deliver what is due.
        while out and out[0][0] <= now:
            due, fd, b, kind = out.popleft()
            os.write(fd, b)
            if kind:
                last_end = time.monotonic()
        timeout = max(0.0, out[0][0] - time.monotonic()) if out else 0.05
        readable, _, _ = select.select([mfd, sfd], [], [], timeout)
        now = time.monotonic()
        in_window = w0 <= now < w1
        if mfd in readable:
            try:
                data = os.read(mfd, 4096)
            except BlockingIOError:
                data = b""
            if data:
                if now >= req_until:  # a new request frame
                    gap = now - last_end
                    if now < free_at:
                        stats["collisions"] += int(in_window)
                    if gap < t35 or now < free_at:
                        stats["violations"] += int(in_window)
                    if in_window:
                        g = gap * 1000
                        stats["minGapMs"] = g if stats["minGapMs"] is None else min(stats["minGapMs"], g)
                        stats["requests"] += 1
                        stats["requestTimes"][data[0]].append(now - start)
                req_until = schedule(data, sfd, now, "req_end")
                req_end = req_until
                if in_window:
                    stats["busyMs"] += len(data) * char * 1000
        if sfd in readable:
            try:
                data = os.read(sfd, 4096)
            except BlockingIOError:
                data = b""
            if data:
                if now >= rep_until:  # a new reply frame
                    earliest = req_end + t35 + turnaround
                    if now > earliest:
                        stats["lateReplies"] += int(in_window)
                    begin = max(now, earliest)
                    if w0 <= begin < w1:
                        stats["replies"] += 1
                        stats["replyUnits"][data[0]] += 1
                else:
                    begin = now
                rep_until = schedule(data, mfd, begin, "rep_end")
                if in_window:
                    stats["busyMs"] += len(data) * char * 1000
    intervals = {}
    for unit, times in stats["requestTimes"].items():
        d = [b - a for a, b in zip(times, times[1:])]
        if d:
            mean = sum(d) / len(d)
            sd = (sum((x - mean) ** 2 for x in d) / len(d)) ** 0.5
            intervals[str(unit)] = {"n": len(times), "meanMs": mean * 1000, "sdMs": sd * 1000,
                                    "minMs": min(d) * 1000, "maxMs": max(d) * 1000}
    result = {k: v for k, v in stats.items() if k != "requestTimes"}
    result["replyUnits"] = {str(k): v for k, v in stats["replyUnits"].items()}
    result["intervals"] = intervals
    result["seconds"] = args.seconds
    result["t35Ms"] = t35 * 1000
    result["charMs"] = char * 1000
    print(json.dumps(result), flush=True)
    os.close(mslave)
    os.close(sslave)


if __name__ == "__main__":
    main()
