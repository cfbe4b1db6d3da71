"""The consent gate: exactly-once decisions for every share request and training read."""
