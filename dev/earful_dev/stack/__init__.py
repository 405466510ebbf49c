"""The local stack: broker, PostgreSQL, services, sample replay."""
