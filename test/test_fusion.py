"""Fusion engine: association across sensors and lanes, log-odds classification, explanations."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from mine_robot.detection.types import Detection
from mine_robot.fusion import FusionEngine, FusionError, fusion_config_from_dict
from mine_robot.resources import resource


def config():
    params = yaml.safe_load(resource('config', 'detection.yaml').read_text())['detection_fusion'][
        'ros__parameters']
    data = {k: v for k, v in params.items() if k != 'sensors'}
    data['sensors'] = json.loads(params['sensors'])
    return fusion_config_from_dict(data)


def md(t, x, y, conf=0.99, mass=2.0, depth=0.05, snr=20.0):
    return Detection(t=t, x=x, y=y, depth=depth, confidence=conf, strength=0.05, sensor='metal',
                     sigma=0.03, extra={'mass_g': mass, 'snr': snr})


def gpr(t, x, y, slant, refl, heading=0.0):
    return Detection(t=t, x=x, y=y, depth=slant, confidence=0.99, strength=0.03, sensor='gpr', sigma=0.04,
                     extra={'slant_range_m': slant, 'heading': heading, 'reflectivity': refl,
                            'range_tolerance_m': 0.08})


def drive(engine, y=0.0, x0=0.0, x1=6.0, t0=0.0, v=0.3):
    """Feed robot poses along a lane (heading east) so fusion sees the GPR footprint pass."""
    n = int((x1 - x0) / v * 50)
    for k in range(n):
        engine.add_pose(t0 + k / 50, x0 + k / 50 * v, y, 0.0)


def test_same_target_seen_twice_merges():
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.00, 0.50)])
    eng.update([md(50.0, 3.03, 0.48)])        # the neighbouring lane, a minute later
    assert len(eng.targets) == 1
    tgt = eng.targets[0]
    assert tgt.evidence['metal'].hits == 2
    assert tgt.x == pytest.approx(3.015, abs=1e-3) and tgt.sigma < 0.03


def test_distinct_objects_stay_distinct():
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.0, 0.0), md(1.1, 3.6, 0.0)])
    assert len(eng.targets) == 2


def test_metal_with_gpr_hyperbola_is_a_mine_and_explained():
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.0, 0.05, mass=1.0, depth=0.08)])
    # GPR on the lane centre (y = 0) sees slant range sqrt(0.05^2 + 0.08^2)
    eng.update([gpr(2.0, 3.01, 0.0, math.hypot(0.05, 0.08), refl=0.2)])
    drive(eng)
    assert len(eng.targets) == 1
    tgt = eng.targets[0]
    assert tgt.classification == 'mine'
    assert tgt.sensors == ['gpr', 'metal']
    assert tgt.confidence > 0.85
    assert 'gpr hit' in tgt.explanation and 'metal hit' in tgt.explanation


def test_gpr_only_body_is_kept_down_ranked_once_the_metal_detector_passed_silently():
    eng = FusionEngine(config())
    eng.update([gpr(2.0, 4.0, 0.0, 0.07, refl=0.25)])
    drive(eng)
    (tgt,) = eng.targets
    assert tgt.sensors == ['gpr']
    # a strong hyperbola with no metal response: reported while the metal detector has not
    # passed; its silence then down-ranks it (a stone: every mine the benchmarks know has metal),
    # and it stays in the record with the GPR's evidence
    assert tgt.classification == 'clutter' and tgt in eng.targets
    assert 'metal passed, no response' in tgt.explanation and 'gpr hit' in tgt.explanation
    assert tgt.depth == pytest.approx(0.07)


def test_strong_hyperbola_without_metal_is_reported_until_the_metal_detector_passes_silently():
    eng = FusionEngine(config())
    eng.update([gpr(2.0, 4.0, 0.0, 0.07, refl=0.5)])
    assert eng.targets[0].classification == 'unknown'
    assert 'waiting for metal' in eng.targets[0].explanation
    drive(eng, x0=3.0)
    # every mine has some metal: a body the metal detector passed without a sound is a stone,
    # down-ranked but kept with its evidence
    (tgt,) = eng.targets
    assert tgt.classification == 'clutter' and 'metal passed, no response' in tgt.explanation


def test_metal_alarm_with_gpr_silent_is_kept_while_the_gpr_sensitivity_is_unknown():
    # until the radar has shown what it can see here (its minimum detectable reflectivity comes
    # with its detections), its silence does not reject a metal alarm: no hazard is lost this way
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.0, 0.02, mass=3.0)])
    assert eng.targets[0].classification == 'unknown'      # GPR still to pass: undecided
    assert 'waiting for gpr' in eng.targets[0].explanation
    drive(eng)
    (tgt,) = eng.targets
    assert tgt.evidence['gpr'].missed
    assert tgt.classification == 'unknown' and tgt in eng.reported()


def gpr_floor(eng, mdr, t=0.5, x=0.5, y=-3.0):
    """A far-away GPR hit that tells fusion the radar's current minimum detectable reflectivity."""
    det = gpr(t, x, y, 0.2, refl=0.02)
    det.extra['mdr'] = mdr
    eng.update([det])


