"""Hypothesis profiles.

* ``dev`` (default): quick runs while editing.
* ``ci``: thorough but sized for the CI machine (2 cores, 90 minutes in all);
  selected by ``CI=true`` (set by the CI runner) or ``HYPOTHESIS_PROFILE=ci``.
* ``thorough``: many more examples, for a long local run.

``deadline=None`` everywhere: the first example of a test pays for Numba's
compilation, which is not what a deadline is meant to catch.
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("ci", max_examples=150, print_blob=True, **_common)
settings.register_profile("thorough", max_examples=2000, **_common)

_default = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))
