"""The benchmark behind `make bench`: workloads against PostgreSQL, each beside a baseline measured in the same
run (see docs/performance.md)."""
