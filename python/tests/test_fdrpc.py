"""Tests of the fdrpc Python package against Python peers on socketpairs: the three defects
of the shim it replaced (stream control frames run as calls, fds left after close, a late
stream item read as the next call's reply), owned fds, timeouts. Every test checks that the
process's fd count is where it started.

Needs the stock Thrift compiler (`thrift`) to generate the stubs; without it the tests are
skipped, unless FDRPC_REQUIRE_INTEROP=1 (CI), where they fail."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import fdrpc
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TTransportException

IDL = """
typedef i32 fd (fdrpc.fd = "any")

service Calc {
  i32 add(1: i32 a, 2: i32 b),
  fd open_memfd(1: string text),
  void tail(1: i32 count) (fdrpc.stream = "fd"),
  string whoami(),
  i32 slow(1: i32 ms),
  i64 total_size() (fdrpc.sink = "fd", fdrpc.sink_error = "i32"),
  void countdown(1: i32 start, 2: i32 fail_with) (fdrpc.stream = "i32", fdrpc.stream_error = "i32"),
}
"""

_GEN = None


def calc():
    """The generated `calc.Calc` module (compiled once per run)."""
    global _GEN
    if _GEN is None:
        if shutil.which("thrift") is None:
            if os.environ.get("FDRPC_REQUIRE_INTEROP") == "1":
                raise RuntimeError("the thrift compiler is required (FDRPC_REQUIRE_INTEROP=1)")
            raise unittest.SkipTest("no thrift compiler")
        out = tempfile.mkdtemp(prefix="fdrpc-py-test-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
        path = os.path.join(out, "calc.thrift")
        with open(path, "w") as f:
            f.write(IDL)
        subprocess.run(["thrift", "--gen", "py", "-out", out, path], check=True)
        sys.path.insert(0, out)
        _GEN = importlib.import_module("calc.Calc")
    return _GEN


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def memfd(text: str) -> fdrpc.Fd:
    fd = fdrpc.Fd(os.memfd_create("test", os.MFD_CLOEXEC))
    os.write(fd.fileno(), text.encode())
    return fd


class Handler:
    def __init__(self, conn: fdrpc.ServerConnection) -> None:
        self.conn = conn
        self.calls = []
        self.replied = []

    def add(self, a, b):
        self.calls.append((a, b))
        return a + b

    def open_memfd(self, text):
        fd = memfd(text)
        # Kept until the connection ends: the reply is written after this returns.
        self.replied.append(fd)
        return self.conn.attach(fd)

    def whoami(self):
        return "python"

    def slow(self, ms):
        time.sleep(ms / 1000)
        return ms

    def total_size(self):
        total = 0
        try:
            for fd in self.conn.sink_items(item=fdrpc.FD, window=4, error=fdrpc.I32):
                with fd:
                    total += os.fstat(fd.fileno()).st_size
        except fdrpc.StreamError as e:
            return -e.value  # the client's declared error, answered as a negative total
        return total

    def countdown(self, start, fail_with):
        """start, start - 1, ..., 1; then the declared error `fail_with` unless it is 0, or an
        abort if it is -1 (a producer that fails)."""

        def items():
            yield from range(start, 0, -1)
            if fail_with == -1:
                raise ValueError("the producer broke")
            if fail_with:
                raise fdrpc.StreamError(fail_with)

        self.conn.stream_reply(items(), item=fdrpc.I32, error=fdrpc.I32)


class Served:
    """A Calc server on one end of a socketpair, on a thread; the other end for the test."""

    def __init__(self) -> None:
        self.client_sock, server_sock = socket.socketpair()
        self.handlers = []

        def make(conn):
            h = Handler(conn)
            self.handlers.append(h)
            return calc().Processor(h)

        self.thread = threading.Thread(target=fdrpc.serve_connection, args=(server_sock, make))
        self.thread.start()

    def join(self) -> None:
        self.thread.join(10)
        if self.thread.is_alive():
            raise AssertionError("the server did not end within 10 s")
        for h in self.handlers:
            for fd in h.replied:
                fd.close()


class FdCountTest(unittest.TestCase):
    def setUp(self) -> None:
        calc()
        self.before = fd_count()

    def tearDown(self) -> None:
        deadline = time.monotonic() + 5
        while fd_count() != self.before and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(fd_count(), self.before, "fds leaked or closed twice")


class StreamControlFramesAreNotCalls(FdCountTest):
    """Defect 1: a late `credit` or a `cancel` sent to a Python server ran as a oneway call of
    the stream's method with every argument None, and killed the connection."""

    def test_a_late_credit_and_a_cancel_are_dropped_and_the_connection_goes_on(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            conn.control("add", 7, b"credit", 16)
            conn.control("add", 8, b"cancel")
            self.assertEqual(conn.client.add(2, 3), 5)
        served.join()
        self.assertEqual(served.handlers[0].calls, [(2, 3)])
        self.assertEqual(served.handlers[0].conn.protocol.dropped, 2)


class CloseClosesEveryFd(FdCountTest):
    """Defect 2: the fds of the last reply that nobody took stayed open after close."""

    def test_an_fd_nobody_took_is_closed_with_the_connection(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            conn.client.open_memfd("ignored")
            # The reply's fd is held, not taken: one more fd than before the call.
            self.assertEqual(len(conn.transport.received), 1)
        served.join()

    def test_a_taken_fd_is_owned_and_closed_by_its_object(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            with conn.take(conn.client.open_memfd("hello")) as fd:
                self.assertEqual(os.pread(fd.fileno(), 16, 0), b"hello")
                self.assertFalse(os.get_inheritable(fd.fileno()))
            self.assertTrue(fd.closed)
            with self.assertRaises(fdrpc.FdStreamError):
                conn.take(0)  # taken already
        served.join()


def fake_stream_server(sock: socket.socket, items: int, log: list) -> None:
    """Answers `tail` with an opening reply and `items` fd items at once (so late ones are in
    flight when the client cancels), then answers `whoami`; records the frames it got."""
    trans = fdrpc.FdHeaderTransport(fdrpc.FdSocket(sock))
    proto = THeaderProtocol(trans, [THeaderClientType.HEADERS])
    held = []
    try:
        while True:
            try:
                name, _, seqid = proto.readMessageBegin()
            except Exception:  # noqa: BLE001 (the client closed)
                return
            kind = trans.get_headers().get(b"fdrpc-stream")
            proto.skip(TType.STRUCT)
            proto.readMessageEnd()
            log.append((name, kind))
            if kind is not None:
                continue
            proto.writeMessageBegin(name, TMessageType.REPLY, seqid)
            proto.writeStructBegin("result")
            if name == "whoami":
                proto.writeFieldBegin("success", TType.STRING, 0)
                proto.writeString("after the stream")
                proto.writeFieldEnd()
            proto.writeFieldStop()
            proto.writeStructEnd()
            proto.writeMessageEnd()
            trans.flush()
            if name != "tail":
                continue
            for i in range(items):
                fd = memfd(str(i))
                held.append(fd)
                trans.set_header(b"fdrpc-stream", b"item")
                index = trans.attach(fd)
                proto.writeMessageBegin(name, TMessageType.REPLY, seqid)
                proto.writeStructBegin("item")
                proto.writeFieldBegin("success", TType.I32, 0)
                proto.writeI32(index)
                proto.writeFieldEnd()
                proto.writeFieldStop()
                proto.writeStructEnd()
                proto.writeMessageEnd()
                trans.flush()
            trans.set_header(b"fdrpc-stream", b"end")
            proto.writeMessageBegin(name, TMessageType.REPLY, seqid)
            proto.writeStructBegin("end")
            proto.writeFieldStop()
            proto.writeStructEnd()
            proto.writeMessageEnd()
            trans.flush()
    finally:
        trans.close()
        for fd in held:
            fd.close()


class AbandonedStreams(FdCountTest):
    """Defect 3: after a stream was given up, its late items were read as the next call's
    reply (stock clients send seqid 0 and do not check the method name)."""

    def test_a_call_after_a_cancelled_stream_gets_its_own_reply(self):
        mine, theirs = socket.socketpair()
        log: list = []
        server = threading.Thread(target=fake_stream_server, args=(theirs, 5, log))
        server.start()
        with fdrpc.from_socket(mine, calc().Client) as conn:
            items = conn.stream("tail", 5, item=fdrpc.FD, window=8)
            with next(items) as first:
                self.assertEqual(os.pread(first.fileno(), 8, 0), b"0")
            items.close()
            # Four late items are on their way: skipped, with their fds.
            self.assertEqual(conn.client.whoami(), "after the stream")
        server.join(10)
        self.assertFalse(server.is_alive())
        self.assertEqual(log, [("tail", None), ("tail", b"cancel"), ("whoami", None)])

    def test_a_whole_stream_is_read_granting_credit_as_it_goes(self):
        mine, theirs = socket.socketpair()
        log: list = []
        server = threading.Thread(target=fake_stream_server, args=(theirs, 3, log))
        server.start()
        with fdrpc.from_socket(mine, calc().Client) as conn:
            got = []
            for fd in conn.stream("tail", 3, item=fdrpc.FD, window=2):
                with fd:
                    got.append(os.pread(fd.fileno(), 8, 0))
            self.assertEqual(got, [b"0", b"1", b"2"])
            self.assertEqual(conn.client.whoami(), "after the stream")
        server.join(10)
        self.assertFalse(server.is_alive())
        # Half the window (1) granted after each item; no cancel after the end.
        self.assertEqual(log, [("tail", None)] + [("tail", b"credit")] * 3 + [("whoami", None)])


class Sinks(FdCountTest):
    def test_a_python_server_consumes_a_sink_fed_from_an_iterable(self):
        served = Served()
        sizes = [i % 5 + 1 for i in range(11)]
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            total = conn.sink("total_size", items=(memfd("x" * n) for n in sizes), item=fdrpc.FD)
            self.assertEqual(total, sum(sizes))
            self.assertEqual(conn.client.add(1, 2), 3)
        served.join()

    def test_a_call_that_arrives_while_a_sink_is_open_is_answered_first(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            conn.client.send_total_size()
            sink = conn.protocol.last_seqid
            conn.client.send_whoami()
            # The server's credit frame comes first (skipped), then whoami's reply, while the
            # sink is still open on the server.
            self.assertEqual(conn.client.recv_whoami(), "python")
            for n in (3, 4):
                with memfd("y" * n) as fd:
                    conn.transport.set_header(b"fdrpc-stream", b"item")
                    index = conn.attach(fd)
                    THeaderProtocol.writeMessageBegin(
                        conn.protocol, "total_size", TMessageType.ONEWAY, sink
                    )
                    conn.protocol.writeStructBegin("item")
                    conn.protocol.writeFieldBegin("success", TType.I32, 0)
                    conn.protocol.writeI32(index)
                    conn.protocol.writeFieldEnd()
                    conn.protocol.writeFieldStop()
                    conn.protocol.writeStructEnd()
                    conn.protocol.writeMessageEnd()
                    conn.transport.flush()
            conn.control("total_size", sink, b"end")
            conn.protocol._awaiting = ("total_size", sink)  # the reply still to come
            self.assertEqual(conn.client.recv_total_size(), 7)
        served.join()


class StreamErrors(FdCountTest):
    """A producer's declared error, both ways, and a producer that fails."""

    def test_a_python_producer_ends_its_stream_with_its_declared_error(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            items = conn.stream("countdown", 3, 42, item=fdrpc.I32, error=fdrpc.I32)
            got = []
            with self.assertRaises(fdrpc.StreamError) as raised:
                for value in items:
                    got.append(value)
            self.assertEqual(got, [3, 2, 1])
            self.assertEqual(raised.exception.value, 42)
            self.assertIsInstance(raised.exception, fdrpc.Error)
            # Without an error reader the error frame still ends the stream (value None).
            items = conn.stream("countdown", 1, 7, item=fdrpc.I32)
            self.assertEqual(next(items), 1)
            with self.assertRaises(fdrpc.StreamError) as raised:
                next(items)
            self.assertIsNone(raised.exception.value)
            self.assertEqual(list(conn.stream("countdown", 2, 0, item=fdrpc.I32)), [2, 1])
            # A producer that fails aborts its stream, naming the cause; the connection goes on.
            items = conn.stream("countdown", 1, -1, item=fdrpc.I32, error=fdrpc.I32)
            self.assertEqual(next(items), 1)
            with self.assertRaises(TApplicationException) as aborted:
                next(items)
            self.assertIn("the producer broke", aborted.exception.message)
            self.assertEqual(conn.client.add(1, 2), 3)
        served.join()

    def test_a_sink_fed_by_python_ends_with_its_declared_error(self):
        served = Served()

        def failing(error):
            for text in ("abc", "de"):
                with memfd(text) as fd:
                    yield fd
            raise error

        with fdrpc.from_socket(served.client_sock, calc().Client) as conn:
            total = conn.sink(
                "total_size",
                items=failing(fdrpc.StreamError(9)),
                item=fdrpc.FD,
                error=fdrpc.I32,
            )
            self.assertEqual(total, -9)
            # Any other exception aborts the sink: the server answers with an exception, the
            # caller sees its own exception, and the connection goes on.
            with self.assertLogs(level="ERROR") as logged, self.assertRaises(KeyError):
                conn.sink("total_size", items=failing(KeyError("mine")), item=fdrpc.FD)
            # The handler's sink ended with the abort, naming the client's exception.
            self.assertIn("TApplicationException: 'mine'", "\n".join(logged.output))
            self.assertEqual(conn.client.add(2, 2), 4)
        served.join()


class ProtocolErrors(FdCountTest):
    """The peer breaking the protocol gets the package's own exceptions, and a server closes
    the connection."""

    def test_garbage_instead_of_a_reply_is_a_protocol_error(self):
        mine, theirs = socket.socketpair()
        with fdrpc.from_socket(mine, calc().Client) as conn:
            theirs.sendall(b"\x00\x00\x00\x10" + b"not a header frame")
            with self.assertRaises(fdrpc.ProtocolError):
                conn.client.add(1, 2)
        theirs.close()

    def test_a_bad_fd_count_or_stream_kind_is_a_protocol_error(self):
        for header, value in (
            (b"fdrpc-fds", b"-1"),
            (b"fdrpc-fds", b"two"),
            (b"fdrpc-fd-seq", b"9"),
            (b"fdrpc-stream", b"bogus"),
        ):
            mine, theirs = socket.socketpair()
            with fdrpc.from_socket(mine, calc().Client) as conn:
                peer = fdrpc.FdHeaderTransport(fdrpc.FdSocket(theirs))
                proto = THeaderProtocol(peer, [THeaderClientType.HEADERS])
                peer.set_header(header, value)
                proto.writeMessageBegin("add", TMessageType.REPLY, 1)
                proto.writeStructBegin("result")
                proto.writeFieldStop()
                proto.writeStructEnd()
                proto.writeMessageEnd()
                peer.flush()
                with self.assertRaises(fdrpc.ProtocolError, msg=repr((header, value))) as raised:
                    conn.client.add(1, 2)
                if header != b"fdrpc-stream":
                    self.assertIsInstance(raised.exception, fdrpc.FdStreamError)
                peer.close()

    def test_a_server_closes_a_connection_that_sends_garbage(self):
        served = Served()
        with self.assertLogs("fdrpc", "WARNING") as logged:
            served.client_sock.sendall(b"\x00\x00\x00\x10" + b"not a header frame")
            served.join()
        self.assertIn("broke the protocol", logged.output[0])
        self.assertEqual(served.client_sock.recv(16), b"")
        served.client_sock.close()

    def test_closed_connections_and_timeouts_are_fdrpc_errors_and_standard_ones(self):
        mine, theirs = socket.socketpair()
        with fdrpc.from_socket(mine, calc().Client, timeout=0.05) as conn:
            with self.assertRaises(fdrpc.Timeout) as raised:
                conn.client.add(1, 2)
            self.assertIsInstance(raised.exception, TimeoutError)
            theirs.close()
            with self.assertRaises(fdrpc.ConnectionClosed) as raised:
                conn.client.add(1, 2)
            self.assertIsInstance(raised.exception, TTransportException)
            self.assertEqual(raised.exception.type, TTransportException.END_OF_FILE)


class Servers(FdCountTest):
    def test_a_server_block_serves_and_closes_everything_at_its_end(self):
        path = os.path.join(tempfile.mkdtemp(prefix="fdrpc-py-server-"), "calc.sock")
        handlers = []

        class Owning(Handler):
            def open_memfd(self, text):
                return self.conn.attach_owned(memfd(text))

        def make(conn):
            handlers.append(Owning(conn))
            return calc().Processor(handlers[-1])

        with fdrpc.Server(path, make) as server:
            server.start()
            with fdrpc.connect(path, calc().Client) as conn:
                self.assertEqual(conn.client.add(20, 22), 42)
                with conn.take(conn.client.open_memfd("from a server")) as fd:
                    self.assertEqual(os.pread(fd.fileno(), 32, 0), b"from a server")
            # A client still connected when the block ends.
            lingering = fdrpc.connect(path, calc().Client)
            self.assertEqual(lingering.client.add(1, 1), 2)
            self.assertEqual(server.connections(), 1)
        self.assertFalse(os.path.exists(path))
        with self.assertRaises(fdrpc.ConnectionClosed):
            lingering.client.add(1, 1)
        lingering.close()
        with self.assertRaises(OSError):
            fdrpc.connect(path, calc().Client)
        self.assertEqual([h.calls for h in handlers], [[(20, 22)], [(1, 1)]])
        os.rmdir(os.path.dirname(path))

    def test_serve_until_stop_is_set(self):
        path = os.path.join(tempfile.mkdtemp(prefix="fdrpc-py-server-"), "calc.sock")
        ready, stop = threading.Event(), threading.Event()
        thread = threading.Thread(
            target=fdrpc.serve, args=(path, lambda c: calc().Processor(Handler(c)), ready, stop)
        )
        thread.start()
        self.assertTrue(ready.wait(10))
        with fdrpc.connect(path, calc().Client) as conn:
            self.assertEqual(conn.client.whoami(), "python")
        stop.set()
        thread.join(10)
        self.assertFalse(thread.is_alive())
        self.assertFalse(os.path.exists(path))
        os.rmdir(os.path.dirname(path))


class Timeouts(FdCountTest):
    def test_a_call_times_out_and_its_late_reply_does_not_answer_the_next(self):
        served = Served()
        with fdrpc.from_socket(served.client_sock, calc().Client, timeout=0.05) as conn:
            with self.assertRaises(TimeoutError):
                conn.client.slow(300)
            conn.protocol.timeout = 10
            # The late reply (300) comes first and is skipped: this call gets its own.
            self.assertEqual(conn.client.add(1, 1), 2)
        served.join()


class Asyncio(FdCountTest):
    def test_calls_fds_and_a_cancelled_stream_from_coroutines(self):
        import asyncio

        async def run():
            mine, theirs = socket.socketpair()
            log: list = []
            server = threading.Thread(target=fake_stream_server, args=(theirs, 4, log))
            server.start()
            async with fdrpc.aio.from_socket(mine, calc().Client) as conn:
                items = await conn.stream("tail", 4, item=fdrpc.FD, window=8)
                first = await items.__anext__()
                with first:
                    self.assertEqual(os.pread(first.fileno(), 8, 0), b"0")
                await items.close()
                # Two coroutines call at once: each gets its own reply, one after the other.
                a, b = await asyncio.gather(conn.call("whoami"), conn.call("whoami"))
                self.assertEqual((a, b), ("after the stream", "after the stream"))
            await asyncio.to_thread(server.join, 10)
            self.assertEqual(
                log, [("tail", None), ("tail", b"cancel"), ("whoami", None), ("whoami", None)]
            )

            served = Served()
            async with fdrpc.aio.from_socket(served.client_sock, calc().Client) as conn:
                self.assertEqual(await conn.call("add", 20, 22), 42)
                with conn.take(await conn.call("open_memfd", "async")) as fd:
                    self.assertEqual(os.pread(fd.fileno(), 8, 0), b"async")
            await asyncio.to_thread(served.join)

        asyncio.run(run())


class Packaging(unittest.TestCase):
    def test_the_version_is_the_crates(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        cargo = os.path.join(root, "Cargo.toml")
        if not os.path.exists(cargo):
            self.skipTest("not in the repository")
        with open(cargo) as f:
            text = f.read()
        self.assertIn('version = "%s"' % fdrpc.__version__, text)


if __name__ == "__main__":
    unittest.main()
