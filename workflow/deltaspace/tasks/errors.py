"""Errors raised while locating, reading or preparing task data."""


class TaskDataError(ValueError):
    """Task data is missing, malformed or mis-specified; the message says what to fix."""
