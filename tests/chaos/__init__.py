"""Chaos tests: SIGKILL the embedded runner at random points and check nothing is lost."""
