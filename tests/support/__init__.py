"""Helpers shared by the tests and the benchmark: real servers on loopback, app clusters, and an HTTP client."""
