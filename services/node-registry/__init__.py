"""services/node-registry: the merged node view, materialized in Redis from discovery's events.

What readers (the gateway) rely on, all names from `castray.shared.names.Names`:

- ``view_clusters`` / ``view_nodes``: hash id -> ``codec.encode_model(ClusterInfo | NodeInfo)``.
- ``view_meta``: hash ``epoch`` (16 hex chars; new only when the view is built from nothing, e.g. Redis
  lost its data), ``version`` (+1 per change, and +1 per rebuild), ``source`` and ``seq`` (the last
  discovery event the view includes). Read the three hashes in one MULTI for a consistent snapshot
  (`castray.shared.view.ViewReader.snapshot` does).
- ``view_log``: stream, one entry per version, id ``<version>-0``, field ``data`` = ``codec.encode`` of
  a view-changed event, or of a view-reset at a version where the view was rebuilt (replay stops there:
  take a snapshot). Capped (MAXLEN ~ ``CASTRAY_LOG_MAXLEN``); deleted when the epoch changes.
- ``view_events``: the same events, published. Envelope ``source`` is ``"node-registry"`` and ``seq``
  equals the payload's ``version``, whichever replica wrote it.

A resync that finds the view already equal to discovery's state changes nothing and publishes nothing.
"""
