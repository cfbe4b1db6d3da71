"""Detectors over ``governance.decisions``: bulk exports, denial bursts, unconsented training.

The math lives in :mod:`streams.detect.core` (pure, no Kafka); the topology in
:mod:`streams.detect.topology` runs it on the stream runtime.
"""
