"""fdrpc streams from Python through the fdrpc package, against the Rust server: the server
stream `memfds` (items are owned fds, credit granted as they are consumed, a stream given up
early with the next call answered correctly) and the sink `total_size` (memfds sent as the
server grants credit). Usage: streams_client.py SOCKET GEN_DIR"""

import os
import sys

sys.path.insert(0, sys.argv[2])

import fdrpc  # noqa: E402
from conformance import Conformance  # noqa: E402


def check(ok, what):
    """Fails the peer (exit status 1) unless `ok`: unlike `assert`, never compiled out by -O."""
    if not ok:
        raise RuntimeError(f"check failed: {what!r}")


before = len(os.listdir("/proc/self/fd"))
with fdrpc.connect(sys.argv[1], Conformance.Client) as conn:
    # Server streams, with small windows: credit is granted many times.
    for count, window in [(40, 4), (7, 2)]:
        got = 0
        for fd in conn.stream("memfds", count, item=fdrpc.FD, window=window):
            with fd:
                check(os.pread(fd.fileno(), 64, 0).decode() == str(got), got)
                check(os.get_inheritable(fd.fileno()) is False, "close-on-exec")
            got += 1
        check(got == count, (got, count))

    # A stream given up after two items: its late items are skipped, with their fds, and the
    # next call gets its own reply.
    items = conn.stream("memfds", 50, item=fdrpc.FD, window=16)
    for _ in range(2):
        next(items).close()
    items.close()
    check(conn.client.whoami().pid == os.getpid(), "whoami after a cancelled stream")

    # A sink: memfds of known sizes, sent as the server grants credit.
    sizes = [i % 9 + 1 for i in range(60)]

    def memfds():
        for size in sizes:
            with fdrpc.Fd(os.memfd_create("sink", os.MFD_CLOEXEC)) as fd:
                os.write(fd.fileno(), b"x" * size)
                yield fd

    total = conn.sink("total_size", items=memfds(), item=fdrpc.FD)
    check(total == sum(sizes), (total, sum(sizes)))
after = len(os.listdir("/proc/self/fd"))
check(after == before, ("fds leaked", before, after))
print("python streams: all passed")
