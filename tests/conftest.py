"""Suite-wide test configuration."""

from __future__ import annotations

import os

from hypothesis import settings

# No per-example deadline: timing belongs in benchmarks/, and a loaded 2-core CI
# machine must not turn a slow example into a failure. CI derandomizes so a red run
# can be reproduced; locally every run explores new examples.
settings.register_profile("servo", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "servo"))
