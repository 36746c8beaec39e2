"""Consultations and gantry sessions.

The pure part (no Django, no I/O) schedules treatment courses on the gantry:

- :mod:`~protonpath.scheduling.model`: the data (``Course``, ``Booking``, ``Downtime``,
  ``Problem``, ``Schedule``, ``GantryDay``) and ``InfeasibleScheduleError``, whose ``items``
  (``InfeasibleReason``: course, code, English message, params) :mod:`~protonpath.scheduling.messages`,
  on the Django side, renders in the reader's language;
- :mod:`~protonpath.scheduling.config`: ``default_gantry_day()`` from ``data/gantry_day.toml``;
- :mod:`~protonpath.scheduling.calendar`: working days (French public holidays closed);
- :mod:`~protonpath.scheduling.solver`: ``solve(problem, SolverOptions())`` with CP-SAT;
- :mod:`~protonpath.scheduling.incremental`: ``add_course``, ``reschedule_after_downtime``,
  ``reschedule_after_missed_session``, ``earliest_start``;
- :mod:`~protonpath.scheduling.checker`: ``check_schedule`` and ``schedule_metrics``,
  written independently of the solver;
- :mod:`~protonpath.scheduling.baseline`: greedy ``first_fit_schedule``;
- :mod:`~protonpath.scheduling.generate`: ``generate_year`` synthetic instances.

Nothing is imported here, so loading the Django app does not load OR-Tools.
"""
