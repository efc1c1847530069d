"""The exceptions this package raises on its own.

Every one derives from :class:`Error`. Two also derive from the standard or Thrift type that
code written for stock Thrift already catches: :class:`ConnectionClosed` is a
``TTransportException`` (``END_OF_FILE``), so a stock server loop still ends on it, and
:class:`Timeout` is a ``TimeoutError``. A declared exception of a method is raised as its
generated class, and an ``abort`` as Thrift's ``TApplicationException``, as stock Thrift does.
"""

from __future__ import annotations

from typing import Any

from thrift.transport.TTransport import TTransportException


class Error(Exception):
    """Base of the exceptions fdrpc raises on its own."""


class ProtocolError(Error):
    """The peer broke the wire protocol (docs/PROTOCOL.md): a frame, header or stream frame
    that cannot be what it claims. The connection cannot be trusted after it: close it."""


class FdStreamError(ProtocolError):
    """The fd stream is broken (docs/PROTOCOL.md section 3): fds lost in truncated control
    data, a frame claiming fds that never came or out of order, an fd index out of range or
    taken twice. The connection must be closed."""


class ConnectionClosed(Error, TTransportException):
    """The peer closed the connection, or this side already had."""

    def __init__(self, message: str, kind: int = TTransportException.END_OF_FILE) -> None:
        TTransportException.__init__(self, kind, message)


class Timeout(Error, TimeoutError):
    """A call's reply (or a stream's next frame) did not come within the connection's
    timeout. The call is given up: its late reply, if any, is skipped with its fds, and the
    connection stays usable."""


class StreamError(Error):
    """A stream or sink ended with its declared error: ``value`` is field 1 of the ``error``
    frame, read by the ``error`` item given for the stream (None without one).

    A producer ends its stream with its declared error by raising ``StreamError(value)``
    from the iterable it streams (the ``error`` item given writes ``value``)."""

    def __init__(self, value: Any) -> None:
        super().__init__(value)
        self.value = value
