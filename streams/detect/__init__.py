"""Detectors over ``governance.decisions``: bulk exports, denial bursts, unconsented training.

The math lives in :mod:`streams.detect.core` (pure, no Kafka); the faust app only runs it.
"""
