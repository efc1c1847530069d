"""A stock Apache Thrift client calling two services served on one socket, through Thrift's
own TMultiplexedProtocol (`Service:method`), with fds. Usage: multiplexed_client.py SOCKET
GEN_DIR, where GEN_DIR holds the code the thrift compiler generated from the server's live
IDL (package `services`)."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[2])

from services import Conformance, Tally  # noqa: E402
from services.ttypes import Bundle  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.protocol.TMultiplexedProtocol import TMultiplexedProtocol  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402

from fdrpc import FdHeaderTransport, FdSocket  # noqa: E402


def check(ok, what):
    if not ok:
        raise SystemExit("multiplexed client: " + what)


def memfd(text):
    fd = os.memfd_create("py", os.MFD_CLOEXEC)
    os.write(fd, text.encode())
    return fd


def identity(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
trans = FdHeaderTransport(FdSocket(sock))
proto = THeaderProtocol(trans, [THeaderClientType.HEADERS])
conformance = Conformance.Client(TMultiplexedProtocol(proto, "Conformance"))
tally = Tally.Client(TMultiplexedProtocol(proto, "Tally"))

# Calls to both services interleave on the one connection.
mine = memfd("echoed")
back = conformance.echo(Bundle(label="mux", fds=[trans.attach(mine)], spare=None))
check(back.label == "mux", "echo label")
got = trans.take(back.fds[0])
check(identity(got) == identity(mine), "echo returned another file")
os.close(got)

check(tally.add(5) == 5, "first add")
sized = memfd("twelve bytes")
check(tally.size(trans.attach(sized)) == 12, "size through an fd")
check(tally.add(2) == 7, "second add")
os.close(mine)
os.close(sized)

# A plain name still reaches the one service that has it.
check(Conformance.Client(proto).whoami().pid == os.getpid(), "plain whoami")

# Introspection answers with every service served.
idl = conformance._fdrpc_idl()
check("service Conformance" in idl and "service Tally" in idl, "introspection")

trans.close_received()
sock.close()
print("multiplexed client: all calls passed")
