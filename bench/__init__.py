"""Benchmark harness for the Popmap GraphQL API (see bench/README.md)."""
