"""The algorithms, written against :class:`plexus.protocol.runtime.Runtime` only.

Nothing in this package imports the simulator or the network layer: a node class runs unchanged in virtual
time (``plexus.sim``) and over real sockets (``plexus.live``).
"""
