"""Shared technical code: no imports from the domain packages."""
