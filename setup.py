"""Build the optional compiled parts (everything else is in pyproject.toml).

``plexus.sim._flowtable`` is the network model's flow table in C, ``plexus.sim._eventqueue`` the event loop's
queue; ``plexus.protocol._mean`` averages flat float32 models. Both are optional: where no C compiler is found the build goes on without them and plexus uses its Python
and NumPy code, which gives byte-identical results, only slower (``summary.json`` records which ran:
``compiled_core``).
"""

from setuptools import Extension, setup

# no fused multiply-add: every operation rounds exactly as NumPy and Python do
FLAGS = ["-O2", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension("plexus.sim._flowtable", sources=["src/plexus/sim/_flowtable.c"], extra_compile_args=FLAGS,
                  optional=True),
        Extension("plexus.sim._eventqueue", sources=["src/plexus/sim/_eventqueue.c"], extra_compile_args=FLAGS,
                  optional=True),
        Extension("plexus.protocol._mean", sources=["src/plexus/protocol/_mean.c"], extra_compile_args=FLAGS,
                  optional=True),
    ]
)
