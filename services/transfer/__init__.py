"""services/transfer: the transfer worker (``castray transfer``; import path ``castray.transfer``).

Contract with the gateway (see ``castray.shared.transfers``):
- Request: the gateway stores the `TransferRecord` (msgpack) at ``Names.transfer(id)``, indexes it in
  ``Names.transfer_index`` and XADDs a `QueuedTransfer` (its id) to ``Names.transfer_requests``.
  Workers read it in the consumer group ``TRANSFER_GROUP``; ``Names.transfer_lease(id)`` names the
  replica running it (renewed every heartbeat, with its stream entry re-claimed to keep it fresh).
- Record updates: ``state`` queued -> running -> completed | failed | cancelled, ``worker``,
  ``started_at``/``finished_at``, ``bytes_total``, ``sha256``, ``cluster_id``/``source_node_id``, and per
  destination ``state`` (pending, running, completed, failed, cancelled), ``bytes_done``, ``path``,
  ``sha256``, ``error``. Some destinations failed and some completed -> ``completed`` with ``error``
  listing the failed ones. Cancel: set ``cancel_requested`` (workers keep it when they write).
- Events on ``Names.transfer_events``: transfer-started, transfer-progress (one destination per tick,
  about 4 per second per transfer), transfer-completed (per destination, then ``node_id=None``),
  transfer-failed (per destination; ``node_id=None`` when all failed), transfer-cancelled.
- Destinations may be in other clusters than the source's: the job relays them through a verified copy
  under ``<CASTRAY_DATA_DIR>/relay/`` on this machine (``castray.transfer.job``).
- Files land at ``<CASTRAY_INBOX_DIR>/<node id>/<file name>`` (default ``<CASTRAY_DATA_DIR>/inbox``); an
  existing file fails that destination with ``exists: ...`` unless ``overwrite``. Node-file sources are
  relative to ``CASTRAY_FILES_ROOT`` (default ``<data dir>/files``) on their node.

Modules: settings, worker (stream consumer), job (one transfer: record and events), planning (record to
`Plan`), protocol (the `Plan` and the driver's events: what the service and its drivers exchange, no Ray),
records (record store, leases), drivers (child processes), driver (``python -m castray.transfer.driver``:
one per Ray cluster), pipeline (the Ray data path), sources (where chunks come from: a node's agent, or the
driver itself for uploads), agent (the actor per node), sink (a copy being written), diskio (a
destination's direct-I/O writer), shipping (the agent's code, sent to every node with the driver's
runtime_env).
"""
