"""WGS84 <-> local metric frame.

The ``map`` frame is a local tangent plane at the area datum: x true east, y true north, metres
(REP-103/105). It is realised with an azimuthal equidistant projection centred on the datum,
which matches an ENU tangent plane to well under a millimetre over a few hundred metres and has
true east/north axes everywhere near the datum (unlike UTM grid axes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

import numpy as np
from pyproj import Transformer


class GeoError(ValueError):
    """Coordinates that are not valid WGS84 longitude/latitude."""


def check_lonlat(lon, lat, what: str = 'coordinate') -> None:
    """Raise GeoError unless every (lon, lat) is finite and inside the WGS84 ranges."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise GeoError(f'{what}: non-finite longitude/latitude')
    if np.any(np.abs(lat) > 90.0) or np.any(np.abs(lon) > 180.0):
        bad = np.flatnonzero((np.abs(lat) > 90.0) | (np.abs(lon) > 180.0))[0]
        raise GeoError(
            f'{what}: ({float(np.ravel(lon)[bad])}, {float(np.ravel(lat)[bad])}) is not WGS84 '
            'longitude/latitude (RFC 7946 needs [lon, lat] in degrees; projected coordinates such '
            'as UTM metres are not accepted)')


@dataclass(frozen=True)
class LocalFrame:
    """Local east/north metric frame at a WGS84 datum (``lat``, ``lon`` in degrees)."""

    lat: float
    lon: float
    _fwd: Transformer = field(init=False, repr=False, compare=False)
    _inv: Transformer = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        check_lonlat(self.lon, self.lat, 'datum')
        proj = (f'+proj=aeqd +lat_0={self.lat!r} +lon_0={self.lon!r} +x_0=0 +y_0=0 '
                '+datum=WGS84 +units=m +no_defs')
        object.__setattr__(self, '_fwd', Transformer.from_crs('EPSG:4326', proj, always_xy=True))
        object.__setattr__(self, '_inv', Transformer.from_crs(proj, 'EPSG:4326', always_xy=True))

    def to_local(self, lon, lat):
        """WGS84 degrees -> (x east, y north) metres; scalars or arrays."""
        check_lonlat(lon, lat)
        return self._fwd.transform(lon, lat)

    def to_wgs84(self, x, y):
        """(x east, y north) metres -> (lon, lat) degrees; scalars or arrays."""
        return self._inv.transform(x, y)

    @classmethod
    def centred_on(cls, lon, lat) -> LocalFrame:
        """A frame whose datum is the centre of the bounding box of the given points."""
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        check_lonlat(lon, lat)
        return cls(lat=float((lat.min() + lat.max()) / 2), lon=float((lon.min() + lon.max()) / 2))


def wrap_angle(angle):
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2.0 * math.pi) - math.pi
