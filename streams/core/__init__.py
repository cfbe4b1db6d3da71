"""The pure core of the consent gate: plain data in, plain data out.

Nothing under :mod:`streams.core` imports Kafka, Avro or the network. The modules are:

- :mod:`streams.core.model` -- enums and the immutable records the gate reasons about;
- :mod:`streams.core.policy` -- the operator's policy file, parsed and validated;
- :mod:`streams.core.consent` -- one user's consent history and allowed accesses;
- :mod:`streams.core.evaluate` -- the decision rules of contract section 3;
- :mod:`streams.core.audit` -- the hash chain over each partition's decisions.
"""
