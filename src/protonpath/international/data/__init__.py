"""Versioned data files for the international rules (visa lists, tariffs, cost estimates).

Each file carries its version, its effective or review date and its source. They are read by
:mod:`protonpath.international.rules.loaders`, never by the rule functions themselves.
"""
