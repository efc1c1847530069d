"""The fdrpc transport for the stock Apache Thrift library: THeader frames whose fds travel
with ``SCM_RIGHTS`` (docs/PROTOCOL.md, sections 1-3).

- :class:`FdSocket` sends bytes with ``sendmsg`` + ``SCM_RIGHTS`` and receives with
  ``recvmsg`` (``MSG_CMSG_CLOEXEC``), keeping received fds in a FIFO.
- :class:`FdHeaderTransport` is a ``THeaderTransport`` that sets ``fdrpc-fds`` /
  ``fdrpc-fd-seq`` on each frame it writes and, for each frame it reads, takes ``fdrpc-fds``
  fds from the FIFO after checking ``fdrpc-fd-seq``.

Ownership: :meth:`FdHeaderTransport.attach` sends a descriptor the caller keeps (the kernel
sends a reference; close yours when you like). A received frame's fds belong to the transport
until taken with :meth:`FdHeaderTransport.take` (the caller then owns the fd) or the next
frame arrives (those nobody took are closed then), and :meth:`FdHeaderTransport.close` closes
every fd it still holds.
"""

from __future__ import annotations

import array
import collections
import os
import socket
from typing import Deque, Dict, List, Optional, Type, Union

from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransport,
)
from thrift.Thrift import TApplicationException
from thrift.transport.TTransport import TTransportBase, TTransportException

from .errors import ConnectionClosed, FdStreamError, ProtocolError
from .fd import Fd

SCM_MAX_FD = 253
"""Linux's most fds one ``sendmsg`` may carry."""


STREAM_KINDS = (b"item", b"error", b"end", b"abort", b"credit", b"cancel")
"""The values of the ``fdrpc-stream`` header (docs/PROTOCOL.md, "Stream frames")."""


def header_int(
    headers: Dict[bytes, bytes],
    name: bytes,
    default: int,
    error: Type[ProtocolError] = ProtocolError,
) -> int:
    """The non-negative decimal integer in header ``name`` (``default`` when absent); any
    other value raises ``error``."""
    value = headers.get(name)
    if value is None:
        return default
    if not value.isdigit() or len(value) > 10:
        raise error("header %r is not a count: %r" % (name.decode(), value[:32]))
    return int(value)


class FdSocket(TTransportBase):
    """A connected ``AF_UNIX`` ``SOCK_STREAM`` socket that moves fds with its bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: Optional[socket.socket] = sock
        self.rbuf = bytearray()
        self.fifo: Deque[int] = collections.deque()
        self.out_fds: List[int] = []
        self._wbuf = b""

    def isOpen(self) -> bool:  # noqa: N802 (Thrift's name)
        return self.sock is not None

    def open(self) -> None:
        pass

    def close(self) -> None:
        """Closes the socket and every received fd no frame has claimed."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        while self.fifo:
            os.close(self.fifo.popleft())

    def read(self, sz: int) -> bytes:
        if self.sock is None:
            raise ConnectionClosed("the connection is closed", TTransportException.NOT_OPEN)
        if not self.rbuf:
            # Not socket.recv_fds: it ignores its flags, so the fds would not be close-on-exec.
            data, ancdata, flags, _ = self.sock.recvmsg(
                65536, socket.CMSG_SPACE(SCM_MAX_FD * 4), socket.MSG_CMSG_CLOEXEC
            )
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % 4])
                    self.fifo.extend(fds)
            if flags & socket.MSG_CTRUNC:
                raise FdStreamError("control data truncated: fds were lost")
            if not data:
                raise ConnectionClosed("the peer closed the connection")
            self.rbuf += data
        out = bytes(self.rbuf[:sz])
        del self.rbuf[:sz]
        return out

    def write(self, buf: bytes) -> None:
        self._wbuf += buf

    def flush(self) -> None:
        if self.sock is None:
            raise ConnectionClosed("the connection is closed", TTransportException.NOT_OPEN)
        data, fds = self._wbuf, self.out_fds
        self._wbuf, self.out_fds = b"", []
        # Every fd rides with the first byte of a sendmsg that starts at or before its frame's
        # last byte; more than 253 go in several sendmsg calls of one byte each.
        try:
            while fds:
                batch, fds = fds[:SCM_MAX_FD], fds[SCM_MAX_FD:]
                n = 1 if fds else len(data)
                sent = socket.send_fds(self.sock, [data[:n]], batch)
                data = data[sent:]
            while data:
                data = data[self.sock.send(data) :]
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed("the peer closed the connection: %s" % e) from e


