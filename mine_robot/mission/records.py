"""Crash-safe mission records in SQLite.

One database per sweep (``mission.db`` in the output folder) holds the area, the plan(s), lane
progress, the driven track, detections, targets, marks, state-machine events and faults.

Durability: the database runs in WAL mode. Detections, targets, marks, events and faults are
committed with ``synchronous=FULL`` (the WAL is fsynced before the call returns, so a power cut
cannot lose them); the high-rate track is buffered and committed in batches with
``synchronous=NORMAL`` (safe against a process crash, at worst the last batch lost to a power
cut — the track is re-driven on resume anyway). Every public write is one transaction: a crash
leaves either all of it or none.

Resume: the database stores the SHA-256 of the area GeoJSON (canonical JSON). Opening an existing
database with the same area resumes it (``resumed`` is True and everything recorded so far is
readable); a database of a different area is refused with :class:`RecordsError`.

I/O failure (full disk, read-only media, I/O error): the failed transaction is rolled back, the
already committed rows stay, the unwritten rows are kept in memory (``backlog``) and retried on
the next write, and :class:`RecordsIOError` is raised so the mission can enter its fault state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
import sqlite3
import time

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS area (
    id INTEGER PRIMARY KEY CHECK (id = 1), hash TEXT NOT NULL, geojson TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lanes (
    plan_id INTEGER NOT NULL REFERENCES plans(id), lane INTEGER NOT NULL, status TEXT NOT NULL,
    t REAL, PRIMARY KEY (plan_id, lane));
CREATE TABLE IF NOT EXISTS track (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL, yaw REAL NOT NULL);
CREATE TABLE IF NOT EXISTS detections (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, sensor TEXT NOT NULL, det_id INTEGER,
    x REAL NOT NULL, y REAL NOT NULL, depth REAL, confidence REAL, strength REAL, sigma REAL,
    extra TEXT);
CREATE TABLE IF NOT EXISTS targets (
    id TEXT PRIMARY KEY, first_t REAL NOT NULL, last_t REAL NOT NULL, x REAL NOT NULL,
    y REAL NOT NULL, depth REAL, confidence REAL, classification TEXT NOT NULL,
    status TEXT NOT NULL, evidence TEXT);
CREATE TABLE IF NOT EXISTS marks (
    id INTEGER PRIMARY KEY, target_id TEXT NOT NULL, t REAL NOT NULL, status TEXT NOT NULL,
    x REAL, y REAL, target_x REAL, target_y REAL, mode TEXT, attempts INTEGER NOT NULL,
    reason TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    event TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY, t REAL NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (
    fusion_id TEXT PRIMARY KEY, target_id TEXT NOT NULL, t REAL NOT NULL);
"""

#: Migrations from version N to N+1, applied in order when an older database is opened.
_MIGRATIONS: dict[int, str] = {
    # 2: fusion's ids after a restart that stand for targets recorded before it
    1: 'CREATE TABLE IF NOT EXISTS aliases (fusion_id TEXT PRIMARY KEY, target_id TEXT NOT NULL, '
       't REAL NOT NULL)',
}

MARK_STATUSES = ('marked', 'failed', 'not_marked', 'superseded')


class RecordsError(ValueError):
    """The database cannot be used for this mission (other area, newer schema, corrupt)."""


class RecordsDataError(RecordsError):
    """A record the schema rejects (a duplicate or invalid row); nothing is queued for retry."""


class RecordsIOError(OSError):
    """A write failed (disk full, I/O error); committed rows are intact, unwritten ones queued."""


