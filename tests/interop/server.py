"""A Conformance server written with the stock Apache Thrift library and the fd shim, for the
Rust client to call. Usage: server.py SOCKET GEN_DIR (serves one connection, then exits)."""

import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[2])

from conformance import Conformance  # noqa: E402
from conformance.ttypes import Bundle, Failure, Peer  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402
from thrift.transport.TTransport import TTransportException  # noqa: E402

from fdrpc import FdHeaderTransport, FdSocket  # noqa: E402


class Handler:
    def __init__(self, trans, conn):
        self.trans = trans
        self.conn = conn
        self.vault = {}

    def echo(self, bundle):
        # Send back the very fds that came in (the frame's received fds).
        t = self.trans
        fds = [t.take(i) for i in bundle.fds]
        spare = t.take(bundle.spare) if bundle.spare is not None else None
        out = Bundle(label=bundle.label, fds=[t.attach(f) for f in fds])
        if spare is not None:
            out.spare = t.attach(spare)
        self.to_close = fds + ([spare] if spare is not None else [])
        return out

    def open(self, path):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise Failure(message=e.strerror)
        self.to_close = [fd]
        return self.trans.attach(fd)

    def fail(self, reason):
        fd = os.memfd_create("log", os.MFD_CLOEXEC)
        os.write(fd, reason.encode())
        self.to_close = [fd]
        raise Failure(message=reason, log=self.trans.attach(fd))

    def deposit(self, key, fd):
        old = self.vault.pop(key, None)
        if old is not None:
            os.close(old)
        self.vault[key] = self.trans.take(fd)

    def withdraw(self, key):
        fd = self.vault.pop(key, None)
        if fd is None:
            return None
        self.to_close = [fd]
        return self.trans.attach(fd)

    def whoami(self):
        pid, uid, gid = struct.unpack("3i", self.conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        return Peer(pid=pid, uid=uid, gid=gid)

    def memfds(self, count):
        raise NotImplementedError("streams need fdrpc's stream frames")

    def total_size(self):
        raise NotImplementedError("sinks need fdrpc's stream frames")

    def _fdrpc_idl(self):
        return open(os.path.join(sys.argv[2], "..", "conformance.thrift")).read()


listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
conn, _ = listener.accept()
trans = FdHeaderTransport(FdSocket(conn))
proto = THeaderProtocol(trans, [THeaderClientType.HEADERS])
handler = Handler(trans, conn)
processor = Conformance.Processor(handler)
try:
    while True:
        handler.to_close = []
        processor.process(proto, proto)
        # The reply (and its fds) went out: our copies close now, as do unclaimed fds.
        for fd in handler.to_close:
            os.close(fd)
        trans.close_received()
except TTransportException:
    pass
for fd in handler.vault.values():
    os.close(fd)
print("python server: connection closed", flush=True)
