"""Prometheus metrics, in a registry owned by the daemon (no global default registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.operations = Counter(
            "kv_driver_operations_total",
            "Volume operations by kind (publish, unpublish) and result (success or error code).",
            ["operation", "source", "result"],
            registry=r,
        )
        self.operation_seconds = Histogram(
            "kv_driver_operation_duration_seconds",
            "Duration of volume operations.",
            ["operation", "source", "result"],
            buckets=_FAST,
            registry=r,
        )
        self.keyvault_requests = Counter(
            "kv_driver_keyvault_requests_total",
            "Key Vault requests by vault, operation and HTTP status (or 'error' for no answer).",
            ["vault", "operation", "status"],
            registry=r,
        )
        self.keyvault_seconds = Histogram(
            "kv_driver_keyvault_request_duration_seconds",
            "Key Vault request duration.",
            ["vault", "operation"],
            buckets=_FAST,
            registry=r,
        )
        self.token_requests = Counter(
            "kv_driver_token_requests_total",
            "Token requests to NMI, IMDS or Entra ID by kind and status.",
            ["kind", "status"],
            registry=r,
        )
        self.volumes = Gauge(
            "kv_driver_volumes_mounted", "Volumes currently published.", ["source"], registry=r
        )
        self.rotation_checks = Counter(
            "kv_driver_rotation_checks_total",
            "Latest-version checks sent to Key Vault by the rotation loop, by result.",
            ["result"],
            registry=r,
        )
        self.rotation_saved = Counter(
            "kv_driver_rotation_requests_saved_total",
            "Checks not sent because another volume shared the (vault, object, identity).",
            registry=r,
        )
        self.rotations = Counter(
            "kv_driver_rotations_total",
            "Volumes whose files were swapped to new object versions.",
            registry=r,
        )
        self.rotation_failures = Counter(
            "kv_driver_rotation_failures_total",
            "Failed rotation attempts (old files kept), by reason.",
            ["reason"],
            registry=r,
        )
        self.restore_pending = Gauge(
            "kv_driver_restore_pending",
            "Recorded volumes still to be rebuilt after a restart (0 once restore is done).",
            registry=r,
        )
        self.republish_kept = Counter(
            "kv_driver_republish_kept_total",
            "Republishes that could not refresh a mounted volume and kept its files, by code.",
            ["code"],
            registry=r,
        )
        self.optional_missing = Counter(
            "kv_driver_optional_missing_total",
            "Optional objects found missing or disabled and skipped, by vault.",
            ["vault"],
            registry=r,
        )
        self.selected_objects = Histogram(
            "kv_driver_selected_objects",
            "Objects one selecting entry matched in a vault listing, by vault.",
            ["vault"],
            buckets=(0, 1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=r,
        )
        self.rate_limited = Counter(
            "kv_driver_keyvault_rate_limited_total",
            "Key Vault requests held back by the client-side per-vault budget, by vault.",
            ["vault"],
            registry=r,
        )

        self.provider_shared = Counter(
            "kv_driver_provider_mounts_shared_total",
            "Secrets-store provider Mounts answered by a fetch made for another Mount of the same"
            " objects and identity (no Key Vault request of their own).",
            registry=r,
        )

    def token_request(self, kind: str, status: str) -> None:
        self.token_requests.labels(kind, status).inc()