def area_hash(area_geojson: Mapping | str) -> str:
    """SHA-256 of the area GeoJSON in canonical form (key order and whitespace do not matter)."""
    obj = json.loads(area_geojson) if isinstance(area_geojson, str) else area_geojson
    canonical = json.dumps(obj, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class TargetRecord:
    id: str
    first_t: float
    last_t: float
    x: float
    y: float
    depth: float | None
    confidence: float | None
    classification: str
    status: str
    evidence: object = None


@dataclass(frozen=True)
class MarkRecord:
    id: int
    target_id: str
    t: float
    status: str
    x: float | None
    y: float | None
    target_x: float | None
    target_y: float | None
    mode: str | None
    attempts: int
    reason: str


class MissionRecords:
    """The mission database. Not thread-safe: serialise calls (the node uses one mutually
    exclusive callback group)."""

    def __init__(self, path: str | Path, area_geojson: Mapping | str, *, track_batch: int = 50,
                 organisation: str = ''):
        self.path = Path(path)
        self._area_text = (area_geojson if isinstance(area_geojson, str)
                           else json.dumps(area_geojson, sort_keys=True))
        self.area_hash = area_hash(area_geojson)
        self._track_batch = max(1, int(track_batch))
        self._track_buf: list[tuple[float, float, float, float]] = []
        self.backlog: list[tuple[str, tuple]] = []  # (sql, params) not yet written
        self._sync: str | None = None
        existed = self.path.exists() and self.path.stat().st_size > 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # check_same_thread=False: the node serialises all access (one mutually exclusive
            # callback group), but executor threads differ from call to call
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0,
                                       check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise RecordsIOError(f'cannot open mission database {self.path}: {exc}') from exc
        try:
            mode = self._db.execute('PRAGMA journal_mode=WAL').fetchone()[0]
            if mode.lower() != 'wal':
                raise RecordsError(f'{self.path}: cannot enable WAL journal (got {mode!r})')
            self._db.execute('PRAGMA foreign_keys=ON')
            self.resumed = existed and self._has_meta()
            if self.resumed:
                self._check_existing()
            else:
                self._create(organisation)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RecordsError(f'{self.path} is not a usable mission database: {exc}') from exc
        except RecordsError:
            self._db.close()
            raise

    # -- open / schema ------------------------------------------------------------------------------
    def _has_meta(self) -> bool:
        row = self._db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        return bool(row[0])

    def _create(self, organisation: str) -> None:
        self._set_sync('FULL')
        self._db.execute('BEGIN IMMEDIATE')
        try:
            for stmt in filter(str.strip, _SCHEMA.split(';')):
                self._db.execute(stmt)
            meta = {'schema_version': str(SCHEMA_VERSION), 'area_hash': self.area_hash,
                    'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                    'organisation': organisation}
            self._db.executemany('INSERT OR REPLACE INTO meta VALUES (?, ?)', meta.items())
            self._db.execute('INSERT INTO area VALUES (1, ?, ?)', (self.area_hash, self._area_text))
            self._db.execute('COMMIT')
        except sqlite3.Error:
            self._db.execute('ROLLBACK')
            raise

    def _check_existing(self) -> None:
        meta = dict(self._db.execute('SELECT key, value FROM meta').fetchall())
        try:
            version = int(meta.get('schema_version', '0'))
        except ValueError as exc:
            raise RecordsError(f'{self.path}: bad schema_version {meta.get("schema_version")!r}') from exc
        if version > SCHEMA_VERSION:
            raise RecordsError(f'{self.path} has schema version {version}, newer than this software '
                               f'({SCHEMA_VERSION}); upgrade mine_robot or use another output folder')
        if version < SCHEMA_VERSION:
            self._migrate(version)
        if meta.get('area_hash') != self.area_hash:
            raise RecordsError(
                f'{self.path} belongs to a different search area (hash {meta.get("area_hash", "?")[:12]}, '
                f'this area {self.area_hash[:12]}); use another output folder or the original area file')
        check = self._db.execute('PRAGMA quick_check').fetchone()[0]
        if check != 'ok':
            raise RecordsError(f'{self.path} failed the integrity check: {check}')

    def _migrate(self, version: int) -> None:
        for v in range(version, SCHEMA_VERSION):
            if v not in _MIGRATIONS:
                raise RecordsError(f'{self.path}: no migration from schema version {v}')
            self._db.execute('BEGIN IMMEDIATE')
            for stmt in filter(str.strip, _MIGRATIONS[v].split(';')):
                self._db.execute(stmt)
            self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(v + 1),))
            self._db.execute('COMMIT')

    @property
    def schema_version(self) -> int:
        return int(self._meta('schema_version'))

    def _meta(self, key: str) -> str | None:
        row = self._db.execute('SELECT value FROM meta WHERE key=?', (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._write([('INSERT OR REPLACE INTO meta VALUES (?, ?)', (key, str(value)))], durable=True)

    def meta(self, key: str) -> str | None:
        return self._meta(key)

    # -- the one write path ---------------------------------------------------------------------------
    def _set_sync(self, level: str) -> None:
        if self._sync != level:
            self._db.execute(f'PRAGMA synchronous={level}')
            self._sync = level

    def _write(self, statements: list[tuple[str, tuple]], durable: bool) -> list[int]:
        """Run the backlog plus ``statements`` in one transaction; return the new row ids."""
        pending = self.backlog + statements
        try:
            self._set_sync('FULL' if durable or self.backlog else 'NORMAL')
            self._db.execute('BEGIN IMMEDIATE')
            ids = []
            try:
                for sql, params in pending:
                    ids.append(self._db.execute(sql, params).lastrowid)
                self._db.execute('COMMIT')
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute('ROLLBACK')
                raise
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError) as exc:
            # A row the schema rejects will never be written, however often it is retried: keep
            # the backlog (rows that failed for I/O reasons) without the new statements, so one
            # bad record cannot block every later write, and report it as a data error.
            self.backlog = list(self.backlog)
            raise RecordsDataError(f'mission record rejected by {self.path}: {exc}') from exc
        except sqlite3.Error as exc:
            self.backlog = pending
            raise RecordsIOError(f'cannot write mission records to {self.path}: {exc}; '
                                 f'{len(pending)} unwritten record(s) kept in memory and retried '
                                 'on the next write') from exc
        self.backlog = []
        return ids[len(ids) - len(statements):]

    def flush(self) -> None:
        """Commit buffered track poses and any backlog (raises RecordsIOError if it still fails)."""
        stmts = self._take_track()
        if stmts or self.backlog:
            self._write(stmts, durable=True)

    def _take_track(self) -> list[tuple[str, tuple]]:
        rows, self._track_buf = self._track_buf, []
        return [('INSERT INTO track (t, x, y, yaw) VALUES (?, ?, ?, ?)', r) for r in rows]

    # -- writes -------------------------------------------------------------------------------------
    def add_plan(self, t: float, plan_json: str, lanes: Iterable[int], kind: str = 'main') -> int:
        """Store a plan and its lanes (all pending); returns the plan id."""
        self.flush()
        lanes = list(lanes)
        cur_id = self._db.execute('SELECT coalesce(max(id), 0) + 1 FROM plans').fetchone()[0]
        stmts = [('INSERT INTO plans (id, t, kind, json) VALUES (?, ?, ?, ?)',
                  (cur_id, float(t), kind, plan_json))]
        stmts += [('INSERT INTO lanes VALUES (?, ?, ?, NULL)', (cur_id, int(lane), 'pending'))
                  for lane in lanes]
        self._write(stmts, durable=True)
        return cur_id

    def lane_done(self, plan_id: int, lane: int, t: float) -> None:
        self._write([("UPDATE lanes SET status='done', t=? WHERE plan_id=? AND lane=?",
                      (float(t), int(plan_id), int(lane)))] + self._take_track(), durable=True)

    def add_pose(self, t: float, x: float, y: float, yaw: float) -> None:
        """Buffer one track pose; committed every ``track_batch`` poses (and on every flush)."""
        self._track_buf.append((float(t), float(x), float(y), float(yaw)))
        if len(self._track_buf) >= self._track_batch:
            self._write(self._take_track(), durable=False)

    def add_detection(self, t: float, sensor: str, x: float, y: float, *, det_id: int | None = None,
                      depth: float | None = None, confidence: float | None = None,
                      strength: float | None = None, sigma: float | None = None,
                      extra: Mapping | None = None) -> int:
        return self.add_detections([dict(t=t, sensor=sensor, x=x, y=y, det_id=det_id, depth=depth,
                                         confidence=confidence, strength=strength, sigma=sigma,
                                         extra=extra)])[0]

    def add_detections(self, rows: Iterable[Mapping]) -> list[int]:
        """Commit many detections in one durable transaction; returns their row ids."""
        stmts = []
        for r in rows:
            stmts.append((
                'INSERT INTO detections (t, sensor, det_id, x, y, depth, confidence, strength, sigma, '
                'extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                (float(r['t']), str(r['sensor']), _opt_int(r.get('det_id')), float(r['x']),
                 float(r['y']), _opt(r.get('depth')), _opt(r.get('confidence')),
                 _opt(r.get('strength')), _opt(r.get('sigma')),
                 json.dumps(r['extra']) if r.get('extra') else None)))
        return self._write(stmts, durable=True) if stmts else []

    def upsert_targets(self, t: float, targets: Iterable[Mapping]) -> None:
        """Insert or update targets (keyed by id); the status of a target never goes backwards
        from 'marked'/'failed' to 'new' (the mission sets status, fusion updates the estimate)."""
        stmts = []
        for tg in targets:
            stmts.append((
                'INSERT INTO targets (id, first_t, last_t, x, y, depth, confidence, classification, '
                'status, evidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
                'ON CONFLICT(id) DO UPDATE SET last_t=excluded.last_t, x=excluded.x, y=excluded.y, '
                'depth=excluded.depth, confidence=excluded.confidence, '
                'classification=excluded.classification, evidence=excluded.evidence',
                (str(tg['id']), float(t), float(t), float(tg['x']), float(tg['y']),
                 _opt(tg.get('depth')), _opt(tg.get('confidence')),
                 str(tg.get('classification', 'unknown')), str(tg.get('status', 'new')),
                 json.dumps(tg['evidence']) if tg.get('evidence') is not None else None)))
        if stmts:
            self._write(stmts, durable=True)

    def set_target_status(self, target_id: str, status: str) -> None:
        self._write([('UPDATE targets SET status=? WHERE id=?', (status, str(target_id)))],
                    durable=True)

    def add_mark(self, target_id: str, t: float, status: str, *, x: float | None = None,
                 y: float | None = None, target_x: float | None = None, target_y: float | None = None,
                 mode: str | None = None, attempts: int = 0, reason: str = '') -> int:
        """Record a mark (at the nozzle's actual position) or a failed/not-made mark with reason;
        the target's status is updated in the same transaction."""
        if status not in MARK_STATUSES:
            raise ValueError(f'mark status must be one of {MARK_STATUSES}, got {status!r}')
        if status == 'marked' and (x is None or y is None):
            raise ValueError('a placed mark needs the nozzle position (x, y)')
        stmts = [('INSERT INTO marks (target_id, t, status, x, y, target_x, target_y, mode, attempts, '
                  'reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                  (str(target_id), float(t), status, _opt(x), _opt(y), _opt(target_x), _opt(target_y),
                   mode, int(attempts), reason)),
                 ('UPDATE targets SET status=? WHERE id=?', (status, str(target_id)))]
        return self._write(stmts, durable=True)[0]

    def supersede_marks(self, target_id: str, reason: str, target_status: str = 'new') -> int:
        """The target's placed marks become 'superseded' (the paint is on the ground but no longer
        over the target estimate; the reason says why) and the target gets ``target_status``:
        'new', a mark to make again, or 'not_marked' (fusion found it a duplicate of another
        target: no mark of its own), in one durable transaction. Returns how many marks were
        superseded."""
        if target_status not in ('new', 'not_marked'):
            raise RecordsDataError(f"supersede_marks: target status must be 'new' or 'not_marked', "
                                   f'got {target_status!r}')
        n = self._db.execute("SELECT COUNT(*) FROM marks WHERE target_id=? AND status='marked'",
                             (str(target_id),)).fetchone()[0]
        self._write([("UPDATE marks SET status='superseded', reason=reason || '; superseded: ' || ? "
                      "WHERE target_id=? AND status='marked'", (reason, str(target_id))),
                     ('UPDATE targets SET status=? WHERE id=?', (target_status, str(target_id)))],
                    durable=True)
        return int(n)

    def add_event(self, t: float, source: str, target: str, event: str, reason: str) -> None:
        self._write([('INSERT INTO events (t, source, target, event, reason) VALUES (?, ?, ?, ?, ?)',
                      (float(t), str(source), str(target), event, reason))] + self._take_track(),
                    durable=True)

    def add_alias(self, t: float, fusion_id: str, target_id: str) -> None:
        """Fusion's id ``fusion_id`` (after a restart) stands for the recorded ``target_id``."""
        self._write([('INSERT OR REPLACE INTO aliases (fusion_id, target_id, t) VALUES (?, ?, ?)',
                      (str(fusion_id), str(target_id), float(t)))], durable=True)

    def add_fault(self, t: float, source: str, message: str) -> None:
        self._write([('INSERT INTO faults (t, source, message) VALUES (?, ?, ?)',
                      (float(t), source, message))], durable=True)

    # -- reads --------------------------------------------------------------------------------------
    def area_geojson(self) -> dict:
        return json.loads(self._db.execute('SELECT geojson FROM area').fetchone()[0])

    def plans(self) -> list[tuple[int, str, str]]:
        """[(plan_id, kind, json)] in order."""
        return self._db.execute('SELECT id, kind, json FROM plans ORDER BY id').fetchall()

    def lanes(self, plan_id: int) -> dict[int, str]:
        return dict(self._db.execute('SELECT lane, status FROM lanes WHERE plan_id=? ORDER BY lane',
                                     (plan_id,)).fetchall())

    def track(self):
        """(N, 4) float array of committed and buffered poses [t, x, y, yaw]."""
        import numpy as np
        rows = self._db.execute('SELECT t, x, y, yaw FROM track ORDER BY id').fetchall()
        return np.array(rows + self._track_buf, dtype=float).reshape(-1, 4)

    def detections(self) -> list[dict]:
        cur = self._db.execute('SELECT id, t, sensor, det_id, x, y, depth, confidence, strength, '
                               'sigma, extra FROM detections ORDER BY id')
        names = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(names, row))
            d['extra'] = json.loads(d['extra']) if d['extra'] else {}
            out.append(d)
        return out

    def targets(self) -> list[TargetRecord]:
        rows = self._db.execute('SELECT id, first_t, last_t, x, y, depth, confidence, classification, '
                                'status, evidence FROM targets ORDER BY first_t, id').fetchall()
        return [TargetRecord(*r[:9], json.loads(r[9]) if r[9] else None) for r in rows]

    def marks(self) -> list[MarkRecord]:
        rows = self._db.execute('SELECT id, target_id, t, status, x, y, target_x, target_y, mode, '
                                'attempts, reason FROM marks ORDER BY id').fetchall()
        return [MarkRecord(*r) for r in rows]

    def aliases(self) -> dict[str, str]:
        """{fusion id: recorded target id} of every restart so far."""
        return dict(self._db.execute('SELECT fusion_id, target_id FROM aliases ORDER BY t').fetchall())

    def events(self) -> list[dict]:
        cur = self._db.execute('SELECT t, source, target, event, reason FROM events ORDER BY id')
        return [dict(zip(('t', 'from', 'to', 'event', 'reason'), r)) for r in cur.fetchall()]

    def faults(self) -> list[dict]:
        cur = self._db.execute('SELECT t, source, message FROM faults ORDER BY id')
        return [dict(zip(('t', 'source', 'message'), r)) for r in cur.fetchall()]

    def last_state(self) -> tuple[str, str]:
        """(state, lane-driving state) from the last recorded transition; ('idle', 'sweeping')
        for a new database. Used to resume after a restart."""
        rows = self._db.execute('SELECT target FROM events ORDER BY id DESC').fetchall()
        if not rows:
            return 'idle', 'sweeping'
        driving = next((r[0] for r in rows if r[0] in ('sweeping', 'resweep')), 'sweeping')
        return rows[0][0], driving

    def integrity_ok(self) -> bool:
        return self._db.execute('PRAGMA integrity_check').fetchone()[0] == 'ok'

    def close(self) -> int:
        """Flush what can be flushed and close; returns how many records could not be written
        (0 normally). Does not raise for a write failure: that was already reported by the write
        that failed, and the caller reports the returned count."""
        unwritten = 0
        try:
            self.flush()
        except RecordsIOError:
            unwritten = len(self.backlog)
        self._db.close()
        return unwritten

    def __enter__(self) -> MissionRecords:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


