"""Storage: enriched mentions and alerts into PostgreSQL, plus the query API and dashboard."""
