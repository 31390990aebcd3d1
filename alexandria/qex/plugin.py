"""qex as a plug-in of the core (see alexandria/hookspecs.py): its seed views, its `alex qex` command
group, its store's database name and its dashboard panels. Announced in pyproject.toml's
`[project.entry-points.alexandria]`; the core's modules never name qex."""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl

#: The database file of a qex store (the same projection, named as the qex seed names it).
QEX_DB_NAME = "qex.db"

# The qex seed's two relations, as views over the tables above (every qex run is an Alexandria run).
# A qex run is a run with the parameter `qex.backend` and an artifact `density_matrix` (logged only once
# its .npy file is durably in place, so no row ever points to a missing file); `artifacts` holds the other
# artifacts of those runs (a sweep's plot belongs to its parent run: see `artifact`). artifact_id numbers the
# artifacts by (time, run, name): the same numbers after a rebuild. Deleted runs (`alex delete`) are left out
# of both, as of every listing. Portable SQL: no JSON functions.
VIEWS = {
    "runs": """
SELECT r.id AS run_id,
       r.experiment_name AS experiment_name,
       COALESCE(params.value, '{}') AS params,
       backend.value AS backend_name,
       r.timestamp_start AS timestamp,
       rho.path AS density_matrix_path,
       meta.value AS metadata
FROM run r
JOIN parameter backend ON backend.run_id = r.id AND backend.key = 'qex.backend'
JOIN artifact rho ON rho.run_id = r.id AND rho.name = 'density_matrix'
LEFT JOIN parameter params ON params.run_id = r.id AND params.key = 'qex.params'
LEFT JOIN tag meta ON meta.run_id = r.id AND meta.key = 'qex.metadata'
WHERE NOT r.deleted
""",
    "artifacts": """
SELECT ROW_NUMBER() OVER (ORDER BY a.timestamp, a.run_id, a.name) AS artifact_id,
       a.run_id AS run_id,
       a.name AS artifact_name,
       a.path AS artifact_path,
       COALESCE(a.type, 'application/octet-stream') AS artifact_type
FROM artifact a
WHERE a.name <> 'density_matrix'
  AND EXISTS (SELECT 1 FROM parameter p WHERE p.run_id = a.run_id AND p.key = 'qex.backend')
  AND EXISTS (SELECT 1 FROM artifact d WHERE d.run_id = a.run_id AND d.name = 'density_matrix')
  AND EXISTS (SELECT 1 FROM run r WHERE r.id = a.run_id AND NOT r.deleted)
""",
}


@hookimpl
def sql_views() -> dict[str, str]:
    return VIEWS


@hookimpl
def register_commands(cli: Any) -> None:
    from .cli import qex

    cli.add_command(qex)


@hookimpl
def database_names() -> list[str]:
    return [QEX_DB_NAME]


@hookimpl
def embedded_artifacts() -> dict[str, str]:
    return {"bloch_sphere": "Bloch spheres", "sweep_plot": "Sweep"}
