"""Ledger entries -> DuckDB tables, incremental and rebuildable from the ledger (README.md)."""

from projections.mapping import PROJECTIONS, PROJECTORS, Projection
from projections.projector import (
    DEFAULT_BATCH_SIZE,
    ProjectionError,
    ProjectionStats,
    Projector,
    connect_readonly,
    project,
    rebuild,
)
from projections.retention import DEFAULT_RETENTION_DAYS, apply_retention
from projections.schema import SCHEMA_VERSION, TABLES

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_RETENTION_DAYS", "PROJECTIONS", "PROJECTORS", "SCHEMA_VERSION",
    "TABLES", "Projection", "ProjectionError", "ProjectionStats", "Projector", "apply_retention",
    "connect_readonly", "project", "rebuild",
]
