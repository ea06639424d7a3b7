"""Find the package's installed data (config/, urdf/, sim/, launch/).

With a ROS install (colcon), data lives in ``share/mine_robot`` and is found through the ament
index. In pip mode (editable install) the source tree is used directly.
"""

from functools import cache
import os
from pathlib import Path
from typing import Any

import yaml

PACKAGE = 'mine_robot'
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


class ResourceError(RuntimeError):
    """A package data file could not be found."""


@cache
def share_dir() -> Path:
    """The directory holding config/, urdf/, sim/ and launch/ for this package."""
    if (_SOURCE_ROOT / 'package.xml').is_file() and (_SOURCE_ROOT / 'config').is_dir():
        return _SOURCE_ROOT
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = Path(prefix) / 'share' / PACKAGE
        if prefix and (candidate / 'package.xml').is_file():
            return candidate
    raise ResourceError(
        f'cannot find the {PACKAGE} share directory: not a source checkout and not in '
        'AMENT_PREFIX_PATH (source your ROS workspace or run scripts/setup.sh)')


def resource(*parts: str) -> Path:
    """Path of a data file, e.g. ``resource('config', 'robot.yaml')``; raises if missing."""
    path = share_dir().joinpath(*parts)
    if not path.exists():
        raise ResourceError(f'missing package resource: {path}')
    return path


def read_yaml(path: str | Path, error: type[Exception], what: str) -> Any:
    """Parse a YAML file; an unreadable file or bad YAML raises ``error`` naming ``what`` and path."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise error(f'cannot read {what} {path}: {exc}') from exc
    except yaml.YAMLError as exc:
        raise error(f'{what} {path} is not valid YAML: {exc}') from exc
