"""Serving fdrpc calls with a stock-compiler generated ``Processor``.

A stock processor reads every frame as a call. On fdrpc's wire some frames are not calls: a
frame with an ``fdrpc-stream`` header is a stream frame (docs/PROTOCOL.md: "never a call"),
such as the ``credit`` a client sends after a stream ended or the ``cancel`` of a call it gave
up. Run as calls, they would invoke the method with every argument ``None``. The
:class:`ServerProtocol` here drops them (closing their fds) before the processor sees them.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable, Optional, Tuple, Union

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TTransportException

from .fd import Fd
from .transport import FdHeaderTransport, FdSocket


class ServerProtocol(THeaderProtocol):
    """The server's protocol: stream frames are dropped, never handed to the processor."""

    def __init__(self, trans: FdHeaderTransport) -> None:
        super().__init__(trans, [THeaderClientType.HEADERS])
        self.fdtrans = trans
        self.dropped = 0

    def readMessageBegin(self) -> Tuple[str, int, int]:  # noqa: N802
        while True:
            name, mtype, seqid = super().readMessageBegin()
            if self.fdtrans.stream_kind() is None:
                return name, mtype, seqid
            # A stream frame for a stream this server does not have: dropped, fds closed.
            self.skip(TType.STRUCT)
            super().readMessageEnd()
            self.fdtrans.close_received()
            self.dropped += 1


class ServerConnection:
    """One connection being served: what a handler needs for fds."""

    def __init__(self, sock: socket.socket) -> None:
        self.transport = FdHeaderTransport(FdSocket(sock))
        self.protocol = ServerProtocol(self.transport)

    def attach(self, fd: Union[int, Fd]) -> int:
        """Adds ``fd`` to the reply being built (the handler keeps its own descriptor: close
        it after the handler returns, or pass an :class:`Fd` and keep it alive until then);
        returns the index for the fd field."""
        return self.transport.attach(fd)

    def take(self, index: int) -> Fd:
        """The fd at ``index`` of the call being handled, owned by the caller from now on."""
        return self.transport.take_fd(index)

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
        while True:
            try:
                processor.process(conn.protocol, conn.protocol)
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
