"""Consentinel: a consent gate and bulk-export detectors for photo data on Kafka."""

__version__ = "0.1.0"
