"""Mission records: crash safety (SIGKILL at random moments), resume, schema, full disk."""

import json
import os
from pathlib import Path
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from mine_robot.mission.records import (
    SCHEMA_VERSION,
    MissionRecords,
    RecordsError,
    RecordsIOError,
    area_hash,
)

AREA = {'type': 'FeatureCollection', 'features': [{
    'type': 'Feature', 'properties': {'role': 'search_area'},
    'geometry': {'type': 'Polygon', 'coordinates': [[[30.0, 50.0], [30.001, 50.0], [30.001, 50.001],
                                                     [30.0, 50.001], [30.0, 50.0]]]}}]}

# Child: writes detections, targets, marks, events and track; prints a line only after the write
# call returned (i.e. after COMMIT), so every printed key must survive a SIGKILL.
CHILD = r'''
import json, sys
from mine_robot.mission.records import MissionRecords
area = json.loads(sys.argv[2])
rec = MissionRecords(sys.argv[1], area, track_batch=7)
i = 0
while True:
    i += 1
    rid = rec.add_detection(float(i), 'metal', i * 0.1, -i * 0.1, det_id=i, confidence=0.5,
                            extra={'coil': i % 5})
    print('D', rid, flush=True)
    rec.add_pose(float(i), i * 0.1, 0.0, 0.0)
    if i % 3 == 0:
        rec.upsert_targets(float(i), [{'id': f'T{i}', 'x': i, 'y': 1.0, 'classification': 'mine'}])
        print('T', f'T{i}', flush=True)
    if i % 5 == 0 and i > 3:
        mid = rec.add_mark(f'T{i - 2 - (i - 2) % 3}', float(i), 'marked', x=i, y=1.0, attempts=1)
        print('M', mid, flush=True)
    if i % 11 == 0:
        rec.add_event(float(i), 'sweeping', 'investigating', 'investigate', f'candidate {i}')
        print('E', i, flush=True)
'''


