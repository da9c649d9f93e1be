"""Writes N small recording bundles for store-scale benchmarks: one 32×24 PNG
frame and one click per session, sessions spread over one year and the five
demo workflows, ids in time order. Same N, same bundles.

usage: make_store.py N DIR
"""
import json
import pathlib
import struct
import sys
import zlib

n, root = int(sys.argv[1]), pathlib.Path(sys.argv[2])
WORKFLOWS = ["process_invoice", "triage_ticket", "update_crm_record", "book_travel", "reconcile_payments"]
START = 1767225600  # 2026-01-01T00:00:00Z
SPAN = 365 * 86400


def png(seed):
    w, h = 32, 24
    rows = []
    for y in range(h):
        row = bytearray(b"\x00")
        for x in range(w):
            row += bytes(((x * 8 + seed) % 256, (y * 10) % 256, (seed * 7) % 256))
        rows.append(bytes(row))
    data = zlib.compress(b"".join(rows), 6)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def iso(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


images = [png(s) for s in range(64)]
root.mkdir(parents=True, exist_ok=True)
for i in range(n):
    t = START + (i * SPAN) // max(n, 1)
    sid = f"ses_{i:09d}"
    d = root / sid
    if (d / "session.json").exists():
        continue
    (d / "frames").mkdir(parents=True, exist_ok=True)
    (d / "frames" / "000000.png").write_bytes(images[i % 64])
    (d / "session.json").write_text(json.dumps({
        "session_id": sid, "workflow": WORKFLOWS[i % 5], "outcome": ["success", "error", "abandoned"][i % 3],
        "actor": {"kind": "model", "id": f"agent-{i % 7}"},
        "started_at": iso(t), "ended_at": iso(t + 1), "tags": ["scale"],
    }))
    (d / "frames.jsonl").write_text(json.dumps({"t_ms": 0, "file": "frames/000000.png"}) + "\n")
    (d / "events.jsonl").write_text(json.dumps({"t_ms": 10, "type": "click", "action": True,
                                                "data": {"x": 3, "y": 4}}) + "\n")
print(f"{n} bundles in {root}")
