"""Which SDK method answers each operation of the gateway's API, (method, path as in the OpenAPI spec) to
the name of the method on `AsyncClient` and `Client`. ``tests/test_client_sdk.py`` checks it against the
spec the gateway serves, so an endpoint added without its SDK method fails there."""

from __future__ import annotations

from typing import Final

GEN = "/api/file-generator"

OPERATIONS: Final[dict[tuple[str, str], str]] = {
    ("get", "/api/health"): "health",
    ("get", "/api/ready"): "ready",
    ("get", "/api/status"): "status",
    ("get", "/api/services"): "services",
    ("get", "/metrics"): "metrics",
    ("get", "/api/openapi.json"): "openapi",
    ("get", "/ws"): "events",
    ("post", "/api/cluster/discover-external"): "discover",
    ("get", "/api/cluster/external-info"): "external_info",
    ("post", "/api/cluster/connect-external"): "connect",
    ("delete", "/api/cluster/disconnect-external"): "disconnect",
    ("get", "/api/clusters"): "clusters",
    ("get", "/api/clusters/{cluster_id}"): "cluster",
    ("get", "/api/nodes"): "nodes",
    ("get", "/api/nodes/external"): "external_nodes",
    ("get", "/api/nodes/{node_id}"): "node",
    ("post", "/api/nodes"): "create_node",
    ("delete", "/api/nodes/{node_id}"): "delete_node",
    ("get", "/api/nodes/{node_id}/messages"): "node_messages",
    ("post", "/api/send"): "send_message",
    ("post", "/api/transfers"): "create_transfer",
    ("get", "/api/transfers"): "transfers",
    ("get", "/api/transfers/{transfer_id}"): "transfer",
    ("delete", "/api/transfers/{transfer_id}"): "cancel",
    ("post", "/api/upload"): "upload",
    ("get", "/api/uploads"): "uploads",
    ("get", "/api/uploads/{upload_id}"): "get_upload",
    ("get", "/api/uploads/{upload_id}/content"): "download_upload",
    ("delete", "/api/uploads/{upload_id}"): "delete_upload",
    ("get", f"{GEN}/presets"): "file_presets",
    ("get", f"{GEN}/info"): "file_generator_info",
    ("post", f"{GEN}/create"): "create_file",
    ("post", f"{GEN}/create-preset"): "create_preset_file",
    ("post", f"{GEN}/create-demo"): "create_demo_file",
    ("post", f"{GEN}/create-and-transfer"): "create_and_transfer",
    ("get", f"{GEN}/files"): "generated_files",
    ("get", f"{GEN}/files/{{name}}"): "download_generated",
    ("get", f"{GEN}/download/{{name}}"): "download_generated",
    ("delete", f"{GEN}/files/{{name}}"): "delete_generated",
    ("delete", f"{GEN}/delete/{{name}}"): "delete_generated",
    ("post", "/api/file-transfers/manual"): "manual_transfer",
    ("get", "/api/file-transfers/status"): "file_transfer_stats",
    ("post", "/api/file-transfers/auto/toggle"): "auto_transfers",
}

NOT_API: Final[dict[tuple[str, str], str]] = {
    ("get", "/"): "a redirect to the web page",
    ("get", "/ui"): "the web page",
    ("get", "/ui/"): "the web page",
    ("get", "/api/docs"): "the API's documentation page",
    ("get", "/health"): "an alias of /api/health",
}
"""What the spec lists that is a page for a browser (or an alias), not an operation for a program."""
