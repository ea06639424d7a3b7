"""The detection benchmark's scenario suites: the generator's mine overrides keep the layout."""

from __future__ import annotations

import pytest

from mine_robot.sim.generator import GeneratorError, generate_scenario


def test_mine_overrides_change_only_the_mines_metal_and_depth():
    base = generate_scenario(100, objects=40, width=8, height=8, difficulty='hard')
    spec = generate_scenario(100, objects=40, width=8, height=8, difficulty='hard',
                             mine_metal_g=(0.8, 1.5), mine_depth_m=(0.02, 0.10))
    assert [(o.id, o.x, o.y) for o in base.objects] == [(o.id, o.x, o.y) for o in spec.objects]
    assert base.soil == spec.soil
    mines = [o for o in spec.objects if o.kind == 'mine']
    assert len(mines) == 20
    assert all(0.8 <= o.metal_g <= 1.5 and 0.02 <= o.depth_m <= 0.10 for o in mines)
    clutter = [(o.metal_g, o.depth_m) for o in spec.objects if o.kind == 'clutter']
    assert clutter == [(o.metal_g, o.depth_m) for o in base.objects if o.kind == 'clutter']
    with pytest.raises(GeneratorError, match='mine_metal_g'):
        generate_scenario(1, difficulty='hard', mine_metal_g=(2.0, 1.0))