def _kill_child_at_random(db: Path, seed: int) -> dict[str, set]:
    proc = subprocess.Popen([sys.executable, '-c', CHILD, str(db), json.dumps(AREA)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng = random.Random(seed)
    # wait until the child has committed at least a few rows, then kill it a random time later
    first = proc.stdout.readline()
    assert first.startswith('D'), proc.stderr.read()
    time.sleep(rng.uniform(0.0, 0.4))
    os.kill(proc.pid, signal.SIGKILL)
    # read the rest through the same buffered stream (communicate() would bypass what readline()
    # has already buffered and lose acknowledged lines)
    out = proc.stdout.read()
    proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    seen: dict[str, set] = {'D': set(), 'T': set(), 'M': set(), 'E': set()}
    for line in (first + out).splitlines():
        parts = line.split()
        if len(parts) == 2:  # a line cut mid-write by the kill is ignored (not yet acknowledged)
            seen[parts[0]].add(parts[1])
    return seen


@pytest.mark.parametrize('seed', range(4))
def test_sigkill_at_random_moments_loses_no_committed_row(tmp_path, seed):
    db = tmp_path / 'mission.db'
    seen = _kill_child_at_random(db, seed)
    assert len(seen['D']) >= 1
    with MissionRecords(db, AREA) as rec:
        assert rec.resumed and rec.integrity_ok()
        det_ids = {str(d['id']) for d in rec.detections()}
        assert seen['D'] <= det_ids
        # at most the row being committed at the kill may be in the DB without its print
        assert len(det_ids - seen['D']) <= 1
        assert seen['T'] <= {t.id for t in rec.targets()}
        assert seen['M'] <= {str(m.id) for m in rec.marks()}
        assert {int(e) for e in seen['E']} <= {int(e['reason'].split()[-1]) for e in rec.events()}
        # consistency: every mark refers to a recorded target, whose status followed the mark
        targets = {t.id: t for t in rec.targets()}
        for mark in rec.marks():
            assert targets[mark.target_id].status == 'marked'
        # the track is committed in whole transactions: a gapless prefix of what was driven
        track = rec.track()
        assert track[:, 0].tolist() == [float(k) for k in range(1, len(track) + 1)]
        assert len(track) <= len(det_ids)
        # and the resumed database accepts new writes
        rec.add_detection(1e6, 'gpr', 0.0, 0.0)
    raw = sqlite3.connect(db)
    assert raw.execute('PRAGMA journal_mode').fetchone()[0] == 'wal'
    assert raw.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'
    raw.close()


def test_kill_the_child_twice_and_resume_each_time(tmp_path):
    db = tmp_path / 'mission.db'
    first = _kill_child_at_random(db, 10)
    second = _kill_child_at_random(db, 11)  # the child resumes the same database (same area)
    with MissionRecords(db, AREA) as rec:
        ids = {str(d['id']) for d in rec.detections()}
        assert first['D'] | second['D'] <= ids
        assert min(int(i) for i in second['D']) > max(int(i) for i in first['D'])


def test_resume_same_area_keeps_everything_and_state(tmp_path):
    db = tmp_path / 'm.db'
    with MissionRecords(db, AREA, organisation='Demo NGO') as rec:
        assert not rec.resumed and rec.schema_version == SCHEMA_VERSION
        plan_id = rec.add_plan(0.0, '{"segments": []}', lanes=[0, 1, 2])
        rec.lane_done(plan_id, 0, 5.0)
        rec.add_event(0.0, 'idle', 'planning', 'start', 'operator start')
        rec.add_event(1.0, 'planning', 'sweeping', 'plan_ready', 'plan')
        rec.add_event(2.0, 'sweeping', 'marking', 'confirmed', 'T1')
        rec.upsert_targets(2.0, [{'id': 'T1', 'x': 3.0, 'y': 4.0, 'classification': 'mine',
                                  'evidence': {'metal': 2}}])
        for k in range(3):
            rec.add_pose(float(k), k, 0.0, 0.0)  # buffered, flushed on close
    # key order and whitespace of the area file do not matter for the hash
    reordered = json.loads(json.dumps(AREA, sort_keys=True, indent=3))
    assert area_hash(json.dumps(reordered, indent=3)) == area_hash(AREA)
    with MissionRecords(db, json.dumps(reordered, indent=3)) as rec:
        assert rec.resumed
        assert rec.meta('organisation') == 'Demo NGO'
        assert rec.lanes(plan_id) == {0: 'done', 1: 'pending', 2: 'pending'}
        assert rec.last_state() == ('marking', 'sweeping')
        assert rec.targets()[0].evidence == {'metal': 2}
        assert len(rec.track()) == 3
        # fusion updates the estimate; the mission's status is not reset by it
        rec.add_mark('T1', 3.0, 'marked', x=3.01, y=4.0, target_x=3.0, target_y=4.0, attempts=2)
        rec.upsert_targets(4.0, [{'id': 'T1', 'x': 3.02, 'y': 4.0, 'classification': 'mine'}])
        t1 = rec.targets()[0]
        assert (t1.status, t1.x, t1.first_t, t1.last_t) == ('marked', 3.02, 2.0, 4.0)


def test_other_area_newer_schema_and_garbage_are_refused(tmp_path):
    db = tmp_path / 'm.db'
    MissionRecords(db, AREA).close()
    other = json.loads(json.dumps(AREA))
    other['features'][0]['geometry']['coordinates'][0][1][0] = 30.002
    with pytest.raises(RecordsError, match='different search area'):
        MissionRecords(db, other)
    raw = sqlite3.connect(db)
    raw.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(RecordsError, match='schema version 99, newer'):
        MissionRecords(db, AREA)
    junk = tmp_path / 'junk.db'
    junk.write_bytes(b'this is not sqlite' * 100)
    with pytest.raises(RecordsError, match='not a usable mission database'):
        MissionRecords(junk, AREA)


def test_mark_input_is_validated(tmp_path):
    with MissionRecords(tmp_path / 'm.db', AREA) as rec:
        with pytest.raises(ValueError, match='status must be one of'):
            rec.add_mark('T', 0.0, 'skipped')
        with pytest.raises(ValueError, match='needs the nozzle position'):
            rec.add_mark('T', 0.0, 'marked')
        rec.add_mark('T', 0.0, 'failed', attempts=3, reason='no acknowledgement')
        assert rec.marks()[0].reason == 'no acknowledgement'


def test_full_disk_is_reported_committed_rows_kept_and_backlog_retried(tmp_path):
    db = tmp_path / 'm.db'
    rec = MissionRecords(db, AREA)
    committed = [rec.add_detection(float(i), 'metal', i, i) for i in range(5)]
    # SQLite's own size limit gives the real SQLITE_FULL ("database or disk is full") error path
    pages = rec._db.execute('PRAGMA page_count').fetchone()[0]
    rec._db.execute(f'PRAGMA max_page_count={pages}')
    big = {'blob': 'x' * 20000}
    with pytest.raises(RecordsIOError, match='disk is full.*kept in memory'):
        rec.add_detection(99.0, 'metal', 0.0, 0.0, extra=big)
    assert len(rec.backlog) == 1
    with pytest.raises(RecordsIOError):
        rec.add_mark('T9', 100.0, 'failed', attempts=3, reason='x')
    assert len(rec.backlog) == 3  # the detection, the mark and its target-status update
    assert [d['id'] for d in rec.detections()] == committed and rec.integrity_ok()
    # space comes back: the next write commits the backlog first, in order
    rec._db.execute('PRAGMA max_page_count=1073741823')
    rec.add_fault(101.0, 'records', 'disk was full')
    assert rec.backlog == []
    assert [d['t'] for d in rec.detections()][-1] == 99.0
    assert rec.marks()[0].target_id == 'T9' and rec.faults()[0]['message'] == 'disk was full'
    assert rec.close() == 0


def test_write_limit_in_child_process_fails_cleanly(tmp_path):
    """A real OS-level write failure (RLIMIT_FSIZE) in a child: RecordsIOError, no corruption."""
    db = tmp_path / 'm.db'
    code = r'''
import json, resource, signal, sys
from mine_robot.mission.records import MissionRecords, RecordsIOError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
rec = MissionRecords(sys.argv[1], json.loads(sys.argv[2]))
for i in range(20):
    rec.add_detection(float(i), 'metal', i, i)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    for i in range(20, 100000):
        rec.add_detection(float(i), 'metal', i, i, extra={'pad': 'y' * 3000})
        print(i, flush=True)
except RecordsIOError as exc:
    print('FAULT', exc, flush=True)
'''
    out = subprocess.run([sys.executable, '-c', code, str(db), json.dumps(AREA)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith('FAULT cannot write mission records'), lines[-3:]
    last_ok = int(lines[-2]) if len(lines) > 1 else 19
    with MissionRecords(db, AREA) as rec:
        assert rec.integrity_ok()
        ts = [d['t'] for d in rec.detections()]
        assert ts[:20] == [float(i) for i in range(20)] and max(ts) >= last_ok


def test_unwritable_location_is_a_clear_io_error(tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(RecordsIOError, match='cannot open mission database'):
        MissionRecords(blocker / 'sub' / 'mission.db', AREA)


def test_a_rejected_record_is_a_data_error_and_does_not_block_later_writes(tmp_path):
    """Regression: a plan repeating a lane number used to be queued as an 'I/O' backlog and
    retried forever, so every later write failed and the mission was stuck in fault."""
    from mine_robot.mission.records import RecordsDataError
    rec = MissionRecords(tmp_path / 'mission.db', AREA)
    with pytest.raises(RecordsDataError, match='UNIQUE'):
        rec.add_plan(1.0, '{"segments": []}', [0, 1, 1], 'main')
    assert rec.backlog == []
    rid = rec.add_detection(2.0, 'metal', 1.0, 2.0, det_id=1, confidence=0.9)
    plan_id = rec.add_plan(3.0, '{"segments": []}', [0, 1, 2], 'main')
    rec.lane_done(plan_id, 1, 4.0)
    rec.close()
    db = sqlite3.connect(tmp_path / 'mission.db')
    assert db.execute('SELECT COUNT(*) FROM detections WHERE id = ?', (rid,)).fetchone()[0] == 1
    assert db.execute('SELECT COUNT(*) FROM lanes WHERE plan_id = ?', (plan_id,)).fetchone()[0] == 3


def test_interrupted_state_tells_a_crashed_mission_from_a_finished_one(tmp_path):
    from mine_robot.mission.records import interrupted_state
    db = tmp_path / 'mission.db'
    assert interrupted_state(db) is None                        # no database
    area = {'type': 'FeatureCollection', 'features': []}
    with MissionRecords(db, area) as rec:
        rec.add_event(0.0, 'idle', 'planning', 'start', 'operator start')
        rec.add_event(1.0, 'planning', 'sweeping', 'plan_ready', 'plan')
    assert interrupted_state(db) == 'sweeping'                  # the process stopped mid-sweep
    with MissionRecords(db, area) as rec:
        rec.add_event(2.0, 'sweeping', 'paused', 'pause', 'operator pause')
    assert interrupted_state(db) is None                        # paused by the operator: stays so
    with MissionRecords(db, area) as rec:
        rec.add_event(3.0, 'paused', 'complete', 'resweep_done', 'done')
    assert interrupted_state(db) is None
    (tmp_path / 'junk.db').write_bytes(b'not a database')
    assert interrupted_state(tmp_path / 'junk.db') is None


def test_latest_time_is_the_newest_record_of_any_kind(tmp_path):
    from mine_robot.mission.records import latest_time
    db = tmp_path / 'mission.db'
    assert latest_time(db) is None
    area = {'type': 'FeatureCollection', 'features': []}
    with MissionRecords(db, area) as rec:
        assert latest_time(db) is None                          # schema only, no rows
        rec.add_event(1.0, 'idle', 'planning', 'start', 'operator start')
        rec.add_pose(7.5, 1.0, 2.0, 0.0)
        rec.add_detection(9.25, 'metal', 1.0, 2.0)
        rec.flush()
    assert latest_time(db) == pytest.approx(9.25)
    (tmp_path / 'junk.db').write_bytes(b'not a database')
    assert latest_time(tmp_path / 'junk.db') is None


def test_a_schema_1_database_is_migrated_and_keeps_fusions_ids_after_a_restart(tmp_path):
    db = tmp_path / 'm.db'
    rec = MissionRecords(db, AREA)
    rec.add_alias(5.0, 'b1', 'a1')
    assert rec.aliases() == {'b1': 'a1'}
    rec.close()
    raw = sqlite3.connect(db)          # as a database written before the aliases table existed
    raw.execute('DROP TABLE aliases')
    raw.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    raw.commit()
    raw.close()
    rec = MissionRecords(db, AREA)
    assert rec.schema_version == SCHEMA_VERSION == 2 and rec.aliases() == {}
    rec.add_alias(7.0, 'c1', 'a1')
    rec.close()
    assert MissionRecords(db, AREA).aliases() == {'c1': 'a1'}
