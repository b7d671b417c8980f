"""The controller side of the kit: the strategy table, every inventory variable with its default, the checks run
before any host is touched, and the per-inventory secrets. Read by deploys/, templates (through deploys) and
tests/verify alike."""
