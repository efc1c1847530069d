"""Serving fdrpc calls with a stock-compiler generated ``Processor``.

A stock processor reads every frame as a call. On fdrpc's wire some frames are not calls: a
frame with an ``fdrpc-stream`` header is a stream frame (docs/PROTOCOL.md: "never a call"),
such as the ``credit`` a client sends after a stream ended or the ``cancel`` of a call it gave
up. Run as calls, they would invoke the method with every argument ``None``. The
:class:`ServerProtocol` here drops them (closing their fds) before the processor sees them.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TTransportException

from .client import read_field, write_data_frame
from .errors import ConnectionClosed, ProtocolError, StreamError
from .fd import Fd
from .transport import FdHeaderTransport, FdSocket, header_int


_log = logging.getLogger("fdrpc")


class _Producer:
    """A server stream being produced: its items, its call, and the credit the client gave."""

    def __init__(
        self, name: str, seqid: int, items: Iterator[Any], item: Any, error: Any, credit: int
    ):
        self.name, self.seqid = name, seqid
        self.items, self.item, self.error, self.credit = items, item, error, credit


class _Sink:
    """A sink being consumed: what arrived and was not yet taken, and how it ended."""

    def __init__(self, item: Any, error: Any) -> None:
        self.item, self.error_codec = item, error
        self.queue: collections.deque = collections.deque()
        self.done = False
        self.error: Optional[BaseException] = None

    def take(self, proto: "ServerProtocol", kind: bytes) -> None:
        """Reads the data frame of ``kind`` whose header was just read."""
        if kind == b"abort":
            exc = TApplicationException()
            exc.read(proto)
            self.done, self.error = True, exc
        elif kind == b"item":
            self.queue.append(read_field(proto, 0, self.item))
        else:
            value = read_field(proto, 1, self.error_codec if kind == b"error" else None)
            self.done = True
            if kind == b"error":
                self.error = StreamError(value)


class ServerProtocol(THeaderProtocol):
    """The server's protocol: stream frames never reach the processor. Control frames of a
    stream this connection produces (``credit``, ``cancel``) are routed to it, others are
    dropped with their fds; between frames, the streams send what their credit allows."""

    def __init__(self, trans: FdHeaderTransport) -> None:
        super().__init__(trans, [THeaderClientType.HEADERS])
        self.fdtrans = trans
        self.dropped = 0
        self.streams: Dict[int, _Producer] = {}
        self.sinks: Dict[int, _Sink] = {}
        self._pushed: Optional[Tuple[str, int, int]] = None
        # The call being handled: its wire name, seqid, and the window it grants a stream.
        self.current: Tuple[str, int, int] = ("", 0, 16)

    def readMessageBegin(self) -> Tuple[str, int, int]:  # noqa: N802
        while True:
            self.pump()
            header = self.read_frame_begin()
            if not self.route(header):
                return header

    def read_frame_begin(self) -> Tuple[str, int, int]:
        """The message header of the next frame (or of the one pushed back)."""
        if self._pushed is not None:
            header, self._pushed = self._pushed, None
            return header
        return super().readMessageBegin()

    def push_back(self, header: Tuple[str, int, int]) -> None:
        """Makes the call whose header was just read (its body unread) the next one read."""
        self._pushed = header

    def route(self, header: Tuple[str, int, int]) -> bool:
        """Handles the frame whose header was just read if it is a stream frame (True); a
        call is left to the caller (False) and becomes the call being handled."""
        name, _, seqid = header
        headers = self.fdtrans.get_headers()
        kind = self.fdtrans.stream_kind()
        if kind is None:
            window = headers.get(b"fdrpc-credit", b"16")
            self.current = (name, seqid, int(window) if window.isdigit() else 16)
            return False
        sink = self.sinks.get(seqid)
        producer = self.streams.get(seqid)
        if sink is not None and kind in (b"item", b"end", b"error", b"abort"):
            sink.take(self, kind)
            super().readMessageEnd()
            # The frame's fds stay until the next frame is read: a struct item's or the
            # error's fd fields are indices the handler takes (those it leaves are closed).
            return True
        if producer is not None and kind == b"credit":
            if b"fdrpc-credit" not in headers:
                raise ProtocolError("a credit frame without fdrpc-credit")
            producer.credit += header_int(headers, b"fdrpc-credit", 0)
            self.skip(TType.STRUCT)
        elif producer is not None and kind == b"cancel":
            # The client wants no more: nothing more is sent, not even `end`.
            del self.streams[seqid]
            close = getattr(producer.items, "close", None)
            if close is not None:
                close()
            self.skip(TType.STRUCT)
        else:
            # A stream frame for no stream of ours (a late credit, a call's cancel).
            self.dropped += 1
            self.skip(TType.STRUCT)
        super().readMessageEnd()
        self.fdtrans.close_received()
        return True

    def pump(self) -> None:
        """Sends every item the streams have credit for, and the end of those that ended."""
        for seqid in list(self.streams):
            producer = self.streams[seqid]
            while producer.credit > 0:
                try:
                    value = next(producer.items)
                except StopIteration:
                    self._frame(producer, b"end")
                    del self.streams[seqid]
                    break
                except StreamError as e:
                    # The producer's declared error ends the stream.
                    self._frame(producer, b"error", e.value, producer.error)
                    del self.streams[seqid]
                    break
                except Exception as e:  # noqa: BLE001 (the producer failed: the stream aborts)
                    self._frame(producer, b"abort", e)
                    del self.streams[seqid]
                    break
                self._frame(producer, b"item", value, producer.item)
                producer.credit -= 1

    def control(self, name: str, seqid: int, kind: bytes, credit: Optional[int] = None) -> None:
        """Sends a stream control frame (``credit``, ``cancel``) for ``seqid``."""
        self.fdtrans.set_header(b"fdrpc-stream", kind)
        if credit is not None:
            self.fdtrans.set_header(b"fdrpc-credit", str(credit).encode())
        THeaderProtocol.writeMessageBegin(self, name, TMessageType.REPLY, seqid)
        self.writeStructBegin("control")
        self.writeFieldStop()
        self.writeStructEnd()
        self.writeMessageEnd()
        self.fdtrans.flush()

    def _frame(self, producer: _Producer, kind: bytes, value: Any = None, codec: Any = None) -> None:
        write_data_frame(self, producer.name, TMessageType.REPLY, producer.seqid, kind, value, codec)


class ServerConnection:
    """One connection being served: what a handler needs for fds."""

    def __init__(self, sock: socket.socket) -> None:
        self.transport = FdHeaderTransport(FdSocket(sock))
        self.protocol = ServerProtocol(self.transport)
        self._opened: Optional[_Producer] = None
        # Set by serve_connection: serves calls that arrive while a sink handler reads.
        self.processor: Any = None

    def attach(self, fd: Union[int, Fd]) -> int:
        """Adds ``fd`` to the reply being built (the handler keeps its own descriptor: close
        it after the handler returns, or pass an :class:`Fd` and keep it alive until then);
        returns the index for the fd field."""
        return self.transport.attach(fd)

    def attach_owned(self, fd: Union[int, Fd]) -> int:
        """As :meth:`attach`, handing ``fd`` over: it is closed once the reply is written."""
        return self.transport.attach_owned(fd)

    def take(self, index: int) -> Fd:
        """The fd at ``index`` of the call being handled, owned by the caller from now on."""
        return self.transport.take_fd(index)

    def stream_reply(self, items: Iterable[Any], item: Any, error: Any = None) -> None:
        """Makes the call being handled (a stream method: ``fdrpc.stream`` in the IDL, a
        ``void`` function to the generated code) answer with a stream of ``items`` once its
        opening reply is written; ``item`` says how one travels (``fdrpc.FD``, ...).
        Items are taken from the iterable as the client grants credit, and the connection
        serves other calls meanwhile; a ``cancel`` closes the iterable (a generator's
        ``finally`` runs). The iterable raising :class:`StreamError` ends the stream with
        its declared error (``value``, written by ``error``); any other exception from it
        aborts the stream (an ``abort`` naming it)."""
        name, seqid, window = self.protocol.current
        self._opened = _Producer(name, seqid, iter(items), item, error, window)

    def sink_items(self, item: Any, window: int = 64, error: Any = None) -> Iterator[Any]:
        """The items of the sink of the call being handled (a method whose IDL says
        ``fdrpc.sink = "<item>"``: its generated handler takes every argument but the
        stream), for its handler to iterate: credit is granted ``window`` items at a time
        (half again as half is consumed), ``item`` says how one travels (``fdrpc.FD``, ...).
        Calls that arrive meanwhile on the connection are served in between. Ends with the
        client's ``end``; raises :class:`StreamError` for its ``error`` (its ``value`` read by
        ``error``) and ``TApplicationException`` for its ``abort``."""
        proto = self.protocol
        name, seqid, _ = proto.current
        sink = _Sink(item, error)
        proto.sinks[seqid] = sink
        try:
            proto.control(name, seqid, b"credit", window)
            consumed = 0
            while True:
                while sink.queue:
                    value = sink.queue.popleft()
                    consumed += 1
                    if consumed >= max(1, window // 2) and not sink.done:
                        proto.control(name, seqid, b"credit", consumed)
                        consumed = 0
                    yield value
                if sink.done:
                    if sink.error is not None:
                        raise sink.error
                    return
                proto.pump()
                header = proto.read_frame_begin()
                if not proto.route(header):
                    # A call while the sink is open: served now, then back to the sink.
                    proto.push_back(header)
                    self.processor.process(proto, proto)
                    self.opened()
        finally:
            proto.sinks.pop(seqid, None)

    def opened(self) -> None:
        """After the call's reply is written: starts the stream it opened, if any."""
        producer, self._opened = self._opened, None
        if producer is not None:
            self.protocol.streams[producer.seqid] = producer

    def peer(self) -> Tuple[int, int, int]:
        """``(pid, uid, gid)`` of the peer (``SO_PEERCRED``, taken when it connected)."""
        sock = self.transport.fdsock.sock
        if sock is None:
            raise OSError("the connection is closed")
        import struct as _struct

        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _struct.calcsize("3i"))
        pid, uid, gid = _struct.unpack("3i", creds)
        return pid, uid, gid

    def shutdown(self) -> None:
        """Shuts the socket down both ways (the thread serving it ends at its next read);
        closing is left to that thread."""
        sock = self.transport.fdsock.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Closes the socket and every fd the connection still holds."""
        self.transport.close()


def _serve(conn: ServerConnection, make_processor: Callable[[ServerConnection], Any]) -> None:
    """Serves ``conn`` until its peer closes it, or it is shut down, or the peer breaks the
    protocol (logged: the connection is closed, as fdrpc's own servers do)."""
    processor = make_processor(conn)
    conn.processor = processor
    while True:
        try:
            processor.process(conn.protocol, conn.protocol)
            conn.opened()
        except ConnectionClosed:
            return
        except TTransportException as e:
            if e.type in (TTransportException.END_OF_FILE, TTransportException.NOT_OPEN):
                return
            raise
        except ProtocolError as e:
            _log.warning("closing a connection that broke the protocol: %s", e)
            return


def serve_connection(sock: socket.socket, make_processor: Callable[[ServerConnection], Any]) -> None:
    """Serves one connected socket (which it owns) until the peer closes it:
    ``make_processor(connection)`` returns the generated ``Service.Processor`` over a handler
    (which may keep ``connection`` for fds). Every fd still held is closed at the end. A
    peer that breaks the protocol is logged (logger ``fdrpc``) and its connection closed."""
    conn = ServerConnection(sock)
    try:
        _serve(conn, make_processor)
    finally:
        conn.close()


class Server:
    """A server listening at ``path`` (``@name`` for an abstract socket), serving each
    connection on a thread of its own (see :func:`serve_connection`). The socket is bound
    and listening once the constructor returns, so clients may connect at once; calls are
    answered once :meth:`serve_forever` runs (or :meth:`start` runs it on a thread).

    A context manager: leaving the block (or :meth:`close`) stops accepting, shuts every
    open connection down (their threads end at their next read, closing every fd they
    hold), waits for them up to ``join_timeout`` seconds, and removes the socket file::

        with fdrpc.Server("/run/calc.sock", lambda conn: Calc.Processor(Handler(conn))) as s:
            s.start()
            ...                                   # serving until the block ends
    """

    def __init__(
        self,
        path: str,
        make_processor: Callable[[ServerConnection], Any],
        backlog: int = 64,
        join_timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.make_processor = make_processor
        self.join_timeout = join_timeout
        self._lock = threading.Lock()
        self._conns: Set[ServerConnection] = set()
        self._threads: List[threading.Thread] = []
        self._accepting: Optional[threading.Thread] = None
        self._stopping = False
        self._closed = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._ino: Optional[int] = None
        try:
            self._listener.bind("\0" + path[1:] if path.startswith("@") else path)
            if not path.startswith("@"):
                self._ino = os.stat(path).st_ino
            self._listener.listen(backlog)
        except BaseException:
            self._listener.close()
            self._wake_r.close()
            self._wake_w.close()
            raise

    def serve_forever(self) -> None:
        """Accepts and serves connections until :meth:`shutdown` or :meth:`close`."""
        while True:
            ready, _, _ = select.select([self._listener, self._wake_r], [], [])
            with self._lock:
                if self._stopping:
                    return
            if self._listener in ready:
                try:
                    sock, _ = self._listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                self._spawn(sock)

    def start(self) -> "Server":
        """Runs :meth:`serve_forever` on a thread; returns the server."""
        if self._accepting is None:
            self._accepting = threading.Thread(target=self.serve_forever, daemon=True)
            self._accepting.start()
        return self

    def _spawn(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        conn = ServerConnection(sock)
        with self._lock:
            if self._stopping:
                conn.close()
                return
            self._conns.add(conn)
            self._threads = [t for t in self._threads if t.is_alive()]
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
        thread.start()

    def _run(self, conn: ServerConnection) -> None:
        try:
            _serve(conn, self.make_processor)
        finally:
            # Under the lock: close() never shuts down a socket whose number was reused.
            with self._lock:
                self._conns.discard(conn)
                conn.close()

    def connections(self) -> int:
        """How many connections are being served."""
        with self._lock:
            return len(self._conns)

    def shutdown(self) -> None:
        """Stops accepting connections (those open are served on)."""
        with self._lock:
            self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def close(self) -> None:
        """Stops accepting, shuts every connection down and waits for their threads (up to
        ``join_timeout`` seconds: a handler still running then is left to finish on its
        own), closes the listener and removes the socket file. Idempotent."""
        self.shutdown()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._conns:
                conn.shutdown()
            threads = list(self._threads)
        accepting = self._accepting
        if accepting is not None and accepting is not threading.current_thread():
            accepting.join(self.join_timeout)
        deadline = time.monotonic() + self.join_timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        # The socket file, if it is still the one this server bound.
        if self._ino is not None:
            try:
                if os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    path: str,
    make_processor: Callable[[ServerConnection], Any],
    ready: Optional[threading.Event] = None,
    stop: Optional[threading.Event] = None,
) -> None:
    """Listens at ``path`` and serves each connection on a thread of its own until ``stop``
    is set (a :class:`Server` run in this thread; its connections are shut down at the end)."""
    with Server(path, make_processor) as server:
        if ready is not None:
            ready.set()
        if stop is not None:
            event = stop

            def stopper() -> None:
                event.wait()
                server.shutdown()

            threading.Thread(target=stopper, daemon=True).start()
        server.serve_forever()
