"""An owned file descriptor."""

from __future__ import annotations

import os
from typing import Optional


class Fd:
    """A file descriptor this object owns: closed by :meth:`close`, at the end of a ``with``
    block, or (as a last resort) when the object is collected. :meth:`detach` gives the raw
    descriptor away. Passing an ``Fd`` to :meth:`FdHeaderTransport.attach
    <fdrpc.transport.FdHeaderTransport.attach>` sends it and keeps it owned here."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        if fd < 0:
            raise ValueError("not a file descriptor: %d" % fd)
        self._fd: Optional[int] = fd

    def fileno(self) -> int:
        """The raw descriptor, still owned by this object."""
        if self._fd is None:
            raise ValueError("the fd is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def detach(self) -> int:
        """Gives up ownership: returns the raw descriptor, which the caller must close."""
        fd = self.fileno()
        self._fd = None
        return fd

    def close(self) -> None:
        """Closes the descriptor (once; later calls do nothing)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> "Fd":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return "Fd(%s)" % ("closed" if self._fd is None else self._fd)
