"""Camera capture with OpenCV ``VideoCapture``: device index, video file, stream URL or a folder of
images; calibration from a ROS camera_info YAML. Pure (no ROS).

Two threads: *capture* reads frames as fast as the source delivers them (files and folders are
paced at ``fps``) into a one-frame slot; *delivery* hands the newest frame to ``on_frame``. When
delivery is slower than capture the older frame in the slot is overwritten and counted as dropped,
so a slow consumer sees fresh frames rather than a growing queue. A source that fails (camera
unplugged, stream down) is re-opened with exponential backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import os
from pathlib import Path
import threading
import time

import cv2
import numpy as np
import yaml

from mine_robot.drivers.transport import backoff_delays

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


class CameraConfigError(ValueError):
    """Bad calibration file or source specification."""


@dataclass(frozen=True)
class CameraCalibration:
    width: int
    height: int
    camera_name: str
    distortion_model: str
    k: tuple[float, ...]     # 9
    d: tuple[float, ...]
    r: tuple[float, ...]     # 9
    p: tuple[float, ...]     # 12


def load_calibration(path: str | os.PathLike) -> CameraCalibration:
    """Read a camera_info YAML (camera_calibration / camera_info_manager format)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CameraConfigError(f'cannot read camera calibration {path}: {exc}') from None
    if not isinstance(data, dict):
        raise CameraConfigError(f'{path}: not a camera_info YAML mapping')

    def matrix(key: str, size: int | None) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in data[key]['data'])
        except (KeyError, TypeError, ValueError):
            raise CameraConfigError(f'{path}: {key}.data missing or not numbers') from None
        if size is not None and len(values) != size:
            raise CameraConfigError(f'{path}: {key} has {len(values)} values, expected {size}')
        return values

    try:
        width, height = int(data['image_width']), int(data['image_height'])
    except (KeyError, TypeError, ValueError):
        raise CameraConfigError(f'{path}: image_width/image_height missing') from None
    if width <= 0 or height <= 0:
        raise CameraConfigError(f'{path}: image size {width}x{height} is not positive')
    k = matrix('camera_matrix', 9)
    if k[0] <= 0 or k[4] <= 0:
        raise CameraConfigError(f'{path}: focal lengths must be positive, got fx={k[0]} fy={k[4]}')
    return CameraCalibration(width, height, str(data.get('camera_name', 'camera')),
                             str(data.get('distortion_model', 'plumb_bob')), k,
                             matrix('distortion_coefficients', None), matrix('rectification_matrix', 9),
                             matrix('projection_matrix', 12))


@dataclass(frozen=True)
class CameraConfig:
    source: str                  # '0' (device index), file path, URL, or folder of images
    fps: float = 30.0            # pacing for files/folders; requested rate for devices
    loop: bool = True            # files/folders: start again at the end
    width: int = 0               # requested capture size for devices (0 = device default)
    height: int = 0
    reconnect_min: float = 0.2
    reconnect_max: float = 5.0

    def __post_init__(self):
        if not self.source:
            raise CameraConfigError('camera source is empty: set a device index, file, URL or folder')
        if not 0 < self.fps <= 1000:
            raise CameraConfigError(f'fps {self.fps} outside (0, 1000]')

    @property
    def kind(self) -> str:
        if self.source.isdigit():
            return 'device'
        if '://' in self.source:
            return 'url'
        if Path(self.source).is_dir():
            return 'folder'
        return 'file'


@dataclass(frozen=True)
class CameraStats:
    opened: bool
    captured: int
    delivered: int
    dropped: int
    read_failures: int
    reopens: int
    last_error: str
    finished: bool


class _Folder:
    """VideoCapture-like reader over the sorted images of a folder."""

    def __init__(self, folder: Path):
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.index = 0

    def isOpened(self) -> bool:
        return bool(self.files)

    def read(self):
        if self.index >= len(self.files):
            return False, None
        frame = cv2.imread(str(self.files[self.index]), cv2.IMREAD_COLOR)
        self.index += 1
        if frame is None:
            raise OSError(f'cannot decode image {self.files[self.index - 1]}')
        return True, frame

    def rewind(self) -> None:
        self.index = 0

    def release(self) -> None:
        pass


