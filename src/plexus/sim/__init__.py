"""The virtual-time world: event engine, network and compute models, traces and the simulated Runtime."""