def test_metal_clutter_rejected_by_a_sensitive_gpr_array_and_kept_in_the_record():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.03)                      # a mine body (0.15) stands 5x above the floor
    eng.update([md(1.0, 3.0, 0.22, mass=3.0, depth=0.08)])   # under the second antenna
    drive(eng)
    tgt = eng.targets[-1]
    assert tgt.classification == 'clutter' and tgt in eng.targets and tgt not in eng.reported()
    assert 'gpr passed, no response' in tgt.explanation and 'metal ~3.0 g' in tgt.explanation


def test_a_blind_gpr_rejects_nothing():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.5)                       # laterite: a mine body would be below the floor
    eng.update([md(1.0, 3.0, 0.22, mass=3.0, depth=0.08)])
    drive(eng)
    assert eng.targets[-1].classification == 'unknown'


def test_metal_clutter_rejected_by_a_trusted_gpr_miss_and_kept_in_the_record():
    # with a GPR whose silence is trusted (llr_miss -3, e.g. an antenna array in clean soil) the
    # dual-sensor rule makes a metal alarm clutter; it stays in the record with its evidence
    data = {'prior_llr': -1.0, 'sensors': {
        'metal': {'bins': [0.0, 0.9], 'llr_hit': [1.0, 1.6], 'metal': True, 'gate_m': 0.2},
        'gpr': {'association': 'slant_range', 'feature': 'reflectivity', 'bins': [0.0, 0.1],
                'llr_hit': [0.0, 3.0], 'llr_miss': -3.0, 'mount': [0.78, 0.0], 'reach_m': 0.12,
                'miss_delay_m': 0.45, 'gate_m': 0.15, 'miss_min_depth_m': 0.02}}}
    eng = FusionEngine(fusion_config_from_dict(data))
    eng.update([md(1.0, 3.0, 0.02, mass=3.0)])
    drive(eng)
    (tgt,) = eng.targets
    assert tgt.classification == 'clutter'
    assert 'gpr passed, no response' in tgt.explanation
    assert tgt in eng.targets and tgt.evidence['metal'].hits == 1
    assert tgt not in eng.reported()


def test_gpr_miss_says_nothing_about_an_object_on_the_surface():
    # a surface mine (metal fit at 0 cm): the GPR cannot tell it from the ground-surface echo
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.0, 0.02, mass=2.0, depth=0.0)])
    drive(eng)
    (tgt,) = eng.targets
    assert 'gpr passed, blind at 0 cm depth' in tgt.explanation
    assert tgt.confidence == pytest.approx(1 / (1 + math.exp(-(-1.0 + 1.6))), abs=1e-6)
    assert tgt in eng.reported()


