"""The adapter for the original single-process CastRay (``/work/shared/REFERENCE_CASTRAY.md``): its HTTP
and WebSocket shapes and message names, built from CastRay's own model. No other module builds them.

One module per surface: `status` (``/api/status``, ``status_update``, the per-node transfer counts),
`live` (the other WebSocket messages), `clusters` (external clusters and nodes, and the answers to
discover/connect/disconnect from discovery's typed replies), `files` (upload, file generator, file
transfers, demo files), `messages` (``/api/send`` and a node's messages), `errors` (its error shape, and
the refusals of ``POST``/``DELETE /api/nodes``). The handlers check, act, and answer with what these return.
"""
