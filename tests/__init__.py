"""xmixup test suite."""