def test_sensor_that_passed_before_the_target_existed_still_counts():
    # the GPR reports 0.3 m after its antenna passed; by then the metal detector (same head) has
    # passed the object too, and that pass still counts as a look
    eng = FusionEngine(config())
    n = int(3.3 / 0.3 * 50)
    for k in range(n):
        eng.add_pose(k / 50, k / 50 * 0.3, 0.0, 0.0)
    # the head (0.78 m ahead of base_link) is at x = 4.08: the object at 3.8 is 0.28 m behind it
    eng.update([gpr(n / 50, 3.8, 0.0, 0.07, refl=0.25)])
    drive(eng, x0=3.3, x1=4.5, t0=n / 50)
    assert eng.targets[0].evidence['metal'].missed


def test_metal_beside_the_gpr_array_stays_unknown_not_clutter():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.03)
    eng.update([md(1.0, 3.0, 0.7)])           # 0.26 m beyond the outer antenna: never in its beam
    drive(eng)
    assert eng.targets[-1].classification == 'unknown'
    assert eng.targets[-1] in eng.reported()


def test_shallow_metal_between_two_antennas_gets_no_gpr_verdict():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.03)
    eng.update([md(1.0, 3.0, 0.11, depth=0.06)])   # 11 cm off both antennas, 6 cm deep: 61 deg
    drive(eng)
    tgt = eng.targets[-1]
    assert tgt.classification == 'unknown' and 'too far off its beam' in tgt.explanation


def test_weak_gpr_reflector_alone_is_not_a_hazard():
    eng = FusionEngine(config())
    eng.update([gpr(2.0, 4.0, 0.0, 0.2, refl=0.02)])       # a root or a small stone
    drive(eng)
    assert eng.targets[0].confidence < 0.5


def test_unknown_sensor_and_bad_config_are_clear_errors():
    eng = FusionEngine(config())
    with pytest.raises(FusionError, match='not in the fusion config'):
        eng.update([Detection(t=0, x=0, y=0, depth=0, confidence=0.5, strength=1, sensor='lidar')])
    with pytest.raises(FusionError, match='unknown keys'):
        fusion_config_from_dict({'sensors': {'x': {'colour': 'red'}}})
    with pytest.raises(FusionError, match='same, non-zero length'):
        fusion_config_from_dict({'sensors': {'x': {'bins': [0, 1], 'llr_hit': [1]}}})


def test_new_sensor_joins_with_one_config_entry():
    cfg = config()
    data = {'prior_llr': cfg.prior_llr, 'sensors': {s.name: {} for s in cfg.sensors}}
    data['sensors']['thermal'] = {'feature': 'confidence', 'bins': [0.0, 0.8], 'llr_hit': [0.5, 3.0]}
    eng = FusionEngine(fusion_config_from_dict(data))
    eng.update([Detection(t=0, x=1, y=1, depth=0, confidence=0.95, strength=1, sensor='thermal')])
    assert eng.targets[0].sensors == ['thermal']
    assert eng.targets[0].classification == 'mine'
    assert eng.config.sensor('thermal').topic == 'detections/thermal'


def test_first_id_lets_a_restarted_engine_continue_numbering():
    engine = FusionEngine(config(), first_id=4_230_010_001)
    first = engine.update([md(1.0, 1.0, 2.0)])
    second = engine.update([md(2.0, 4.0, 2.0)])
    assert [t.id for t in first + second] == [4_230_010_001, 4_230_010_002]


def fit(t, x, y, mass, depth, peak, peak_xy, cov=(0.0009, 0.0, 0.0009), snr=30.0):
    """A metal-detector fit as md_detector reports it: position covariance and where/how strongly
    the coils saw the object."""
    return Detection(t=t, x=x, y=y, depth=depth, confidence=0.99, strength=peak, sensor='metal',
                     sigma=math.sqrt(max(cov[0], cov[2])),
                     extra={'mass_g': mass, 'snr': snr, 'cov_xx': cov[0], 'cov_xy': cov[1],
                            'cov_yy': cov[2], 'peak_signal': peak, 'peak_x': peak_xy[0],
                            'peak_y': peak_xy[1]})


