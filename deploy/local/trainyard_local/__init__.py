"""Embedded local cluster: launcher, node agents and fixtures (development and tests only)."""
