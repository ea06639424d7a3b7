"""Seeded random scenarios (``mine-robot scenario generate``).

``generate_scenario(seed, objects, width, height, difficulty)`` returns a validated
:class:`~mine_robot.sim.scenario.Scenario`; the same arguments always give the same field.
Difficulty sets the soil and the object mix:

- ``easy``: large metal UXO (200–3000 g, 10–40 cm) in clean soil, little clutter;
- ``medium``: anti-personnel mines with 2–10 g of metal, some UXO, a surface mine, metal and
  stone clutter, moderately magnetic soil;
- ``hard``: minimum-metal mines (0.5–2 g) with clutter placed 0.5–0.8 m from them, in
  mineralised laterite (strong correlated ground response, drift, high permittivity, many rocks).

Objects keep at least 0.5 m apart (so a 0.5 m detection radius can tell them apart) and 0.3 m
inside the area's edge; the robot starts 1.5 m west of the area's south-west corner facing east.
"""

from __future__ import annotations

import math

import numpy as np

from mine_robot.sim.scenario import Scenario, scenario_from_dict

DIFFICULTIES = ('easy', 'medium', 'hard')

SOILS = {
    'easy': {'md_ground_amplitude': 0.001, 'md_ground_correlation_m': 1.5, 'md_noise': 0.001,
             'md_drift': 0.0001, 'gpr_permittivity': 4.0, 'gpr_noise': 0.005,
             'gpr_clutter_density': 0.1, 'gpr_attenuation': 2.0},
    'medium': {'md_ground_amplitude': 0.003, 'md_ground_correlation_m': 1.0, 'md_noise': 0.002,
               'md_drift': 0.0003, 'gpr_permittivity': 6.0, 'gpr_noise': 0.01,
               'gpr_clutter_density': 0.5, 'gpr_attenuation': 3.0},
    'hard': {'md_ground_amplitude': 0.012, 'md_ground_correlation_m': 0.6, 'md_noise': 0.004,
             'md_drift': 0.001, 'gpr_permittivity': 12.0, 'gpr_noise': 0.02,
             'gpr_clutter_density': 2.0, 'gpr_attenuation': 6.0},
}

MIN_SPACING = 0.5
EDGE = 0.3


class GeneratorError(ValueError):
    """Generator arguments that cannot produce a scenario."""


def _mine(rng, i, x, y, metal, depth=(0.02, 0.15)):
    model = str(rng.choice(['PMN-2', 'PMA-2', 'PMA-3', 'Type-72', 'VS-50']))
    return {'id': f'M{i}', 'kind': 'mine', 'model': model, 'x': x, 'y': y,
            'depth_m': round(float(rng.uniform(*depth)), 3), 'metal_g': metal,
            'diameter_m': round(float(rng.uniform(0.07, 0.12)), 3)}


def _uxo(rng, i, x, y):
    return {'id': f'U{i}', 'kind': 'uxo', 'model': str(rng.choice(['mortar-60mm', 'mortar-82mm', 'grenade'])),
            'x': x, 'y': y, 'depth_m': round(float(rng.uniform(0.1, 0.4)), 3),
            'metal_g': round(float(rng.uniform(200.0, 3000.0)), 1),
            'diameter_m': round(float(rng.uniform(0.06, 0.12)), 3),
            'yaw_deg': round(float(rng.uniform(0, 180)), 1)}


def _clutter(rng, i, x, y):
    if rng.random() < 0.3:
        return {'id': f'C{i}', 'kind': 'clutter', 'model': 'rock', 'x': x, 'y': y,
                'depth_m': round(float(rng.uniform(0.02, 0.3)), 3), 'metal_g': 0.0,
                'diameter_m': round(float(rng.uniform(0.05, 0.2)), 3)}
    return {'id': f'C{i}', 'kind': 'clutter', 'model': str(rng.choice(['fragment', 'nail', 'can', 'wire'])),
            'x': x, 'y': y, 'depth_m': round(float(rng.uniform(0.0, 0.15)), 3),
            'metal_g': round(float(rng.uniform(0.5, 20.0)), 2),
            'diameter_m': round(float(rng.uniform(0.01, 0.06)), 3)}


