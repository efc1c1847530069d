"""Calling an fdrpc service with a stock-compiler generated client.

``connect(path, Service.Client)`` returns a :class:`Connection`: the generated client over a
protocol that makes stock generated code safe on fdrpc's wire:

- seqids increase (stock clients send 0 on every call), and a reply is taken only if it
  answers the call waiting, by seqid and method name; anything else (the late reply of a call
  that timed out, the late items of a cancelled stream) is skipped and its fds closed. Stock
  ``recv_*`` code checks neither, so without this a late stream item is read as the next
  call's reply.
- each call waits at most ``timeout`` seconds for its reply (:class:`~fdrpc.Timeout`, a
  ``TimeoutError``; the connection stays usable).
- server streams are iterators (:meth:`Connection.stream`) that grant credit as items are
  consumed and send ``cancel`` when dropped early.
- the connection is a context manager that closes the socket and every fd nobody took.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, Tuple, TypeVar

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.transport.THeaderTransport import THeaderClientType

from .errors import StreamError, Timeout
from .fd import Fd
from .transport import FdHeaderTransport, FdSocket, header_int

T = TypeVar("T")

DEFAULT_TIMEOUT = 25.0
"""Seconds a call waits for its reply by default, as fdrpc's own clients."""


def _plain(name: str) -> str:
    """A multiplexed name's method (``Service:method`` -> ``method``): replies carry it."""
    return name.rsplit(":", 1)[-1]


class CallProtocol(THeaderProtocol):
    """The client's protocol: increasing seqids, replies matched by seqid and method name,
    everything else skipped with its fds closed, a timeout per reply."""

    def __init__(self, trans: FdHeaderTransport, timeout: Optional[float] = DEFAULT_TIMEOUT):
        super().__init__(trans, [THeaderClientType.HEADERS])
        self.fdtrans = trans
        self.timeout = timeout
        self._next = 1
        self._awaiting: Optional[Tuple[str, int]] = None
        self._pushed: Optional[Tuple[str, int, int]] = None
        self.last_seqid = 0

    def writeMessageBegin(self, name: str, ttype: int, seqid: int) -> None:  # noqa: N802
        if ttype in (TMessageType.CALL, TMessageType.ONEWAY):
            seqid = self._next
            self._next = self._next + 1 if self._next < 0x7FFFFFFF else 1
            self.last_seqid = seqid
            self._awaiting = (_plain(name), seqid) if ttype == TMessageType.CALL else None
        super().writeMessageBegin(name, ttype, seqid)

    def wait_readable(self, deadline: Optional[float]) -> None:
        """Waits until a frame starts to arrive, or raises :class:`Timeout` at ``deadline``
        (checked only between frames, so a timeout never leaves half a frame read)."""
        sock = self.fdtrans.fdsock
        if deadline is None or sock.rbuf or sock.sock is None:
            return
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no reply within %.3g s" % (self.timeout or 0.0))
            ready, _, _ = select.select([sock.sock], [], [], left)
            if ready:
                return

    def read_frame_begin(self, deadline: Optional[float]) -> Tuple[str, int, int]:
        """The message header of the next frame (or of the one pushed back)."""
        if self._pushed is not None:
            header, self._pushed = self._pushed, None
            return header
        self.wait_readable(deadline)
        return super().readMessageBegin()

    def push_back(self, header: Tuple[str, int, int]) -> None:
        """Makes the frame whose header was just read (its body unread) the next one read."""
        self._pushed = header

    def awaits(self, name: str, seqid: int) -> bool:
        """Whether the frame just read (``name``, ``seqid``) is the reply being waited for."""
        a = self._awaiting
        return self.fdtrans.stream_kind() is None and a is not None and (name, seqid) == a

    def skip_frame(self) -> None:
        """Skips the rest of the frame whose header was just read, closing its fds."""
        self.skip(TType.STRUCT)
        super().readMessageEnd()
        self.fdtrans.close_received()

    def readMessageBegin(self) -> Tuple[str, int, int]:  # noqa: N802
        awaiting = self._awaiting
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                name, mtype, seqid = self.read_frame_begin(deadline)
            except Timeout:
                # The call is given up: its reply, if it comes, is skipped.
                self._awaiting = None
                raise
            if awaiting is not None and self.awaits(name, seqid):
                self._awaiting = None
                return name, mtype, seqid
            self.skip_frame()


