"""Metrics and health endpoints shared by every Consentinel process."""
