"""Pipelines and their versions: the PipelineService (``service``), the checks of a spec
(``validation``) and a spec's canonical digest (``specs``); stored through ``control_plane.storage``."""
