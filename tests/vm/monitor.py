#!/usr/bin/python3
"""Host side of the tier-2 monitor channel (see README.md, "Driving the qemu monitor").

    monitor.py QMP_SOCKET REQUEST_DIR

Connects to the guest's QMP socket (qemu `-qmp unix:...,server=on,wait=off`),
then serves requests the guest drops into REQUEST_DIR, which the guest sees
read-write over 9p:

  guest writes   NAME.req   one HMP command line (written as NAME.tmp, renamed)
  host  writes   NAME.out   "ok\n" + HMP output, or "error: <why>\n" (tmp + rename)
  host  removes  NAME.req

Only `device_add`, `device_del` and `info ...` are accepted. The reply to
`device_del ID` is written once qemu has emitted DEVICE_DELETED for ID (the
device is gone on the qemu side), or an error after 10 s. Exits when qemu
closes the socket. Every request is logged to stdout with a timestamp.
"""

import json
import os
import select
import socket
import sys
import time

ALLOWED = ("device_add", "device_del", "info")
POLL = 0.02


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} monitor: {msg}", flush=True)


class Qmp:
    def __init__(self, path, wait_s=180.0):
        deadline = time.monotonic() + wait_s
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise SystemExit(f"monitor: no QMP socket at {path}")
                time.sleep(0.2)
        self.sock = s
        self.buf = b""
        self.events = []
        self.read_msg(None)  # greeting
        self.execute({"execute": "qmp_capabilities"})

    def read_msg(self, timeout):
        """One JSON message, or None on timeout; SystemExit when qemu is gone."""
        while b"\n" not in self.buf:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return None
            data = self.sock.recv(65536)
            if not data:
                raise SystemExit(0)
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def pump(self, timeout):
        """Collect events for up to timeout seconds (returns early on one)."""
        msg = self.read_msg(timeout)
        if msg is not None and "event" in msg:
            self.events.append(msg)

    def execute(self, cmd):
        self.sock.sendall(json.dumps(cmd).encode() + b"\n")
        while True:
            msg = self.read_msg(30)
            if msg is None:
                raise RuntimeError(f"no QMP answer to {cmd['execute']}")
            if "event" in msg:
                self.events.append(msg)
            elif "return" in msg:
                return msg["return"]
            elif "error" in msg:
                raise RuntimeError(msg["error"].get("desc", str(msg["error"])))

    def deleted(self, dev_id):
        for e in self.events:
            if e.get("event") == "DEVICE_DELETED" and e.get("data", {}).get("device") == dev_id:
                self.events.remove(e)
                return True
        return False


def serve(qmp, line):
    words = line.split()
    if not words or words[0] not in ALLOWED:
        return f"error: command not allowed (only {', '.join(ALLOWED)}): {line!r}\n"
    if words[0] == "device_del":
        if len(words) != 2:
            return "error: usage: device_del ID\n"
        qmp.events = [e for e in qmp.events if e.get("event") != "DEVICE_DELETED"]
    out = qmp.execute(
        {"execute": "human-monitor-command", "arguments": {"command-line": line}}
    )
    if words[0] in ("device_add", "device_del") and out.strip():
        return f"error: {out.strip()}\n"
    if words[0] == "device_del":
        deadline = time.monotonic() + 10
        while not qmp.deleted(words[1]):
            if time.monotonic() > deadline:
                return f"error: no DEVICE_DELETED for {words[1]} after 10 s\n"
            qmp.pump(0.05)
    return "ok\n" + out


def main():
    sock_path, req_dir = sys.argv[1], sys.argv[2]
    qmp = Qmp(sock_path)
    log(f"connected to {sock_path}, serving {req_dir}")
    while True:
        for name in sorted(os.listdir(req_dir)):
            if not name.endswith(".req"):
                continue
            req = os.path.join(req_dir, name)
            base = req[: -len(".req")]
            with open(req) as f:
                line = f.read().strip()
            t0 = time.monotonic()
            try:
                reply = serve(qmp, line)
            except RuntimeError as e:
                reply = f"error: {e}\n"
            tmp = base + ".outtmp"
            with open(tmp, "w") as f:
                f.write(reply)
            os.chmod(tmp, 0o666)
            os.rename(tmp, base + ".out")
            os.unlink(req)
            log(f"{line!r} -> {reply.splitlines()[0]} ({time.monotonic() - t0:.3f}s)")
        qmp.pump(POLL)  # also notices qemu's exit


if __name__ == "__main__":
    main()
