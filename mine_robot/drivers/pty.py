"""A virtual serial device on a pseudo-terminal pair, for tests, benchmarks and bench-top demos.

The driver opens ``path`` (a stable symlink to the pty slave, like a udev ``/dev/serial/by-id``
name); the "device" side writes to and reads from the master. ``unplug()`` closes the master (the
driver sees an I/O error, exactly as when a USB adapter is pulled) and removes the symlink;
``replug()`` creates a fresh pty behind the same path.
"""

from __future__ import annotations

import os
from pathlib import Path
import select
import tempfile
import tty


class PtyDevice:
    def __init__(self, path: str | os.PathLike | None = None):
        if path is None:
            self._tmp = tempfile.mkdtemp(prefix='mine_robot_pty_')
            path = Path(self._tmp) / 'tty'
        else:
            self._tmp = None
        self.path = str(path)
        self.master: int | None = None
        self.replug()

    def replug(self) -> None:
        """(Re)create the pty and point ``path`` at its slave."""
        if self.master is not None:
            self.unplug()
        master, slave = os.openpty()
        tty.setraw(slave)          # no echo, no CR/LF translation, 8-bit clean
        tty.setraw(master)
        name = os.ttyname(slave)
        os.close(slave)            # the driver opens the slave by path
        tmp = self.path + '.new'
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.replace(tmp, self.path)
        self.master = master

    def unplug(self) -> None:
        """Close the master (the driver's reads fail) and remove the device path."""
        if self.master is not None:
            os.close(self.master)
            self.master = None
        if os.path.lexists(self.path):
            os.unlink(self.path)

    def write(self, data: bytes) -> None:
        if self.master is None:
            raise OSError('pty device is unplugged')
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self.master], [], 5.0)
            if not ready:
                raise TimeoutError('pty write stalled for 5 s (is the driver reading?)')
            n = os.write(self.master, view)
            view = view[n:]

    def write_some(self, data) -> int:
        """Write what the pty takes now, without blocking; the number of bytes written."""
        master = self.master
        if master is None:
            raise OSError('pty device is unplugged')
        _, ready, _ = select.select([], [master], [], 0.0)
        if not ready:
            return 0
        if os.get_blocking(master):
            os.set_blocking(master, False)     # a partial write instead of a wait for space
        try:
            return os.write(master, data)
        except BlockingIOError:
            return 0

    def read(self, timeout: float = 0.0, size: int = 65536) -> bytes:
        """Bytes the driver wrote to the device (empty if none within ``timeout``)."""
        master = self.master
        if master is None:
            return b''
        try:
            ready, _, _ = select.select([master], [], [], timeout)
            return os.read(master, size) if ready else b''
        except OSError:          # EIO: the driver has not opened the slave; EBADF: unplugged meanwhile
            return b''

    def close(self) -> None:
        self.unplug()
        if self._tmp is not None and os.path.isdir(self._tmp):
            os.rmdir(self._tmp)

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
