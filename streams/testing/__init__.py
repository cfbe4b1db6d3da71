"""Helpers for tests of Consentinel and of code built on it (in-memory fakes, containers)."""
