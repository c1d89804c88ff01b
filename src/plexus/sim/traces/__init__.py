"""Traces that make a simulated population heterogeneous: device capacities, latencies, availability."""
