"""The benchmark (`engagement bench`): the pipeline against the reference loop, engines, bus hops, memory.

Installed with the project, so it runs from a wheel; tests/perf holds only its smoke test.
"""
