"""The package is installable and its entry points and metadata are consistent."""

from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ET

import mine_robot
from mine_robot import cli
from mine_robot.resources import resource, share_dir

REPO = Path(__file__).resolve().parent.parent


def test_import_and_version():
    assert mine_robot.__version__ == ET.parse(REPO / 'package.xml').getroot().findtext('version')


def test_package_xml_is_ament_python_format3():
    root = ET.parse(REPO / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'mine_robot'
    assert root.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in root.findall('exec_depend')}
    assert {'rclpy', 'python3-serial', 'python3-numpy', 'python3-opencv'} <= deps


def test_setup_cfg_installs_scripts_under_lib():
    text = (REPO / 'setup.cfg').read_text()
    assert 'script_dir=$base/lib/mine_robot' in text
    assert 'install_scripts=$base/lib/mine_robot' in text
    assert (REPO / 'resource' / 'mine_robot').is_file()


def test_every_node_module_has_main_and_console_script():
    nodes = [p.stem for p in (REPO / 'mine_robot' / 'nodes').glob('*.py') if not p.stem.startswith('_')]
    bindir = Path(sys.executable).parent
    for name in nodes:
        text = (REPO / 'mine_robot' / 'nodes' / f'{name}.py').read_text()
        assert '\ndef main(' in text, f'{name} has no main()'
        assert (bindir / name).exists(), f'console script {name} not installed: re-run scripts/setup.sh'


def test_resources_resolve():
    assert (share_dir() / 'package.xml').is_file()
    assert resource('config', 'robot.yaml').is_file()


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, '-m', 'mine_robot.cli', '--help'], capture_output=True,
                         text=True, check=True).stdout
    for name in cli.SUBCOMMANDS:
        assert name in out


def test_cli_console_script_runs():
    exe = Path(sys.executable).parent / 'mine-robot'
    result = subprocess.run([str(exe), 'robot', '--json'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"swath_width_m": 1.1' in result.stdout


def test_cli_unknown_subcommand_fails_with_usage():
    result = subprocess.run([sys.executable, '-m', 'mine_robot.cli', 'no-such-command'],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert 'invalid choice' in result.stderr


def test_pure_layer_does_not_import_ros():
    """Layering rule: only nodes/, ros/ and cli-graph code may import rclpy or ROS messages."""
    offenders = []
    for path in (REPO / 'mine_robot').rglob('*.py'):
        rel = path.relative_to(REPO / 'mine_robot')
        if rel.parts[0] in ('nodes', 'ros'):
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(('import rclpy', 'from rclpy')) or (
                    stripped.startswith('from ') and stripped.split()[1].split('.')[0].endswith('_msgs')):
                offenders.append(f'{rel}: {stripped}')
    assert not offenders, offenders
