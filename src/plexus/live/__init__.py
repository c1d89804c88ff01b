"""The live world: the protocol's node classes as real peers over a network.

``keys`` (Ed25519 identities), ``wire`` and ``transport`` (signed, acknowledged frames over asyncio TCP),
``runtime`` (the Runtime contract on the wall clock), ``control`` and ``observer`` (reports, evaluation, start and
stop without a server), ``state`` (restart from saved state), ``node`` (building and serving one node),
``process`` (``plexus node``), ``launch`` (``plexus launch``), ``cluster`` (several nodes in one process, for tests).
"""
