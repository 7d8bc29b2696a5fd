"""Tools around the pipeline: benchmarks, the naive baseline and the live terminal view."""
