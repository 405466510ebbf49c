"""A seeded, realistic sample mention stream (brands, chatter and one crisis) for demos and tests."""
