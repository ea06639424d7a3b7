"""ament_python build for mine_robot.

Every module in ``mine_robot/nodes`` that does not start with an underscore is an executable of
the same name (executable = module = default node name), so adding a node needs no edit here.
"""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'mine_robot'
HERE = Path(__file__).resolve().parent


def node_entry_points():
    nodes = sorted(p.stem for p in (HERE / PACKAGE / 'nodes').glob('*.py')
                   if not p.stem.startswith('_'))
    return [f'{name} = {PACKAGE}.nodes.{name}:main' for name in nodes]


def share_tree(folder):
    """data_files entries installing ``folder`` recursively under share/mine_robot."""
    entries = {}
    for path in sorted((HERE / folder).rglob('*')):
        if path.is_file() and '__pycache__' not in path.parts:
            rel_dir = path.parent.relative_to(HERE)
            entries.setdefault(f'share/{PACKAGE}/{rel_dir}', []).append(str(path.relative_to(HERE)))
    return list(entries.items())


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*', 'bench']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        *share_tree('launch'),
        *share_tree('config'),
        *share_tree('urdf'),
        *share_tree('sim'),
    ],
    install_requires=['setuptools', 'numpy', 'pyyaml', 'pyserial', 'shapely', 'pyproj',
                      'pynmea2', 'opencv-python-headless', 'transforms3d', 'matplotlib'],
    zip_safe=True,
    maintainer='mine_robot developers',
    maintainer_email='dev@mine-robot.invalid',
    description='Open robotic clearance platform for humanitarian mine action',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [f'mine-robot = {PACKAGE}.cli:main', *node_entry_points()],
    },
)
