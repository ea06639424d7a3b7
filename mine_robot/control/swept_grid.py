"""Swept ground as a raster: the safety monitor's fast answer to "is this wheel on swept ground?".

The coverage tracker keeps the exact swept polygon for reports; the safety monitor asks a much
narrower question many times per control period (every wheel patch at every predicted pose), and
shapely differences against a growing polygon cost half a core at 1x sim speed. Here swept and
declared-safe ground are cells of a boolean grid (default 1 cm). Each new pose fills the detector
outline swept since the previous pose (the convex hull of the two placed outlines, densified like
the tracker), so ground counts as swept the moment the coils pass over it; a wheel check fills the
four contact patches into a small window and counts the cells that are not ok.

Rasterisation marks a cell when its centre is inside the polygon, so edges are exact to half a
cell. Unswept ground under a wheel narrower than ``2 * tolerance`` is ignored (see
``SweptGroundRule``): the answer is robust to that half-cell error and to pinholes between
consecutive swaths. The grid grows (in whole blocks) when a pose or polygon lands outside it.
"""

from __future__ import annotations

from collections.abc import Iterable
import math

import cv2
import numpy as np

SHIFT = 4                     # cv2 fixed-point bits: polygon vertices at 1/16 cell
_ONE = 1 << SHIFT


def cell_for(bounds, requested: float = 0.01, max_cells: int = 20_000_000, margin: float = 3.0) -> float:
    """The requested cell, or coarser so a grid over ``bounds`` (+ margin) stays under max_cells."""
    minx, miny, maxx, maxy = bounds
    area = (maxx - minx + 2 * margin) * (maxy - miny + 2 * margin)
    return max(float(requested), math.sqrt(area / max_cells))


class SweptGrid:
    """A growable boolean raster in map coordinates (x east, y north; row = y, column = x)."""

    def __init__(self, cell: float = 0.01, margin: float = 3.0, max_cells: int = 60_000_000):
        if not 0.002 <= cell <= 0.1:
            raise ValueError(f'grid cell must be in [0.002, 0.1] m, got {cell}')
        self.cell = float(cell)
        self.margin = float(margin)
        self.max_cells = int(max_cells)
        self.x0 = self.y0 = 0.0
        self.ok = np.zeros((0, 0), np.uint8)
        self.revision = 0             # counts writes: a reader may cache answers per revision

    # ---- extent
    def _ensure(self, minx: float, miny: float, maxx: float, maxy: float) -> None:
        h, w = self.ok.shape
        if w and self.x0 <= minx and self.y0 <= miny and \
                maxx < self.x0 + w * self.cell and maxy < self.y0 + h * self.cell:
            return
        if w:
            minx, miny = min(minx, self.x0), min(miny, self.y0)
            maxx, maxy = max(maxx, self.x0 + w * self.cell), max(maxy, self.y0 + h * self.cell)
        minx, miny = minx - self.margin, miny - self.margin
        maxx, maxy = maxx + self.margin, maxy + self.margin
        nw = int(math.ceil((maxx - minx) / self.cell))
        nh = int(math.ceil((maxy - miny) / self.cell))
        if nw * nh > self.max_cells:
            raise ValueError(f'swept-ground grid of {nw} x {nh} cells at {self.cell} m exceeds '
                             f'{self.max_cells} cells: use a coarser cell')
        # keep the old origin on the new cell lattice, so old cells copy over without resampling
        ox = self.x0 - math.ceil((self.x0 - minx) / self.cell) * self.cell if w else minx
        oy = self.y0 - math.ceil((self.y0 - miny) / self.cell) * self.cell if w else miny
        nw = int(math.ceil((maxx - ox) / self.cell))
        nh = int(math.ceil((maxy - oy) / self.cell))
        grid = np.zeros((nh, nw), np.uint8)
        if w:
            i0, j0 = int(round((self.y0 - oy) / self.cell)), int(round((self.x0 - ox) / self.cell))
            grid[i0:i0 + h, j0:j0 + w] = self.ok
        self.ok, self.x0, self.y0 = grid, ox, oy

    def _pixels(self, pts: np.ndarray) -> np.ndarray:
        """(K, 2) map points -> fixed-point pixel coordinates (cell centres at integers)."""
        px = (np.asarray(pts, dtype=float) - (self.x0, self.y0)) / self.cell - 0.5
        return np.round(px * _ONE).astype(np.int32)

    # ---- writing
    def fill_convex(self, pts: np.ndarray) -> None:
        pts = np.asarray(pts, dtype=float)
        self._ensure(*pts.min(axis=0), *pts.max(axis=0))
        cv2.fillConvexPoly(self.ok, self._pixels(pts), 1, cv2.LINE_8, SHIFT)
        self.revision += 1

    def fill_polygon(self, geom) -> None:
        """Any shapely (Multi)Polygon, holes kept unswept."""
        from shapely.geometry import MultiPolygon, Polygon
        polys = [geom] if isinstance(geom, Polygon) else list(getattr(geom, 'geoms', []))
        for p in polys:
            if not isinstance(p, Polygon) and not isinstance(p, MultiPolygon):
                continue
            if p.is_empty:
                continue
            self._ensure(*p.bounds)
            mask = np.zeros_like(self.ok)
            cv2.fillPoly(mask, [self._pixels(np.asarray(p.exterior.coords))], 1, cv2.LINE_8, SHIFT)
            if p.interiors:
                cv2.fillPoly(mask, [self._pixels(np.asarray(r.coords)) for r in p.interiors], 0,
                             cv2.LINE_8, SHIFT)
            self.ok |= mask
            self.revision += 1

    # ---- reading
    def window(self, groups: list) -> tuple[list[np.ndarray], np.ndarray]:
        """Rasterise each group of convex polygons (map coords) into one common window.

        A group is an (N, K, 2) array of N polygons with K vertices (or a list of (K, 2) arrays).
        Returns ([inside mask per group], grid values) over that window, all boolean; cells
        outside the grid read False (never swept / not allowed / not a zone)."""
        groups = [np.asarray(g, dtype=float).reshape(-1, np.shape(g)[-2], 2) if len(g) else
                  np.zeros((0, 1, 2)) for g in groups]
        allpts = np.concatenate([g.reshape(-1, 2) for g in groups])
        lo = np.floor((allpts.min(axis=0) - (self.x0, self.y0)) / self.cell).astype(int) - 1
        hi = np.ceil((allpts.max(axis=0) - (self.x0, self.y0)) / self.cell).astype(int) + 2
        shape = (int(hi[1] - lo[1]), int(hi[0] - lo[0]))
        origin = np.array([self.x0, self.y0]) + lo * self.cell
        masks = []
        for g in groups:
            m = np.zeros(shape, np.uint8)
            px = np.round(((g - origin) / self.cell - 0.5) * _ONE).astype(np.int32)
            for poly in px:
                cv2.fillConvexPoly(m, poly, 1, cv2.LINE_8, SHIFT)
            masks.append(m > 0)
        h, w = self.ok.shape
        values = np.zeros(shape, bool)
        r0, r1 = max(lo[1], 0), min(hi[1], h)
        c0, c1 = max(lo[0], 0), min(hi[0], w)
        if r0 < r1 and c0 < c1:
            values[r0 - lo[1]:r1 - lo[1], c0 - lo[0]:c1 - lo[0]] = self.ok[r0:r1, c0:c1] > 0
        return masks, values

    def not_ok(self, polys: Iterable[np.ndarray]) -> np.ndarray:
        """Boolean window: cells inside any of ``polys`` (convex, map coords) that are not ok."""
        (inside,), ok = self.window([list(polys)])
        return inside & ~ok