class FdHeaderTransport(THeaderTransport):
    """THeader framing plus fdrpc's fd headers, over an :class:`FdSocket`."""

    def __init__(self, fdsock: FdSocket) -> None:
        super().__init__(fdsock, [THeaderClientType.HEADERS], THeaderSubprotocolID.COMPACT)
        self.fdsock = fdsock
        self.pending: List[int] = []
        # Fds handed over with `attach_owned`: closed once their frame is written.
        self.owned: List[Union[int, Fd]] = []
        self.sent = 0
        self.claimed = 0
        self.received: List[Optional[int]] = []

    def attach(self, fd: Union[int, Fd]) -> int:
        """Adds ``fd`` to the next frame written; returns its index for the fd field. The
        caller keeps its descriptor (and closes it when it likes: what travels is the open
        file, taken by the kernel when the frame is written)."""
        self.pending.append(fd.fileno() if isinstance(fd, Fd) else fd)
        return len(self.pending) - 1

    def attach_owned(self, fd: Union[int, Fd]) -> int:
        """As :meth:`attach`, but the transport takes ``fd`` and closes it once the frame
        carrying it is written (or the connection closes)."""
        self.owned.append(fd)
        return self.attach(fd)

    def flush(self) -> None:
        n = len(self.pending)
        if n:
            self.set_header(b"fdrpc-fds", str(n).encode())
            self.set_header(b"fdrpc-fd-seq", str(self.sent).encode())
        self.fdsock.out_fds, self.pending = self.pending, []
        self.sent += n
        try:
            super().flush()
        finally:
            self._close_owned()

    def _close_owned(self) -> None:
        owned, self.owned = self.owned, []
        for fd in owned:
            if isinstance(fd, Fd):
                fd.close()
            else:
                os.close(fd)

    def readFrame(self, req_sz: int) -> None:  # noqa: N802 (Thrift's name)
        try:
            super().readFrame(req_sz)
        except ConnectionClosed:
            raise
        except TTransportException as e:
            if e.type == TTransportException.END_OF_FILE:
                raise ConnectionClosed("the peer closed the connection: %s" % e.message) from e
            raise ProtocolError("not a THeader frame: %s" % e.message) from e
        except TApplicationException as e:
            raise ProtocolError("not a THeader frame: %s" % e.message) from e
        headers = self.get_headers()
        n = header_int(headers, b"fdrpc-fds", 0, FdStreamError)
        seq = header_int(headers, b"fdrpc-fd-seq", self.claimed, FdStreamError)
        if seq != self.claimed:
            raise FdStreamError("fd sequence mismatch: %d != %d" % (seq, self.claimed))
        if n > len(self.fdsock.fifo):
            raise FdStreamError("frame declares %d fds, %d arrived" % (n, len(self.fdsock.fifo)))
        self.close_received()
        self.received = [self.fdsock.fifo.popleft() for _ in range(n)]
        self.claimed += n

    def take(self, index: int) -> int:
        """The fd at ``index`` of the last frame read, as a raw descriptor the caller now
        owns (see :meth:`take_fd` for an owning object)."""
        if not 0 <= index < len(self.received):
            raise FdStreamError(
                "fd index %d out of range (the frame has %d)" % (index, len(self.received))
            )
        fd = self.received[index]
        if fd is None:
            raise FdStreamError("fd index %d claimed twice" % index)
        self.received[index] = None
        return fd

    def take_fd(self, index: int) -> Fd:
        """The fd at ``index`` of the last frame read, as an :class:`Fd` the caller owns."""
        return Fd(self.take(index))

    def stream_kind(self) -> Optional[bytes]:
        """The ``fdrpc-stream`` header of the last frame read (``b"item"``, ``b"credit"``,
        ...), or None: a frame that has one is never a call or a call's reply. A kind that
        is not one of the six is a :class:`ProtocolError` (docs/PROTOCOL.md: "Malformed
        stream frames end the connection")."""
        kind = self.get_headers().get(b"fdrpc-stream")
        if kind is not None and kind not in STREAM_KINDS:
            raise ProtocolError("unknown stream frame kind %r" % kind[:32])
        return kind

    def close_received(self) -> None:
        """Closes the fds of the last frame read that nobody took."""
        for fd in self.received:
            if fd is not None:
                os.close(fd)
        self.received = []

    def close(self) -> None:
        """Closes the connection and every fd this transport still holds: those of the last
        frame nobody took, and those received for frames not yet read."""
        self.close_received()
        self.pending = []
        self._close_owned()
        self.fdsock.close()
