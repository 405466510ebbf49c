"""Enrichment: language, entities, sentiment, risk tags and watchlist matches for every mention."""