RESUMABLE_STATES = ('planning', 'sweeping', 'investigating', 'marking', 'resweep')


def _read_only(path: str | Path, query):
    """``query(connection)`` on a read-only connection to the database at ``path``; None when
    there is no database or it cannot be read. The database is not changed."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
        try:
            return query(con)
        finally:
            con.close()
    except sqlite3.Error:
        return None


def interrupted_state(path: str | Path) -> str | None:
    """The state of a mission database whose mission was running when its process stopped (a
    crash or a power cut: the last recorded transition is a running state), else None (no
    database, or a mission that completed, was aborted, faulted, is paused or never started).
    Read-only: the database is not changed."""
    row = _read_only(path, lambda con: con.execute(
        'SELECT target FROM events ORDER BY id DESC LIMIT 1').fetchone())
    return row[0] if row and row[0] in RESUMABLE_STATES else None


def latest_time(path: str | Path) -> float | None:
    """The latest time recorded in a mission database (track, detections, marks, events), or None
    (no database, no rows, unreadable). Read-only. A simulator that resumes with this mission
    starts its clock here, so the records never see time run backwards."""
    times = _read_only(path, lambda con: [con.execute(f'SELECT MAX(t) FROM {table}').fetchone()[0]
                                          for table in ('track', 'detections', 'marks', 'events')])
    times = [float(t) for t in times or () if t is not None]
    return max(times) if times else None


def _opt(value) -> float | None:
    return None if value is None else float(value)


def _opt_int(value) -> int | None:
    return None if value is None else int(value)