def read_field(proto: Any, wanted: int, reader: Optional["Item"]) -> Any:
    """Reads a struct, returning field ``wanted`` read by ``reader`` (None if absent or no
    reader) and skipping every other field: a stream frame's payload."""
    value = None
    proto.readStructBegin()
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == wanted and reader is not None:
            value = reader.read(proto)
        else:
            proto.skip(ftype)
        proto.readFieldEnd()
    proto.readStructEnd()
    return value


def write_data_frame(
    proto: Any,
    name: str,
    mtype: int,
    seqid: int,
    kind: bytes,
    value: Any = None,
    codec: Optional["Item"] = None,
) -> None:
    """Writes and sends a stream data frame (docs/PROTOCOL.md, "Stream frames"): ``item``
    (field 0 = ``value`` written by ``codec``), ``error`` (field 1 = ``value``, written by
    ``codec``), ``end``, or ``abort`` (a ``TApplicationException`` naming ``value``).
    ``mtype`` is ONEWAY from a client, REPLY from a server."""
    if kind == b"error" and codec is None:
        # No declared error to write it as: the producer gave up instead.
        kind, value = b"abort", "stream error with no error codec: %r" % (value,)
    proto.fdtrans.set_header(b"fdrpc-stream", kind)
    THeaderProtocol.writeMessageBegin(proto, name, mtype, seqid)
    if kind == b"abort":
        TApplicationException(TApplicationException.INTERNAL_ERROR, str(value)).write(proto)
    else:
        proto.writeStructBegin(kind.decode())
        if codec is not None and kind in (b"item", b"error"):
            proto.writeFieldBegin("success" if kind == b"item" else "error", codec.ttype,
                                  0 if kind == b"item" else 1)
            codec.write(proto, value)
            proto.writeFieldEnd()
        proto.writeFieldStop()
        proto.writeStructEnd()
    proto.writeMessageEnd()
    proto.fdtrans.flush()


class Item:
    """How one stream or sink item travels: its Thrift type, and how to read and write it
    (``FD``, ``I32``, ``I64``, ``STRING``, or :func:`struct`). Calling it reads one."""

    def __init__(
        self,
        ttype: int,
        read: Callable[[CallProtocol], Any],
        write: Callable[[CallProtocol, Any], None],
    ) -> None:
        self.ttype, self.read, self.write = ttype, read, write

    def __call__(self, proto: CallProtocol) -> Any:
        return self.read(proto)


FD = Item(
    TType.I32,
    lambda proto: proto.fdtrans.take_fd(proto.readI32()),
    lambda proto, fd: proto.writeI32(proto.fdtrans.attach(fd)),
)
"""An fd item: read as an owned :class:`Fd`; written from an ``Fd`` or a raw descriptor (the
caller keeps it)."""

I32 = Item(TType.I32, lambda proto: proto.readI32(), lambda proto, v: proto.writeI32(v))
"""An ``i32`` item."""

I64 = Item(TType.I64, lambda proto: proto.readI64(), lambda proto, v: proto.writeI64(v))
"""An ``i64`` item."""

STRING = Item(
    TType.STRING, lambda proto: proto.readString(), lambda proto, v: proto.writeString(v)
)
"""A ``string`` item."""


