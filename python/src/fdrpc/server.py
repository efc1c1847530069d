"""Serving fdrpc calls with a stock-compiler generated ``Processor``.

A stock processor reads every frame as a call. On fdrpc's wire some frames are not calls: a
frame with an ``fdrpc-stream`` header is a stream frame (docs/PROTOCOL.md: "never a call"),
such as the ``credit`` a client sends after a stream ended or the ``cancel`` of a call it gave
up. Run as calls, they would invoke the method with every argument ``None``. The
:class:`ServerProtocol` here drops them (closing their fds) before the processor sees them.
"""

from __future__ import annotations

import collections
import os
import socket
import threading
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple, Union

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TTransportException

from .client import StreamError, read_field
from .fd import Fd
from .transport import FdHeaderTransport, FdSocket


class _Producer:
    """A server stream being produced: its items, its call, and the credit the client gave."""

    def __init__(self, name: str, seqid: int, items: Iterator[Any], item: Any, credit: int):
        self.name, self.seqid = name, seqid
        self.items, self.item, self.credit = items, item, credit


class _Sink:
    """A sink being consumed: what arrived and was not yet taken, and how it ended."""

    def __init__(self, item: Any) -> None:
        self.item = item
        self.queue: collections.deque = collections.deque()
        self.done = False
        self.error: Optional[BaseException] = None

    def take(self, proto: "ServerProtocol", kind: bytes) -> None:
        """Reads the data frame of ``kind`` whose header was just read."""
        if kind == b"abort":
            exc = TApplicationException()
            exc.read(proto)
            self.done, self.error = True, exc
        else:
            value = read_field(proto, 0, self.item if kind == b"item" else None)
            if kind == b"item":
                self.queue.append(value)
            else:
                self.done = True
                if kind == b"error":
                    self.error = StreamError(None)


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
        kind = headers.get(b"fdrpc-stream")
        if kind is None:
            window = headers.get(b"fdrpc-credit", b"16")
            self.current = (name, seqid, int(window) if window.isdigit() else 16)
            return False
        sink = self.sinks.get(seqid)
        producer = self.streams.get(seqid)
        if sink is not None and kind in (b"item", b"end", b"error", b"abort"):
            sink.take(self, kind)
        elif producer is not None and kind == b"credit":
            producer.credit += int(headers.get(b"fdrpc-credit", b"0"))
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
                    self._frame(producer, b"end", None)
                    del self.streams[seqid]
                    break
                except Exception as e:  # noqa: BLE001 (the producer failed: the stream aborts)
                    self._frame(producer, b"abort", e)
                    del self.streams[seqid]
                    break
                self._frame(producer, b"item", value)
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

    def _frame(self, producer: _Producer, kind: bytes, value: Any) -> None:
        self.fdtrans.set_header(b"fdrpc-stream", kind)
        THeaderProtocol.writeMessageBegin(self, producer.name, TMessageType.REPLY, producer.seqid)
        if kind == b"abort":
            TApplicationException(TApplicationException.INTERNAL_ERROR, str(value)).write(self)
        else:
            self.writeStructBegin(kind.decode())
            if kind == b"item":
                self.writeFieldBegin("success", producer.item.ttype, 0)
                producer.item.write(self, value)
                self.writeFieldEnd()
            self.writeFieldStop()
            self.writeStructEnd()
        self.writeMessageEnd()
        self.fdtrans.flush()


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

    def stream_reply(self, items: Iterable[Any], item: Any) -> None:
        """Makes the call being handled (a stream method: ``fdrpc.stream`` in the IDL, a
        ``void`` function to the generated code) answer with a stream of ``items`` once its
        opening reply is written; ``item`` says how one travels (``fdrpc.FD``, ...).
        Items are taken from the iterable as the client grants credit, and the connection
        serves other calls meanwhile; a ``cancel`` closes the iterable (a generator's
        ``finally`` runs), and an exception from it aborts the stream."""
        name, seqid, window = self.protocol.current
        self._opened = _Producer(name, seqid, iter(items), item, window)

    def sink_items(self, item: Any, window: int = 64) -> Iterator[Any]:
        """The items of the sink of the call being handled (a method whose IDL says
        ``fdrpc.sink = "<item>"``: its generated handler takes every argument but the
        stream), for its handler to iterate: credit is granted ``window`` items at a time
        (half again as half is consumed), ``item`` says how one travels (``fdrpc.FD``, ...).
        Calls that arrive meanwhile on the connection are served in between. Ends with the
        client's ``end``; raises ``StreamError`` for its ``error`` and
        ``TApplicationException`` for its ``abort``."""
        proto = self.protocol
        name, seqid, _ = proto.current
        sink = _Sink(item)
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

    def close(self) -> None:
        self.transport.close()


def serve_connection(sock: socket.socket, make_processor: Callable[[ServerConnection], Any]) -> None:
    """Serves one connected socket (which it owns) until the peer closes it:
    ``make_processor(connection)`` returns the generated ``Service.Processor`` over a handler
    (which may keep ``connection`` for fds). Every fd still held is closed at the end."""
    conn = ServerConnection(sock)
    try:
        processor = make_processor(conn)
        conn.processor = processor
        while True:
            try:
                processor.process(conn.protocol, conn.protocol)
                conn.opened()
            except TTransportException as e:
                if e.type == TTransportException.END_OF_FILE:
                    return
                raise
    finally:
        conn.close()


def serve(
    path: str,
    make_processor: Callable[[ServerConnection], Any],
    ready: Optional[threading.Event] = None,
    stop: Optional[threading.Event] = None,
) -> None:
    """Listens at ``path`` and serves each connection on a thread of its own (see
    :func:`serve_connection`) until ``stop`` is set."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(64)
        listener.settimeout(0.2)
        if ready is not None:
            ready.set()
        while stop is None or not stop.is_set():
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            sock.settimeout(None)
            threading.Thread(target=serve_connection, args=(sock, make_processor), daemon=True).start()
    finally:
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
