"""fdrpc streams from a stock Python Thrift client: the server stream `memfds` and the sink
`total_size`, driven by hand from docs/PROTOCOL.md ("Streams and sinks") on top of the code the
thrift compiler generated. Usage: streams_client.py SOCKET GEN_DIR"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, sys.argv[2])

from conformance import Conformance  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.Thrift import TMessageType, TType  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType  # noqa: E402

from fdrpc import FdHeaderTransport, FdSocket  # noqa: E402


def check(ok, what):
    """Fails the peer (exit status 1) unless `ok`: unlike `assert`, never compiled out by -O."""
    if not ok:
        raise RuntimeError(f"check failed: {what!r}")

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
trans = FdHeaderTransport(FdSocket(sock))
proto = THeaderProtocol(trans, [THeaderClientType.HEADERS])
client = Conformance.Client(proto)


def control(method, seqid, kind, credit=None):
    """Sends a stream control frame: a ONEWAY message with an empty struct."""
    trans.set_header(b"fdrpc-stream", kind)
    if credit is not None:
        trans.set_header(b"fdrpc-credit", str(credit).encode())
    proto.writeMessageBegin(method, TMessageType.ONEWAY, seqid)
    proto.writeStructBegin("control")
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeMessageEnd()
    trans.flush()


def read_frame():
    """Reads a frame: (stream kind or None, credit, field 0 index or None, name, seqid)."""
    name, mtype, seqid = proto.readMessageBegin()
    headers = trans.get_headers()
    kind = headers.get(b"fdrpc-stream")
    credit = int(headers.get(b"fdrpc-credit", b"0"))
    return kind, credit, name, mtype, seqid


def read_item_struct():
    """Reads a result struct whose field 0 is an fd index; returns the index or None."""
    index = None
    proto.readStructBegin()
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        if fid == 0 and ftype == TType.I32:
            index = proto.readI32()
        else:
            proto.skip(ftype)
        proto.readFieldEnd()
    proto.readStructEnd()
    proto.readMessageEnd()
    return index


def server_stream(count, window):
    """Asks for `count` memfds with a window of `window`, granting more after every half."""
    trans.set_header(b"fdrpc-credit", str(window).encode())
    client.send_memfds(count)
    seqid = client._seqid
    client.recv_memfds()  # the opening reply
    got = 0
    taken_since_grant = 0
    while True:
        kind, _, name, mtype, sid = read_frame()
        check(name == "memfds" and sid == seqid and mtype == TMessageType.REPLY, (name, sid, mtype))
        if kind == b"end":
            read_item_struct()
            break
        check(kind == b"item", kind)
        fd = trans.take(read_item_struct())
        check(os.pread(fd, 64, 0).decode() == str(got), (got, os.pread(fd, 64, 0)))
        check(os.get_inheritable(fd) is False, 'os.get_inheritable(fd) is False')
        os.close(fd)
        got += 1
        taken_since_grant += 1
        if taken_since_grant == window // 2:
            control("memfds", seqid, b"credit", taken_since_grant)
            taken_since_grant = 0
    check(got == count, got)


# Server streams, twice on the same seqid (the generated client always sends 0).
server_stream(40, 4)
server_stream(7, 2)

# Sink: send memfds of known sizes as the server grants credit, then the end, then read the
# final reply.
sizes = [i % 9 + 1 for i in range(60)]
client.send_total_size()
seqid = client._seqid
credit = 0
sent = 0
while sent < len(sizes):
    while credit == 0:
        kind, granted, name, mtype, sid = read_frame()
        check(kind == b"credit" and sid == seqid, (kind, sid))
        read_item_struct()
        credit += granted
    fd = os.memfd_create("sink", os.MFD_CLOEXEC)
    os.write(fd, b"x" * sizes[sent])
    trans.set_header(b"fdrpc-stream", b"item")
    index = trans.attach(fd)
    proto.writeMessageBegin("total_size", TMessageType.ONEWAY, seqid)
    proto.writeStructBegin("item")
    proto.writeFieldBegin("success", TType.I32, 0)
    proto.writeI32(index)
    proto.writeFieldEnd()
    proto.writeFieldStop()
    proto.writeStructEnd()
    proto.writeMessageEnd()
    trans.flush()
    os.close(fd)
    credit -= 1
    sent += 1
control("total_size", seqid, b"end")
# Credit frames may still come before the reply.
while True:
    kind, _, name, mtype, sid = read_frame()
    if kind is None:
        break
    read_item_struct()
result = Conformance.total_size_result()
result.read(proto)
proto.readMessageEnd()
check(result.success == sum(sizes), (result.success, sum(sizes)))

trans.close_received()
sock.close()
print("python streams: all passed")
