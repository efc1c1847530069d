"""fdrpc for stock Apache Thrift in Python: a socket transport that carries fds.

This is the whole of what another language needs beyond its Thrift library (see
docs/PROTOCOL.md, "Writing a client in another language"):

- ``FdSocket`` sends bytes with ``sendmsg`` + ``SCM_RIGHTS`` and receives with ``recvmsg``
  (``MSG_CMSG_CLOEXEC``), keeping received fds in a FIFO.
- ``FdHeaderTransport`` is a ``THeaderTransport`` that sets ``fdrpc-fds`` /
  ``fdrpc-fd-seq`` on each frame it writes and, for each frame it reads, takes ``fdrpc-fds``
  fds from the FIFO after checking ``fdrpc-fd-seq``.

An fd field of a generated struct holds an index: ``attach(fd)`` returns the index to put in
the next outgoing message, and ``received[i]`` is the fd that index ``i`` of the last incoming
message refers to.
"""

import array
import collections
import os
import socket

from thrift.transport.THeaderTransport import (
    THeaderClientType,
    THeaderSubprotocolID,
    THeaderTransport,
)
from thrift.transport.TTransport import TTransportBase, TTransportException

SCM_MAX_FD = 253


class FdStreamError(Exception):
    """The fd stream is broken: the connection must be closed."""


class FdSocket(TTransportBase):
    """A connected AF_UNIX SOCK_STREAM socket that moves fds with its bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.rbuf = bytearray()
        self.fifo = collections.deque()
        self.out_fds = []

    def isOpen(self):
        return self.sock is not None

    def open(self):
        pass

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        while self.fifo:
            os.close(self.fifo.popleft())

    def read(self, sz):
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
                raise TTransportException(TTransportException.END_OF_FILE, "peer closed")
            self.rbuf += data
        out = bytes(self.rbuf[:sz])
        del self.rbuf[:sz]
        return out

    def write(self, buf):
        self._wbuf = getattr(self, "_wbuf", b"") + buf

    def flush(self):
        data, fds = getattr(self, "_wbuf", b""), self.out_fds
        self._wbuf, self.out_fds = b"", []
        # Every fd rides with the first byte of a sendmsg that starts at or before its frame's
        # last byte; more than 253 go in several sendmsg calls of one byte each.
        while fds:
            batch, fds = fds[:SCM_MAX_FD], fds[SCM_MAX_FD:]
            n = 1 if fds else len(data)
            sent = socket.send_fds(self.sock, [data[:n]], batch)
            data = data[sent:]
        while data:
            data = data[self.sock.send(data):]


class FdHeaderTransport(THeaderTransport):
    """THeader framing plus fdrpc's fd headers."""

    def __init__(self, fdsock):
        super().__init__(fdsock, [THeaderClientType.HEADERS], THeaderSubprotocolID.COMPACT)
        self.fdsock = fdsock
        self.pending = []
        self.sent = 0
        self.claimed = 0
        self.received = []

    def attach(self, fd):
        """Adds ``fd`` (a dup is sent; the caller keeps its own) to the next message; returns
        its index."""
        self.pending.append(fd)
        return len(self.pending) - 1

    def flush(self):
        n = len(self.pending)
        if n:
            self.set_header(b"fdrpc-fds", str(n).encode())
            self.set_header(b"fdrpc-fd-seq", str(self.sent).encode())
        self.fdsock.out_fds, self.pending = self.pending, []
        self.sent += n
        super().flush()

    def readFrame(self, req_sz):
        super().readFrame(req_sz)
        headers = self.get_headers()
        n = int(headers.get(b"fdrpc-fds", b"0"))
        seq = headers.get(b"fdrpc-fd-seq")
        if seq is not None and int(seq) != self.claimed:
            raise FdStreamError("fd sequence mismatch: %s != %d" % (seq, self.claimed))
        if n > len(self.fdsock.fifo):
            raise FdStreamError("frame declares %d fds, %d arrived" % (n, len(self.fdsock.fifo)))
        self.close_received()
        self.received = [self.fdsock.fifo.popleft() for _ in range(n)]
        self.claimed += n

    def take(self, index):
        """The fd at ``index`` of the last incoming message; the caller now owns it."""
        fd = self.received[index]
        if fd is None:
            raise FdStreamError("fd index %d claimed twice" % index)
        self.received[index] = None
        return fd

    def close_received(self):
        """Closes the fds of the last incoming message that nobody took."""
        for fd in self.received:
            if fd is not None:
                os.close(fd)
        self.received = []