class CameraSource:
    """Capture thread + delivery thread. ``on_frame(frame_bgr, t_monotonic, index)``."""

    def __init__(self, config: CameraConfig, on_frame: Callable[[np.ndarray, float, int], None]):
        self.config = config
        self._on_frame = on_frame
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._slot: tuple[np.ndarray, float, int] | None = None
        self._lock = threading.Lock()
        self._s = dict(opened=False, captured=0, delivered=0, dropped=0, read_failures=0, reopens=0,
                       last_error='', finished=False)
        self._capture = threading.Thread(target=self._capture_loop, name='camera-capture', daemon=True)
        self._delivery = threading.Thread(target=self._delivery_loop, name='camera-delivery', daemon=True)

    def start(self) -> CameraSource:
        self._capture.start()
        self._delivery.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in (self._capture, self._delivery):
            if thread.is_alive():
                thread.join(timeout)

    def stats(self) -> CameraStats:
        with self._lock:
            return CameraStats(**self._s)

    def _put(self, **values) -> None:
        with self._lock:
            self._s.update(values)

    def _inc(self, name: str, error: str | None = None) -> None:
        with self._lock:
            self._s[name] += 1
            if error is not None:
                self._s['last_error'] = error

    def _open(self):
        kind = self.config.kind
        if kind == 'folder':
            cap = _Folder(Path(self.config.source))
        else:
            cap = cv2.VideoCapture(int(self.config.source) if kind == 'device' else self.config.source)
            if kind == 'device':
                if self.config.width and self.config.height:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.config.width)
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.config.height)
                cap.set(cv2.CAP_PROP_FPS, self.config.fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)     # do not let the driver queue old frames
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _capture_loop(self) -> None:
        delays = backoff_delays(self.config.reconnect_min, self.config.reconnect_max)
        paced = self.config.kind in ('file', 'folder')
        period = 1.0 / self.config.fps
        index = 0
        first = True
        while not self._stop.is_set():
            cap = self._open()
            if cap is None:
                self._put(last_error=f'cannot open camera source {self.config.source!r}', opened=False)
                self._stop.wait(next(delays))
                continue
            if not first:
                self._inc('reopens')
            first = False
            self._put(opened=True)
            delays = backoff_delays(self.config.reconnect_min, self.config.reconnect_max)
            next_time = time.monotonic()
            while not self._stop.is_set():
                if paced:
                    delay = next_time - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_time = max(next_time + period, time.monotonic() - period)
                try:
                    ok, frame = cap.read()
                except (OSError, cv2.error) as exc:
                    self._inc('read_failures', f'read failed: {exc}')
                    continue
                if not ok:
                    if paced and self.config.loop and (index > 0):
                        if isinstance(cap, _Folder):
                            cap.rewind()
                        else:
                            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        continue
                    if paced:
                        self._put(finished=True, opened=False, last_error='end of source')
                        cap.release()
                        return
                    self._inc('read_failures', 'camera stopped delivering frames; re-opening')
                    break
                t = time.monotonic()
                with self._cond:
                    if self._slot is not None:
                        self._inc('dropped')
                    self._slot = (frame, t, index)
                    self._cond.notify()
                self._inc('captured')
                index += 1
            cap.release()
            self._put(opened=False)
            if not self._stop.is_set():
                self._stop.wait(next(delays))

    def _delivery_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while self._slot is None and not self._stop.is_set():
                    self._cond.wait(0.5)
                item, self._slot = self._slot, None
            if item is None:
                continue
            try:
                self._on_frame(*item)
            except (ValueError, RuntimeError, TypeError) as exc:
                self._put(last_error=f'frame callback failed: {exc}')
                continue
            self._inc('delivered')
