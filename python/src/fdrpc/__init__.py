"""fdrpc for Python: call and serve fdrpc services with the stock Apache Thrift library and
the code its compiler generates, file descriptors included.

    import fdrpc
    from broker import Broker             # thrift --gen py broker.thrift (fdrpc introspect)

    with fdrpc.connect("/run/broker.sock", Broker.Client) as conn:
        index = conn.client.open("/etc/hostname")
        with conn.take(index) as fd:       # an owned fd: closed at the end of the block
            print(os.read(fd.fileno(), 100))
        for memfd in conn.stream("memfds", 3, item=fdrpc.FD):
            with memfd:
                ...

Errors: every exception the package raises on its own derives from :class:`fdrpc.Error`
(:class:`ProtocolError`, :class:`FdStreamError`, :class:`ConnectionClosed`,
:class:`Timeout`, :class:`StreamError`); declared exceptions are the generated classes.

See docs/python.md in the repository for ownership rules, streams and serving.
"""

from .client import (
    DEFAULT_TIMEOUT,
    FD,
    I32,
    I64,
    STRING,
    CallProtocol,
    Connection,
    Item,
    Stream,
    connect,
    from_socket,
    struct,
)
from . import aio
from .errors import ConnectionClosed, Error, FdStreamError, ProtocolError, StreamError, Timeout
from .fd import Fd
from .server import Server, ServerConnection, ServerProtocol, serve, serve_connection
from .transport import SCM_MAX_FD, FdHeaderTransport, FdSocket

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "FD",
    "I32",
    "I64",
    "SCM_MAX_FD",
    "STRING",
    "CallProtocol",
    "Connection",
    "ConnectionClosed",
    "Error",
    "Fd",
    "FdHeaderTransport",
    "FdSocket",
    "FdStreamError",
    "Item",
    "ProtocolError",
    "Server",
    "ServerConnection",
    "ServerProtocol",
    "Stream",
    "StreamError",
    "Timeout",
    "aio",
    "connect",
    "from_socket",
    "serve",
    "serve_connection",
    "struct",
]
