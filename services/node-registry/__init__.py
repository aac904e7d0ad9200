"""services/node-registry: the merged node view, materialized in Redis from discovery's events."""
