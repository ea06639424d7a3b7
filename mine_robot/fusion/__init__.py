"""Fusion (pure): merges georeferenced detections from every sensor and every lane into targets,
each with a confidence, a classification and the evidence behind it (see docs/fusion.md)."""

from mine_robot.fusion.engine import (
    CLASSES,
    FusionConfig,
    FusionEngine,
    FusionError,
    SensorModel,
    Target,
    fusion_config_from_dict,
)

__all__ = ['CLASSES', 'FusionConfig', 'FusionEngine', 'FusionError', 'SensorModel', 'Target',
           'fusion_config_from_dict']
