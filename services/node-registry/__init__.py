"""services/node-registry: the merged node view, materialized in Redis from discovery's events.

What it writes, and what every reader relies on, is described beside the one reader of the view,
`castray.shared.view`. A resync that finds the view already equal to discovery's state changes nothing
and publishes nothing.
"""
