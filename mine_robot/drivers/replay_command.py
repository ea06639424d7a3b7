"""``mine-robot replay RAW_LOG``: run a recorded raw byte stream through its device parser.

Prints what the live driver would have seen: messages by type, bad frames (with the reasons),
lost messages from sequence gaps; ``--messages`` prints every message as one JSON line.
"""

from __future__ import annotations

import argparse
from collections import Counter
import dataclasses
import importlib
import json
import sys

import numpy as np

from mine_robot.drivers.rawlog import RawLogError, read_raw_log, replay
from mine_robot.drivers.stats import SequenceTracker

PROTOCOLS = {'metal_detector': 'metal_detector', 'gnss': 'gnss', 'gpr': 'gpr', 'marker': 'marker'}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('raw_log', help='file written by a driver with raw_log_path set')
    parser.add_argument('--device', choices=sorted(PROTOCOLS),
                        help='protocol to parse with (default: the device named in the recording)')
    parser.add_argument('--messages', action='store_true', help='print every message as a JSON line')
    parser.add_argument('--errors', type=int, default=10, help='bad frames to list (default 10)')


def _jsonable(message) -> dict:
    out = {'type': type(message).__name__}
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif not isinstance(value, (int, float, str, bool, list, tuple, type(None))):
            value = str(value)
        out[field.name] = value
    return out


def run(args: argparse.Namespace) -> int:
    try:
        header, _ = read_raw_log(args.raw_log)
        device = args.device or header.get('device')
        if device not in PROTOCOLS:
            print(f'replay: recording names device {device!r}; pass --device {{{",".join(PROTOCOLS)}}}',
                  file=sys.stderr)
            return 2
        protocol = importlib.import_module(f'mine_robot.drivers.protocols.{PROTOCOLS[device]}')
        result = replay(args.raw_log, protocol.make_framer(), protocol.parse)
    except (OSError, RawLogError) as exc:
        print(f'replay: {exc}', file=sys.stderr)
        return 1
    seq = SequenceTracker()
    kinds: Counter = Counter()
    for t, message in result.messages:
        kinds[type(message).__name__] += 1
        if hasattr(message, 'seq'):
            seq.update(message.seq)
        if args.messages:
            print(json.dumps({'t': t, **_jsonable(message)}))
    duration = (result.messages[-1][0] - result.messages[0][0]) if len(result.messages) > 1 else 0.0
    summary = {'device': device, 'url': header.get('url'), 'chunks': result.chunks, 'bytes': result.bytes,
               'messages': dict(kinds), 'bad_frames': len(result.errors), 'lost_messages': seq.lost,
               'sequence_gaps': seq.gaps, 'duration_s': round(duration, 3)}
    # with --messages stdout is JSON lines only; the summary goes to stderr
    print(json.dumps(summary, indent=None if args.messages else 2),
          file=sys.stderr if args.messages else sys.stdout)
    for t, error in result.errors[:args.errors]:
        print(f'bad frame at t={t:.6f}: {error}', file=sys.stderr)
    return 0
