"""Settings of the test run: the project's own, with a key of the tests' own.

Outside DEBUG the project refuses to start without ``SECRET_KEY``; the tests run with DEBUG off
(as a server does), so they bring a key. It goes into the environment, so that the commands the
tests start (``manage.py``, ``python -m protonpath``) inherit it.
"""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-key-not-secret-" + "0123456789abcdef" * 3)
# The DICOM listeners of the tests (and the commands they start) keep a journal reserve of a few
# slots, not the 512 (288 MiB) of a department's; the reserve's own tests size theirs.
os.environ.setdefault("DICOM_JOURNAL_RESERVE", "8")

from protonpath.settings import *  # noqa: E402, F403
