"""Pure detector math: plain data in, plain data out, event time supplied by the caller.

Nothing here imports Kafka or reads the wall clock. Every per-subject state converts to
and from a JSON-able dict (``to_dict`` / ``from_dict``) so that a table backed by a changelog can
persist it, and every alert and control id is a hash of what identifies its episode, so that a
replay after a crash reproduces the same ids.
"""
