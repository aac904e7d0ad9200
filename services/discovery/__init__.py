"""services/discovery: finds Ray clusters and watches their nodes over the dashboard HTTP API (no Ray import).

Contract with the rest of CastRay:

- State in Redis (the source of truth the registry resyncs from): hash ``names.discovery_clusters``
  (cluster id -> ``codec.encode(ClusterInfo)``), hash ``names.discovery_nodes`` (node id ->
  ``codec.encode(NodeInfo)``), hash ``names.discovery_meta`` {source, seq}. Apart from it, hash
  ``names.discovery_disconnected`` (cluster id -> ``codec.pack({id, name, dashboard_url, session_name,
  addresses})``): clusters the user disconnected, ignored by periodic passes also after a restart until
  an explicit discover/connect (which removes the entry); the state rewrite never deletes it.
- Every event is published on ``names.discovery_events`` in the same MULTI/EXEC as the record change and
  the meta update. ``cluster-found`` is an upsert (new cluster, a cluster answering again, or a change of
  its sources/addresses/found_by); ``cluster-lost`` after ``lost_after`` failed polls, followed by
  ``node-changed updated`` (ALIVE -> UNREACHABLE) for its nodes; ``cluster-removed`` after a disconnect,
  preceded by ``node-changed removed`` for each node; ``source-reset`` with a full rewrite of the three
  hashes on start and whenever Redis lost or missed our writes.
- Commands on ``bus.serve_commands("discovery")``: ``discover``, ``connect``, ``disconnect``,
  ``clusters`` (see `castray.discovery.commands`), answered with the models of `castray.shared.replies`;
  errors are the classes of `castray.discovery.errors`, whose status and code the failed reply carries.
- Replicas: only the one holding the lease ``names.discovery_leader`` (a string naming its bus source,
  renewed every ``leader_ttl``/3) watches, writes and answers commands; the others stand by and take the
  lease when it expires or is released. Every state write checks the lease in its transaction.
- Ids: cluster ``c`` + 12 hex of sha1(session name | GCS address); node ``<cluster id>-<ray node id[:12]>``.
"""