def generate_scenario(seed: int, objects: int = 20, width: float = 20.0, height: float = 20.0,
                      difficulty: str = 'medium', name: str | None = None,
                      datum: tuple[float, float] = (44.7722, 17.1910),
                      mine_metal_g: tuple[float, float] | None = None,
                      mine_depth_m: tuple[float, float] | None = None) -> Scenario:
    """``mine_metal_g`` / ``mine_depth_m`` (low, high) override the buried mines' metal mass and
    depth ranges of the difficulty (the soil, clutter and layout stay the difficulty's; the random
    draws are the same, so the layout does not move)."""
    if difficulty not in DIFFICULTIES:
        raise GeneratorError(f'difficulty {difficulty!r} is not one of {list(DIFFICULTIES)}')
    if not (2.0 <= width <= 1000.0 and 2.0 <= height <= 1000.0):
        raise GeneratorError(f'area {width} x {height} m: each side must be 2–1000 m')
    if objects < 1:
        raise GeneratorError('need at least one object')
    for label, rng_range in (('mine_metal_g', mine_metal_g), ('mine_depth_m', mine_depth_m)):
        if rng_range is not None and not (len(rng_range) == 2 and 0.0 < rng_range[0] <= rng_range[1]):
            raise GeneratorError(f'{label} must be (low, high) with 0 < low <= high, got {rng_range!r}')
    depth = mine_depth_m or (0.02, 0.15)
    usable = (width - 2 * EDGE) * (height - 2 * EDGE)
    if objects * MIN_SPACING ** 2 * 2.5 > usable:
        raise GeneratorError(f'{objects} objects do not fit {MIN_SPACING} m apart in {width} x {height} m')
    rng = np.random.default_rng(seed)
    placed: list[tuple[float, float]] = []

    def free(x, y):
        return EDGE <= x <= width - EDGE and EDGE <= y <= height - EDGE and all(
            math.hypot(x - px, y - py) >= MIN_SPACING for px, py in placed)

    def place(near: tuple[float, float] | None = None) -> tuple[float, float]:
        for _ in range(2000):
            if near is None:
                x, y = rng.uniform(EDGE, width - EDGE), rng.uniform(EDGE, height - EDGE)
            else:
                r, a = rng.uniform(MIN_SPACING, 0.8), rng.uniform(0, 2 * math.pi)
                x, y = near[0] + r * math.cos(a), near[1] + r * math.sin(a)
            if free(x, y):
                placed.append((round(float(x), 3), round(float(y), 3)))
                return placed[-1]
        raise GeneratorError('could not place every object; use fewer objects or a larger area')

    items = []
    n_hazards = max(1, int(round(objects * (0.6 if difficulty == 'easy' else 0.5))))
    for i in range(n_hazards):
        x, y = place()
        if difficulty == 'easy':
            items.append(_uxo(rng, i, x, y))
        elif difficulty == 'medium':
            if i == 0:
                items.append({'id': f'S{i}', 'kind': 'surface', 'model': 'PMA-2', 'x': x, 'y': y,
                              'depth_m': 0.0, 'metal_g': 2.0, 'diameter_m': 0.07,
                              'yaw_deg': round(float(rng.uniform(0, 360)), 1)})
            elif rng.random() < 0.25:
                items.append(_uxo(rng, i, x, y))
            else:
                metal = mine_metal_g or (2.0, 10.0)
                items.append(_mine(rng, i, x, y, round(float(rng.uniform(*metal)), 2), depth))
        else:
            metal = mine_metal_g or (0.5, 2.0)
            items.append(_mine(rng, i, x, y, round(float(rng.uniform(*metal)), 2), depth))
    hazard_xy = list(placed)
    for j in range(objects - n_hazards):
        near = hazard_xy[j % len(hazard_xy)] if difficulty == 'hard' else None
        try:
            x, y = place(near)
        except GeneratorError:
            x, y = place()
        items.append(_clutter(rng, j, x, y))
    data = {
        'name': name or f'generated_{difficulty}_s{seed}',
        'datum': {'lat': datum[0], 'lon': datum[1]},
        'area': {'search_area': [[0, 0], [width, 0], [width, height], [0, height]],
                 # the access lane the robot starts on (declared safe ground)
                 'safe_access': [[[-3.5, -0.3], [0.0, -0.3], [0.0, 1.4], [-3.5, 1.4]]]},
        'soil': dict(SOILS[difficulty]),
        'robot': {'x': -1.5, 'y': 0.55, 'yaw_deg': 0.0},
        'objects': items,
    }
    return scenario_from_dict(data, where='generated scenario')
