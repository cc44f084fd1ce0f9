"""Shared test configuration: the Hypothesis profiles.

``VMAFUZZ_HYPOTHESIS_PROFILE`` picks one of ``dev`` (quick, the default on a workstation),
``ci`` (derandomised and database-free, so a CI run is reproducible; the default when ``CI`` is
set) and ``soak`` (long). Tests marked ``soak`` are deselected unless ``-m soak`` is given.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("dev", max_examples=50)
settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    database=None,
    print_blob=True,
    # The first call into the extension and xdist's load on two cores skew timings.
    deadline=None,
)
settings.register_profile("soak", max_examples=5000, deadline=None)


def _profile() -> str:
    chosen = os.environ.get("VMAFUZZ_HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "dev"


settings.load_profile(_profile())