def test_big_object_seen_from_the_side_is_one_target_and_the_side_fit_stays_in_the_record():
    eng = FusionEngine(config())
    # first pass: the array went by 0.5 m beside a 900 g mortar at 15 cm and fitted it loosely
    # (2 g at the surface 0.3 m off, peaking 0.12 at the outer coil)
    eng.update([fit(10.0, 4.0, 7.6, 2.0, 0.0, 0.12, (4.0, 7.5))])
    # next lane: right over it, a precise fit
    eng.update([fit(60.0, 4.2, 7.9, 900.0, 0.15, 4.0, (4.2, 7.9), snr=3000.0)])
    hazards = [t for t in eng.targets if t.classification != 'clutter']
    assert len(hazards) == 1 and hazards[0].x == pytest.approx(4.2, abs=0.01)
    side = next(t for t in eng.targets if t is not hazards[0])
    assert side.classification == 'clutter' and side.duplicate_of == hazards[0].id
    assert f'duplicate of target {hazards[0].id}' in side.explanation
    assert side.to_dict()['duplicate_of'] == hazards[0].id


def test_a_small_object_beside_a_big_one_is_not_taken_for_its_tail():
    eng = FusionEngine(config())
    eng.update([fit(60.0, 4.2, 7.9, 900.0, 0.15, 4.0, (4.2, 7.9), snr=3000.0)])
    # a 5 g mine at 5 cm, 0.6 m away: the mortar predicts ~0.03 there, the coils saw 0.36
    eng.update([fit(61.0, 4.2, 7.3, 5.0, 0.05, 0.36, (4.2, 7.3))])
    assert len(eng.targets) == 2 and all(t.classification != 'clutter' for t in eng.targets)
    assert all(t.duplicate_of is None for t in eng.targets)


def test_a_loose_fit_joins_within_its_covariance_and_the_precise_fit_sets_the_position():
    eng = FusionEngine(config())
    # a fit beside the array: 0.2 m sigma across the track (y), 2 cm along it (x)
    eng.update([fit(10.0, 3.0, 1.25, 5.0, 0.05, 0.1, (3.0, 1.1), cov=(0.0004, 0.0, 0.04))])
    eng.update([fit(60.0, 3.0, 1.0, 5.0, 0.05, 0.36, (3.0, 1.0))])
    assert len(eng.targets) == 1
    assert eng.targets[0].y == pytest.approx(1.0, abs=0.02)
    # but not along the track, where that fit is precise
    eng.update([fit(70.0, 3.3, 1.25, 5.0, 0.05, 0.36, (3.3, 1.25), cov=(0.0004, 0.0, 0.04))])
    assert len(eng.targets) == 2


def test_a_pass_in_a_turn_is_no_evidence_of_absence():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.03)
    eng.update([md(1.0, 3.0, 0.22, mass=3.0, depth=0.08)])
    # the head swings over the target while the robot turns on the spot next to it
    for k in range(200):
        eng.add_pose(2.0 + k / 50, 2.22, 0.0, -math.pi / 2 + k / 200 * math.pi)
    assert eng.targets[-1].classification == 'unknown' and not eng.targets[-1].evidence.get('gpr')
    drive(eng, t0=10.0)                           # then a straight pass: now it counts
    assert eng.targets[-1].classification == 'clutter'


def test_a_weak_gpr_echo_within_the_blind_depth_does_not_reject_a_surface_mine():
    eng = FusionEngine(config())
    eng.update([md(1.0, 3.0, 0.0, mass=2.0, depth=0.02)])
    eng.update([gpr(1.2, 3.0, 0.0, 0.03, refl=0.02)])
    tgt = eng.targets[0]
    assert 'too shallow' in tgt.explanation and tgt.classification != 'clutter'