def struct(cls: Callable[[], Any]) -> Item:
    """A generated struct ``cls`` as an item (its fd fields hold indices: take them with
    :meth:`Connection.take` before the next item is read)."""

    def read(proto: CallProtocol) -> Any:
        value = cls()
        value.read(proto)
        return value

    return Item(TType.STRUCT, read, lambda proto, v: v.write(proto))


class Stream(Generic[T]):
    """The items of a server stream: an iterator that grants credit as items are consumed
    (half the window at a time, as fdrpc's own clients do) and, closed before its end (or
    collected), sends ``cancel``: late items are skipped with their fds."""

    def __init__(
        self,
        conn: "Connection",
        method: str,
        seqid: int,
        item: Item,
        window: int,
        error: Optional[Item],
    ) -> None:
        self._conn, self._method, self._seqid = conn, method, seqid
        self._item, self._error = item, error
        self._window, self._consumed = window, 0
        self._done = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        proto = self._conn.protocol
        deadline = None if proto.timeout is None else time.monotonic() + proto.timeout
        while True:
            name, _, seqid = proto.read_frame_begin(deadline)
            kind = proto.fdtrans.stream_kind()
            if seqid != self._seqid or kind not in (b"item", b"end", b"error", b"abort"):
                proto.skip_frame()
                continue
            break
        if kind == b"item":
            value = self._read_field(0, self._item)
            self._consumed += 1
            if self._consumed >= max(1, self._window // 2):
                self._conn.control(self._method, self._seqid, b"credit", self._consumed)
                self._consumed = 0
            return value
        self._done = True
        if kind == b"end":
            proto.skip_frame()
            raise StopIteration
        if kind == b"error":
            raise StreamError(self._read_field(1, self._error))
        exc = TApplicationException()
        exc.read(proto)
        proto.readMessageEnd()
        proto.fdtrans.close_received()
        raise exc

    def _read_field(self, wanted: int, reader: Optional[Item]) -> Any:
        proto = self._conn.protocol
        value = read_field(proto, wanted, reader)
        proto.readMessageEnd()
        return value

    def close(self) -> None:
        """Gives the stream up: sends ``cancel`` unless it ended."""
        if not self._done:
            self._done = True
            if self._conn.is_open():
                self._conn.control(self._method, self._seqid, b"cancel")

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (a collected stream on a dead connection)
            pass


class Connection(Generic[T]):
    """One connection to an fdrpc server: ``client`` is the generated client over it."""

    def __init__(self, sock: socket.socket, client_class: Callable[[Any], T], timeout: Optional[float]):
        self.transport = FdHeaderTransport(FdSocket(sock))
        self.protocol = CallProtocol(self.transport, timeout)
        self.client: T = client_class(self.protocol)

    def attach(self, fd: Any) -> int:
        """Adds ``fd`` (an :class:`Fd` or a raw descriptor; the caller keeps it) to the next
        call; returns the index to put in its fd field."""
        return self.transport.attach(fd)

    def take(self, index: int) -> Fd:
        """The fd at ``index`` of the last reply, owned by the caller from now on."""
        return self.transport.take_fd(index)

    def stream(
        self,
        method: str,
        *args: Any,
        item: Item,
        window: int = 64,
        error: Optional[Item] = None,
    ) -> Stream[Any]:
        """Calls the stream method ``method`` (the generated ``send_``/``recv_`` pair) with
        ``args`` and returns its items; ``item`` reads one (:data:`FD`, :data:`I32`,
        :func:`struct`, ...). The opening reply's declared exception is raised here."""
        self.transport.set_header(b"fdrpc-credit", str(window).encode())
        getattr(self.client, "send_" + method)(*args)
        seqid = self.protocol.last_seqid
        getattr(self.client, "recv_" + method)()
        return Stream(self, _plain(method), seqid, item, window, error)

    def sink(
        self,
        method: str,
        *args: Any,
        items: Iterable[Any],
        item: Item,
        error: Optional[Item] = None,
    ) -> Any:
        """Calls the sink method ``method`` (the generated ``send_``/``recv_`` pair, whose
        arguments leave the sink out) with ``args``, sends ``items`` as the server grants
        credit, then ``end``, and returns the reply (its declared exception is raised). If
        the server answers or sends ``cancel`` before the items ran out, no more are sent.

        If the iterable raises :class:`StreamError`, its ``value`` is sent (written by
        ``error``) as the sink's declared error in place of ``end``, and the reply returned
        as usual. Any other exception from it aborts the sink (an ``abort`` frame naming it;
        the server answers ``PROTOCOL_ERROR``) and is raised again here."""
        getattr(self.client, "send_" + method)(*args)
        seqid = self.protocol.last_seqid
        name = _plain(method)
        proto = self.protocol
        credit = 0
        source = iter(items)
        ended = False
        while not ended:
            while credit == 0 and not ended:
                deadline = None if proto.timeout is None else time.monotonic() + proto.timeout
                header = proto.read_frame_begin(deadline)
                kind = self.transport.stream_kind()
                if proto.awaits(header[0], header[2]):
                    # The handler returned before the sink's end: its reply is next.
                    proto.push_back(header)
                    return getattr(self.client, "recv_" + method)()
                if header[2] == seqid and kind == b"credit":
                    credit += header_int(self.transport.get_headers(), b"fdrpc-credit", 0)
                elif header[2] == seqid and kind == b"cancel":
                    ended = True
                proto.skip_frame()
            if ended:
                break
            try:
                value = next(source)
            except StopIteration:
                self.control(name, seqid, b"end")
                break
            except StreamError as e:
                # The producer's declared error ends the sink; the handler answers.
                write_data_frame(proto, name, TMessageType.ONEWAY, seqid, b"error", e.value, error)
                break
            except Exception as e:
                # The producer failed: the sink is aborted, the server answers PROTOCOL_ERROR.
                write_data_frame(proto, name, TMessageType.ONEWAY, seqid, b"abort", e)
                try:
                    getattr(self.client, "recv_" + method)()
                except TApplicationException:
                    pass
                raise
            write_data_frame(proto, name, TMessageType.ONEWAY, seqid, b"item", value, item)
            credit -= 1
        return getattr(self.client, "recv_" + method)()

    def control(self, method: str, seqid: int, kind: bytes, credit: Optional[int] = None) -> None:
        """Sends a stream control frame (``credit``, ``cancel``, ``end``) for ``seqid``."""
        self.transport.set_header(b"fdrpc-stream", kind)
        if credit is not None:
            self.transport.set_header(b"fdrpc-credit", str(credit).encode())
        THeaderProtocol.writeMessageBegin(self.protocol, method, TMessageType.ONEWAY, seqid)
        self.protocol.writeStructBegin("control")
        self.protocol.writeFieldStop()
        self.protocol.writeStructEnd()
        self.protocol.writeMessageEnd()
        self.transport.flush()

    def is_open(self) -> bool:
        return self.transport.fdsock.sock is not None

    def close(self) -> None:
        """Closes the connection, and every fd received and not taken."""
        self.transport.close()

    def __enter__(self) -> "Connection[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    path: str,
    client_class: Callable[[Any], T],
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> Connection[T]:
    """Connects to the fdrpc server at ``path`` (``@name`` for an abstract socket) and
    returns a :class:`Connection` whose ``client`` is ``client_class`` (a generated
    ``Service.Client``) over it. Use it as a context manager."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect("\0" + path[1:] if path.startswith("@") else path)
    except BaseException:
        sock.close()
        raise
    return Connection(sock, client_class, timeout)


def from_socket(
    sock: socket.socket,
    client_class: Callable[[Any], T],
    timeout: Optional[float] = DEFAULT_TIMEOUT,
) -> Connection[T]:
    """A :class:`Connection` over an already-connected socket (which it now owns)."""
    return Connection(sock, client_class, timeout)
