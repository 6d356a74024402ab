"""A pytest plugin for mutation runs only (.ci/mutation): fewer, fixed Hypothesis examples.

Each mutant reruns every test that reaches the mutated function; properties keep their full
example counts in .ci/run, where they run once.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("mutation", max_examples=20, derandomize=True, database=None)
settings.load_profile("mutation")
