"""Declared stream errors (an error struct carrying an fd) between the fdrpc Python package
and Rust, with stubs the stock compiler generated from the `Countdown` service's IDL.

    stream_errors.py SOCKET GEN_DIR          # client of a Rust server
    stream_errors.py SOCKET GEN_DIR serve    # server for a Rust client (prints "ready")
"""

import os
import sys

sys.path.insert(0, sys.argv[2])

import fdrpc  # noqa: E402
from countdown import Countdown  # noqa: E402
from countdown.ttypes import Refusal  # noqa: E402

REFUSAL = fdrpc.struct(Refusal)


def check(ok, what):
    """Fails the peer (exit status 1) unless `ok`: unlike `assert`, never compiled out by -O."""
    if not ok:
        raise RuntimeError(f"check failed: {what!r}")


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def memfd(text):
    fd = fdrpc.Fd(os.memfd_create("stream-errors", os.MFD_CLOEXEC))
    os.write(fd.fileno(), text.encode())
    return fd


def client(path):
    before = fd_count()
    with fdrpc.connect(path, Countdown.Client, timeout=20) as conn:
        items = conn.stream("countdown", 4, item=fdrpc.I32, error=REFUSAL)
        got = []
        try:
            for n in items:
                got.append(n)
            check(False, "the stream ended without its error")
        except fdrpc.StreamError as e:
            check(e.value.why == "liftoff", e.value)
            # The error's fd is in the frame just read: taken before the next one.
            with conn.take(e.value.log) as log:
                check(os.pread(log.fileno(), 64, 0) == b"from 4", "the error's log")
                check(not os.get_inheritable(log.fileno()), "the log is close-on-exec")
        check(got == [4, 3, 2, 1], got)

        def items_then(log):
            yield 20
            yield 22
            if log is not None:
                # Attached here, not before the call: an fd goes with the next frame written.
                raise fdrpc.StreamError(Refusal(why="python stops", log=conn.attach(log)))

        with memfd("python's reason") as log:
            said = conn.sink("tally", items=items_then(log), item=fdrpc.I32, error=REFUSAL)
        check(said == "42 then python stops: python's reason", said)
        said = conn.sink("tally", items=items_then(None), item=fdrpc.I32, error=REFUSAL)
        check(said == "42 then end", said)
    check(fd_count() == before, ("fds", before, fd_count()))
    print("client passed", flush=True)


class Handler:
    def __init__(self, conn):
        self.conn = conn

    def countdown(self, start):
        conn = self.conn

        def items():
            yield from range(start, 0, -1)
            log = memfd("python from %d" % start)
            # Handed over: closed once the error frame carrying it is written.
            raise fdrpc.StreamError(Refusal(why="python liftoff", log=conn.attach_owned(log)))

        conn.stream_reply(items(), item=fdrpc.I32, error=REFUSAL)

    def tally(self):
        total = 0
        try:
            for n in self.conn.sink_items(item=fdrpc.I32, error=REFUSAL):
                total += n
        except fdrpc.StreamError as e:
            with self.conn.take(e.value.log) as log:
                text = os.pread(log.fileno(), 64, 0).decode()
            return "%d then %s: %s" % (total, e.value.why, text)
        return "%d then end" % total


def serve(path):
    import socket

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print("ready", flush=True)
    sock, _ = listener.accept()
    listener.close()
    before = fd_count()
    fdrpc.serve_connection(sock, lambda conn: Countdown.Processor(Handler(conn)))
    # The connection's socket was open before the count: one fewer now.
    check(fd_count() == before - 1, ("fds", before, fd_count()))


if len(sys.argv) > 3 and sys.argv[3] == "serve":
    serve(sys.argv[1])
else:
    client(sys.argv[1])
