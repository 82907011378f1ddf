"""Adapters to the world outside the process: logging sinks, Redis, payment providers, metrics."""
