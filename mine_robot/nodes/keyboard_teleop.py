"""``keyboard_teleop``: drive from a terminal (termios raw mode) -> ``cmd_vel/teleop``.

Keys: w/x faster forward/backward, a/d turn, s or space stop, q quit. While the command is
non-zero it is repeated at ``repeat_rate`` (so the mux input stays fresh); without a key press for
``key_timeout`` seconds it falls back to zero. A reader thread does the blocking terminal reads.
"""

from __future__ import annotations

import os
import select
import sys
import termios
import threading
import time
import tty

from geometry_msgs.msg import Twist
from rclpy.node import Node

from mine_robot.control.teleop import KEY_HELP, KeyboardConfig, KeyboardTeleop, TeleopError
from mine_robot.nodes._driving import twist
from mine_robot.ros import qos
from mine_robot.ros.params import ConfigError, declare
from mine_robot.ros.runner import run_node


class KeyboardTeleopNode(Node):
    def __init__(self, **kwargs):
        super().__init__('keyboard_teleop', **kwargs)
        values = {k: declare(self, k, d, desc, range=(0.001, 5.0)) for k, d, desc in (
            ('linear_step', 0.05, 'm/s per key press'), ('angular_step', 0.1, 'rad/s per key press'),
            ('max_linear', 0.3, 'm/s'), ('max_angular', 0.6, 'rad/s'))}
        rate = declare(self, 'repeat_rate', 10.0, 'repeat rate while moving (Hz)', range=(1.0, 100.0))
        self.key_timeout = declare(self, 'key_timeout', 2.0, 'stop after this long without a key (s)',
                                   range=(0.1, 60.0))
        try:
            self.keys = KeyboardTeleop(KeyboardConfig(**values))
        except TeleopError as exc:
            raise ConfigError(str(exc)) from exc
        self.fd = sys.stdin.fileno()
        if not os.isatty(self.fd):
            raise ConfigError('keyboard_teleop needs an interactive terminal on stdin')
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        self.pub = self.create_publisher(Twist, 'cmd_vel/teleop', qos.RELIABLE)
        self._lock = threading.Lock()
        self._last_key = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read_keys, name='keyboard', daemon=True)
        print(KEY_HELP, flush=True)
        self._thread.start()
        self.create_timer(1.0 / rate, self._repeat)

    def _read_keys(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            data = os.read(self.fd, 16)
            if not data:
                break
            for ch in data.decode(errors='ignore'):
                with self._lock:
                    out = self.keys.key(ch)
                    self._last_key = time.monotonic()
                self.pub.publish(twist(self.keys.v, self.keys.w))
                if out is None:
                    self._stop.set()
                    self.context.try_shutdown()
                    return
                print(f'\rv={out[0]:+.2f} m/s  w={out[1]:+.2f} rad/s   ', end='', flush=True)

    def _repeat(self) -> None:
        with self._lock:
            moving = self.keys.v != 0.0 or self.keys.w != 0.0
            if moving and time.monotonic() - self._last_key > self.key_timeout:
                self.keys.key('s')
                self.pub.publish(twist(0.0, 0.0))
                return
        if moving:
            self.pub.publish(twist(self.keys.v, self.keys.w))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def main(args=None):
    sys.exit(run_node(KeyboardTeleopNode, args))
