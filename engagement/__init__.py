"""The `engagement` command: dispatch to the services, the launcher, the tools and the benchmarks."""
