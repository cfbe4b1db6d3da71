"""The simulator: a realistic dating-app workload with injectable incidents and ground truth.

:mod:`~streams.simulate.workload` generates events purely and deterministically (seeded) in event
time; :mod:`~streams.simulate.run` produces them to Kafka through the SDK.
"""
