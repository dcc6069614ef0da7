"""Starlette's and Flask's own test suites, run without and with concmon in every app."""
