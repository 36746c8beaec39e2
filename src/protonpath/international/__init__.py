"""Patients from abroad: quotes, payments, visa assessment and letters for consulates.

The rules live in the pure package :mod:`protonpath.international.rules`; their data (visa
lists, tariffs, daily cost estimates) in :mod:`protonpath.international.data`.
"""
