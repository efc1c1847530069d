"""A Conformance server written with the stock Apache Thrift library and the fdrpc package,
for the Rust client to call: fds both ways, a declared exception with an fd, a server stream
(`memfds`) produced as the client grants credit, a sink (`total_size`) consumed as it
grants credit. Usage: server.py SOCKET GEN_DIR (serves one
connection, then exits)."""

import os
import socket
import sys

sys.path.insert(0, sys.argv[2])

import fdrpc  # noqa: E402
from conformance import Conformance  # noqa: E402
from conformance.ttypes import Bundle, Failure, Peer  # noqa: E402


def memfd(text):
    fd = fdrpc.Fd(os.memfd_create("py", os.MFD_CLOEXEC))
    os.write(fd.fileno(), text.encode())
    return fd


class Handler:
    def __init__(self, conn):
        self.conn = conn
        self.vault = {}
        self.cancelled = 0

    def echo(self, bundle):
        # Send back the very fds that came in: taken from the call, handed over to the reply.
        c = self.conn
        out = Bundle(label=bundle.label, fds=[c.attach_owned(c.take(i)) for i in bundle.fds])
        if bundle.spare is not None:
            out.spare = c.attach_owned(c.take(bundle.spare))
        return out

    def open(self, path):
        try:
            fd = fdrpc.Fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            raise Failure(message=e.strerror)
        return self.conn.attach_owned(fd)

    def fail(self, reason):
        raise Failure(message=reason, log=self.conn.attach_owned(memfd(reason)))

    def deposit(self, key, fd):
        old = self.vault.pop(key, None)
        if old is not None:
            old.close()
        self.vault[key] = self.conn.take(fd)

    def withdraw(self, key):
        fd = self.vault.pop(key, None)
        if fd is None:
            return None
        return self.conn.attach_owned(fd)

    def whoami(self):
        pid, uid, gid = self.conn.peer()
        return Peer(pid=pid, uid=uid, gid=gid)

    def memfds(self, count):
        def items():
            sent = 0
            try:
                while sent < count:
                    with memfd(str(sent)) as fd:
                        yield fd  # written before the generator resumes
                    sent += 1
            finally:
                if sent < count:
                    self.cancelled += 1  # closed early: the client cancelled

        self.conn.stream_reply(items(), item=fdrpc.FD)

    def total_size(self):
        total = 0
        for fd in self.conn.sink_items(item=fdrpc.FD, window=16):
            with fd:
                total += os.fstat(fd.fileno()).st_size
        return total

    def _fdrpc_idl(self):
        return open(os.path.join(sys.argv[2], "..", "conformance.thrift")).read()


listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(sys.argv[1])
listener.listen(1)
print("ready", flush=True)
sock, _ = listener.accept()
handlers = []


def make(conn):
    handlers.append(Handler(conn))
    return Conformance.Processor(handlers[-1])


fdrpc.serve_connection(sock, make)
for fd in handlers[0].vault.values():
    fd.close()
print("python server: connection closed, %d streams cancelled" % handlers[0].cancelled, flush=True)