def test_a_gpr_miss_is_rejudged_where_the_target_turns_out_to_be():
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=0.03)
    # a loose first fit (0.2 m sigma across the track) that happens to lie on antenna 1's track
    eng.update([fit(1.0, 3.0, 0.22, 4.0, 0.08, 0.02, (3.0, 0.44), cov=(0.0004, 0.0, 0.04))])
    drive(eng)
    tgt = eng.targets[-1]
    assert tgt.evidence['gpr'].missed and tgt.classification == 'unknown'    # too loose to judge
    # the precise fit puts it between two antennas, 11 cm off both: the miss says little
    eng.update([fit(30.0, 3.0, 0.33, 4.0, 0.08, 0.1, (3.0, 0.33))])
    assert len(eng.targets) == 2 and tgt.y == pytest.approx(0.33, abs=0.01)
    assert tgt.evidence['gpr'].miss_weight < 0.3 and tgt.classification == 'unknown'


@pytest.mark.parametrize('floor, expected', [(0.03, 'clutter'), (0.5, 'unknown')])
def test_a_weak_echo_rejects_a_metal_alarm_only_where_a_mine_body_would_have_stood_out(floor, expected):
    eng = FusionEngine(config())
    gpr_floor(eng, mdr=floor)
    eng.update([md(1.0, 3.0, 0.22, mass=3.0, depth=0.08)])      # under antenna 1
    det = gpr(1.3, 3.0, 0.22, 0.08, refl=0.02)                  # a fragment's (or a root's) echo
    det.extra['mdr'] = floor
    eng.update([det])
    tgt = eng.targets[-1]
    assert tgt.evidence['gpr'].hits == 1 and tgt.classification == expected
    assert 'weak echo' in tgt.explanation


def test_a_weak_fit_right_beside_a_much_stronger_target_is_its_satellite():
    # the default demo: a PMA-3 (1.6 g, SNR 94) and, 0.36 m away, a misfit of 18 g at 21 cm with
    # SNR 24 that its fitted response does not explain (it predicts 0.0008 there)
    eng = FusionEngine(config())
    eng.update([fit(378.0, 6.80, 5.42, 1.6, 0.05, 0.12, (6.81, 5.45), snr=94.0)])
    eng.update([fit(381.0, 6.75, 5.06, 18.0, 0.21, 0.033, (6.77, 5.07), snr=24.0)])
    mine, misfit = eng.targets
    assert mine.duplicate_of is None and mine.classification != 'clutter'
    assert misfit.duplicate_of == mine.id and misfit.classification == 'clutter'
    assert 'x stronger' in misfit.explanation and '36 cm' in misfit.explanation
    # the weak one may come first (seen from the neighbouring lane): it becomes the satellite
    eng = FusionEngine(config())
    eng.update([fit(10.0, 3.88, 7.91, 200.0, 0.29, 0.045, (3.65, 7.92), snr=32.0)])
    eng.update([fit(60.0, 4.21, 7.90, 750.0, 0.15, 4.7, (4.22, 7.93), snr=4484.0)])
    assert eng.targets[0].duplicate_of == eng.targets[1].id


def test_comparable_or_farther_neighbours_are_not_satellites():
    eng = FusionEngine(config())
    eng.update([fit(1.0, 2.0, 2.0, 1.6, 0.05, 0.12, (2.0, 2.0), snr=94.0)])
    eng.update([fit(2.0, 2.0, 2.3, 1.5, 0.05, 0.08, (2.0, 2.3), snr=60.0)])      # 0.3 m, 1.6x weaker
    eng.update([fit(3.0, 2.0, 1.45, 0.5, 0.03, 0.02, (2.0, 1.45), snr=10.0)])    # 0.55 m, 9x weaker
    assert len(eng.targets) == 3 and all(t.duplicate_of is None for t in eng.targets)
    with pytest.raises(FusionError, match='satellite'):
        data = yaml.safe_load(resource('config', 'detection.yaml').read_text())['detection_fusion'][
            'ros__parameters']
        sensors = json.loads(data['sensors'])
        sensors['metal']['satellite_snr_ratio'] = 0.5
        fusion_config_from_dict({'sensors': sensors})
