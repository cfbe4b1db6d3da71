"""One stream runtime for every processor: exactly-once consume → process → produce on Kafka.

* :mod:`~streams.runtime.topology`: what a processor declares (sources, outputs, state, global
  tables) and the pure methods the runtime calls;
* :mod:`~streams.runtime.loop`: the one processing and commit loop (intake → process → outputs
  and local loopback → changelog → checkpoint, punctuation, the failure rules), over a
  :mod:`~streams.runtime.transport`: Kafka or the in-memory broker;
* :mod:`~streams.runtime.runner`: its Kafka transport and process on confluent-kafka's
  transactional API, with
  :mod:`~streams.runtime.options` (its tunables), :mod:`~streams.runtime.intake` (fetched records
  buffered per partition), :mod:`~streams.runtime.assignment` (group membership, restore on
  assignment), :mod:`~streams.runtime.health` (ready, live, lag) and
  :mod:`~streams.runtime.gc_tuning`;
* :mod:`~streams.runtime.testing`: the same loop driven in-process, with no broker
  (:mod:`~streams.runtime.memory_log`, :mod:`~streams.runtime.memory_consumer`,
  :mod:`~streams.runtime.memory_transaction`);
* :mod:`~streams.runtime.stores`, :mod:`~streams.runtime.changelog`: state and its restore;
* :mod:`~streams.runtime.transaction`, :mod:`~streams.runtime.checkpoint`: the open transaction
  and its one exactly-once commit (outputs → changelogs → offsets);
* :mod:`~streams.runtime.timesync`, :mod:`~streams.runtime.task`, :mod:`~streams.runtime.flow`:
  per-partition event-time merge, positions and flow control;
* :mod:`~streams.runtime.global_table`, :mod:`~streams.runtime.read_to_end`: tables every
  instance reads in full, and the one read-to-end primitive;
* :mod:`~streams.runtime.dead_letters`: the one builder of dead-letter records.
"""
