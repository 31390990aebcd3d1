"""`qex` (also `alex qex`): run and sweep quantum experiments, list, show, compare, rerun and export their states.

A thin adapter over `runner` and `states`; errors are the library's typed errors, printed as
`Error: ...` by the group they are mounted in; `runs` and `show` print through `output.emit`
(`--format table|csv|json`), as the core's read commands do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..cli_base import ErrorsAsMessages, console
from ..errors import InvalidInputError, RunNotFoundError
from ..output import emit, format_option
from ..store import Store


def _store(ctx: click.Context) -> Store:
    from .runner import open_store

    return open_store(ctx.obj.get("qex_store"))


def _params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """key=value pairs; values parsed as JSON when they are (numbers, true/false), else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"parameter {pair!r} must be key=value, e.g. theta=0.5")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _backend(name: str, noise: str | None, convention: str = "ours", idle_noise: bool = False) -> Any:
    from .backends import Noise, make_backend

    return make_backend(name, Noise.parse(noise or "", convention=convention, idle_noise=idle_noise))


def _rows(reader: Any) -> list[dict[str, Any]]:
    """The seed's `runs` view (deleted runs are not in it) with each run's name, newest first."""
    columns, rows = reader.sql(
        "SELECT v.*, r.name AS name FROM runs v JOIN run r ON r.id = v.run_id ORDER BY v.timestamp DESC, v.run_id"
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _runs(store: Store) -> list[dict[str, Any]]:
    from ..query import Reader

    with Reader(store) as reader:
        return _rows(reader)


def _run(store: Store, ref: str) -> dict[str, Any]:
    """The `runs` row of the run `ref` names as every command names runs (`query.resolve_run_id`: an id, a
    unique prefix, a name or EXPERIMENT/NAME); a deleted run is refused as `alex compare` refuses it."""
    from ..query import Reader, resolve_run_id, select_runs

    with Reader(store) as reader:
        (run_id,) = select_runs(reader.engine, [resolve_run_id(reader.engine, ref)])
        found = [r for r in _rows(reader) if r["run_id"] == run_id]
    if not found:
        raise RunNotFoundError(f"run {run_id} is not a qex run (it logged no density matrix); `qex runs` lists them")
    return found[0]


def _vector(v: list[float]) -> str:
    return "(" + ", ".join(f"{x:+.4f}" for x in v) + ")"


@click.group(name="qex", cls=ErrorsAsMessages)
@click.option(
    "--store",
    envvar="QEX_STORE",
    type=click.Path(file_okay=False),
    help="The qex store directory (default: $QEX_STORE, else ./qex_data; `alex --store` does not apply here).",
)
@click.pass_context
def qex(ctx: click.Context, store: str | None) -> None:
    """Quantum experiments: density matrices as .npy, Bloch spheres as HTML, all in one SQL store."""
    ctx.ensure_object(dict)
    ctx.obj["qex_store"] = store


@qex.command("experiments")
def experiments_cmd() -> None:
    """List the ready experiments and their default parameters."""
    from rich.table import Table

    from .experiments import EXPERIMENTS

    table = Table(title="ready experiments")
    for col in ("name", "defaults", "what"):
        table.add_column(col)
    for exp in EXPERIMENTS.values():
        table.add_row(exp.name, json.dumps(exp.defaults), exp.description)
    console.print(table)


_backend_options = [
    click.option("--backend", "-b", default="numpy_dm", show_default=True, help="numpy_dm or cirq_dm."),
    click.option("--noise", help="Noise after every gate, e.g. depol=0.01,ad=0.02,pd=0.005 (a bare 0.05: depol)."),
    click.option(
        "--noise-convention",
        type=click.Choice(["ours", "cirq"]),
        default="ours",
        show_default=True,
        help="How depol=p reads: ours, rho -> (1-p) rho + p I/2; cirq, cirq.depolarize(p) (ours with 4p/3).",
    ),
    click.option(
        "--idle-noise",
        is_flag=True,
        help="Noise after every moment on every qubit, idle ones too (upstream qex's NoisyCirqBackend).",
    ),
]


def _with_backend(f: Any) -> Any:
    for option in reversed(_backend_options):
        f = option(f)
    return f


@qex.command("run")
@click.argument("experiment")
@click.option("--param", "-p", "params", multiple=True, help="key=value, repeatable (theta=0.5, n=2).")
@click.option("--meta", "-m", "meta", multiple=True, help="key=value kept in the run's metadata (sample=A3).")
@_with_backend
@click.pass_context
def run_cmd(
    ctx: click.Context,
    experiment: str,
    params: tuple[str, ...],
    meta: tuple[str, ...],
    backend: str,
    noise: str | None,
    noise_convention: str,
    idle_noise: bool,
) -> None:
    """Run one ready experiment and record it."""
    from .runner import run_experiment

    store = _store(ctx)
    chosen = _backend(backend, noise, noise_convention, idle_noise)
    result = run_experiment(experiment, _params(params), chosen, store=store, metadata=_params(meta))
    console.print(f"run {result.run_id}: {result.experiment} {json.dumps(result.params)} on {result.backend}")
    _print_state(result.metadata)
    console.print(f"density matrix: {store.root / result.density_matrix_path}")
    console.print(f"run page:       {store.root / result.bloch_path}  (`qex view {result.run_id[:8]}` opens it)")


@qex.command("sweep")
@click.argument("experiment")
@click.option(
    "--over",
    "over",
    multiple=True,
    required=True,
    help="name=start:stop:count or name=a,b,c: numbers, pi, + - * / ( ) (3*pi/4); integers stay integers.",
)
@click.option("--param", "-p", "params", multiple=True, help="Fixed key=value parameters.")
@_with_backend
@click.pass_context
def sweep_cmd(
    ctx: click.Context,
    experiment: str,
    over: tuple[str, ...],
    params: tuple[str, ...],
    backend: str,
    noise: str | None,
    noise_convention: str,
    idle_noise: bool,
) -> None:
    """Run an experiment over a grid of parameter values, as child runs of one parent run.

    The sweep's page draws Bloch trajectories and purity / fidelity curves over one parameter, heatmaps of
    purity, fidelity and each Bloch component over the first two of several."""
    from rich.table import Table

    from .grid import parse_grid
    from .runner import sweep

    grid = parse_grid(over)
    store = _store(ctx)
    chosen = _backend(backend, noise, noise_convention, idle_noise)
    parent, results = sweep(experiment, grid, _params(params), chosen, store=store)
    table = Table(title=f"sweep {parent}: {len(results)} runs on {results[0].backend}")
    for col in ("run", *grid, "purity", "entropy (bits)", "fidelity to ideal"):
        table.add_column(col, justify="right")
    for r in results:
        fid = r.metadata.get("fidelity_to_ideal")
        table.add_row(
            r.run_id[:12],
            *(f"{r.params[k]:.4g}" if isinstance(r.params[k], float) else str(r.params[k]) for k in grid),
            f"{r.metadata['purity']:.4f}",
            f"{r.metadata['entropy_bits']:.4f}",
            "-" if fid is None else f"{fid:.4f}",
        )
    console.print(table)
    console.print(f"sweep plot: {store.root / 'artifacts' / f'{parent}_sweep.html'}")


#: The seed's `runs` view, column by column: what `qex runs --format csv|json` gives per run.
RUN_COLUMNS = ("run_id", "experiment_name", "params", "backend_name", "timestamp", "density_matrix_path", "metadata")
#: `qex runs --format csv|json`: those, then the run's name.
LIST_COLUMNS = (*RUN_COLUMNS, "name")


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A `runs` row for JSON: its params and metadata as objects, not JSON text."""
    return {**row, "params": json.loads(row["params"] or "{}"), "metadata": json.loads(row["metadata"] or "{}")}


@qex.command("runs")
@click.option("--experiment", "-e", help="Only runs of this experiment.")
@format_option(
    f"a header, then one line per run, newest first: {', '.join(LIST_COLUMNS)} (params and metadata as JSON).",
    "a list of objects with those keys (params and metadata as objects).",
)
@click.pass_context
def runs_cmd(ctx: click.Context, experiment: str | None, fmt: str) -> None:
    """List qex runs (the seed's `runs` view, with each run's name), newest first; deleted runs left out."""
    rows = [r for r in _runs(_store(ctx)) if experiment is None or r["experiment_name"] == experiment]

    def table() -> None:
        from rich.table import Table

        t = Table(title=f"{len(rows)} qex run(s)")
        for col in ("run_id", "name", "experiment", "params", "backend", "qubits", "purity", "density matrix"):
            t.add_column(col)
        for r in rows:
            meta = json.loads(r["metadata"] or "{}")
            t.add_row(
                r["run_id"],
                r["name"] or "-",
                r["experiment_name"],
                r["params"],
                r["backend_name"],
                str(meta.get("num_qubits", "?")),
                f"{meta['purity']:.4f}" if "purity" in meta else "?",
                r["density_matrix_path"],
            )
        console.print(t)

    rows_out = ([r[c] for c in LIST_COLUMNS] for r in rows)
    emit(fmt, columns=LIST_COLUMNS, rows=rows_out, table=table, document=[_decoded(r) for r in rows])


#: `qex show --format csv`: one line per qubit (its name last: '' for a run logged before names were).
QUBIT_COLUMNS = ("qubit", "bloch_x", "bloch_y", "bloch_z", "purity", "entropy_bits", "name")


_html_option = click.option(
    "--html",
    "html_out",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[OUT]",
    help="Write the page (offline HTML) to OUT, default qex-<run>.html here, and print its path.",
)
_embed_option = click.option(
    "--embed", is_flag=True, help="With --html: the plotting library inside the page (one ~5 MB file to share)."
)


@qex.command("show")
@click.argument("run_id")
@format_option(
    f"a header, then one line per qubit: {', '.join(QUBIT_COLUMNS)}.",
    "one object: the run's `runs` row, params and metadata (purity, entropy, qubits, ...) as objects.",
)
@_html_option
@_embed_option
@click.pass_context
def show_cmd(ctx: click.Context, run_id: str, fmt: str, html_out: str | None, embed: bool) -> None:
    """One qex run: parameters, backend, per-qubit Bloch vectors, purity, entropy, files; with --html, all
    that as a page with the Bloch spheres and the density matrix (heatmaps, city plot)."""
    from .runner import stored_density_matrix

    store = _store(ctx)
    r = _run(store, run_id)
    meta = json.loads(r["metadata"] or "{}")
    _, rho = stored_density_matrix(store, r["run_id"])  # what the run says of its state holds only for its file
    if html_out is not None:
        page = _write_run_page(html_out or f"qex-{r['run_id'][:8]}.html", r, meta, rho, embed=embed)
        click.echo(str(page))
        return
    bloch = _bloch_file(store, r["run_id"])

    def table() -> None:
        name = r["name"] or "-"
        console.print(f"run {r['run_id']}  name {name}  experiment {r['experiment_name']}  backend {r['backend_name']}")
        console.print(f"params {r['params']}  noise {meta.get('noise')}  simulator {meta.get('simulator')}")
        if meta.get("qubit_names"):
            console.print(f"qubits {', '.join(meta['qubit_names'])}  ({meta.get('qubit_order')})")
        if meta.get("user"):
            console.print(f"metadata {json.dumps(meta['user'], sort_keys=True)}")
        _print_state(meta)
        console.print(f"density matrix: {store.root / r['density_matrix_path']}")
        if bloch is not None:
            console.print(f"run page:       {bloch}")

    qubits = (
        (q["qubit"], *q["bloch"], q["purity"], q["entropy_bits"], q.get("name", "")) for q in meta.get("qubits", [])
    )
    emit(fmt, columns=QUBIT_COLUMNS, rows=qubits, table=table, document=_decoded(r))


def _about(r: dict[str, Any], meta: dict[str, Any]) -> list[tuple[str, str]]:
    from .runner import run_about

    return run_about(
        r["run_id"], r["name"], r["experiment_name"], r["params"], r["backend_name"], str(meta.get("noise", "unknown"))
    )


def _measures(meta: dict[str, Any], rho: Any) -> dict[str, Any]:
    """The numbers the run logged of its state; computed from the state for a run that logged none."""
    from .runner import describe_state

    return meta if "purity" in meta and "qubits" in meta else {**meta, **describe_state(rho)}


def _write_run_page(out: str, r: dict[str, Any], meta: dict[str, Any], rho: Any, *, embed: bool) -> Path:
    from .runner import QUBIT_ORDERS
    from .state_figures import write_run_page

    title = f"{r['experiment_name']} {r['params']} on {r['backend_name']}"
    numbered = meta.get("qubit_order", QUBIT_ORDERS["numbered"]) == QUBIT_ORDERS["numbered"]
    names = None if numbered else meta.get("qubit_names")  # as the run's own page titles its spheres
    measures = _measures(meta, rho)
    return write_run_page(
        out, rho, title=title, about=_about(r, meta), measures=measures, embed=embed, qubit_names=names
    )


def _bloch_file(store: Store, run_id: str) -> Any:
    """Where run `run_id`'s recorded Bloch spheres are, if they are a file inside the store; else None."""
    from ..errors import RecordedFileError
    from ..query import Reader, artifact_record

    with Reader(store, fold=False) as reader:
        record = artifact_record(reader.engine, run_id, "bloch_sphere")
    if record is None:
        return None
    try:
        return store.recorded_file(record["path"], f"run {run_id} artifact 'bloch_sphere'")
    except RecordedFileError:
        return None


@qex.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@_html_option
@_embed_option
@click.pass_context
def compare_cmd(ctx: click.Context, run_a: str, run_b: str, html_out: str | None, embed: bool) -> None:
    """Fidelity and trace distance of two runs' states, and their Bloch vectors side by side; with --html,
    also a page of them with both runs' Bloch vectors on shared spheres and both density matrices."""
    from rich.table import Table

    from . import states
    from .runner import load_density_matrix

    store = _store(ctx)
    a, b = _run(store, run_a), _run(store, run_b)
    rho_a, rho_b = (load_density_matrix(store, r["run_id"]) for r in (a, b))
    if rho_a.shape != rho_b.shape:
        raise InvalidInputError(
            f"runs {a['run_id'][:8]} and {b['run_id'][:8]} have {states.num_qubits(rho_a)} and "
            f"{states.num_qubits(rho_b)} qubits: only states of the same size compare"
        )
    for label, r in (("A", a), ("B", b)):
        name = r["name"] or "-"
        console.print(f"{label} {r['run_id']}  {name}  {r['experiment_name']} {r['params']} on {r['backend_name']}")
    fid, dist = states.fidelity(rho_a, rho_b), states.trace_distance(rho_a, rho_b)
    console.print(f"fidelity (Uhlmann-Jozsa, squared): {fid:.6f}")
    console.print(f"trace distance: {dist:.6f}")
    qubits_a, qubits_b = states.qubit_summary(rho_a), states.qubit_summary(rho_b)
    table = Table()
    for col in ("qubit", "Bloch A", "Bloch B", "purity A", "purity B"):
        table.add_column(col, justify="right")
    for qa, qb in zip(qubits_a, qubits_b, strict=True):
        table.add_row(
            str(qa["qubit"]), _vector(qa["bloch"]), _vector(qb["bloch"]), f"{qa['purity']:.4f}", f"{qb['purity']:.4f}"
        )
    console.print(table)
    if html_out is not None:
        from .state_figures import write_compare_page

        meta_a, meta_b = (json.loads(r["metadata"] or "{}") for r in (a, b))
        out = html_out or f"qex-compare-{a['run_id'][:8]}-{b['run_id'][:8]}.html"
        page = write_compare_page(
            out,
            rho_a,
            rho_b,
            about_a=_about(a, meta_a),
            about_b=_about(b, meta_b),
            fidelity=fid,
            trace_distance=dist,
            qubits_a=qubits_a,
            qubits_b=qubits_b,
            embed=embed,
        )
        console.print(f"page: {page}", soft_wrap=True)


@qex.command("view")
@click.argument("run_id")
@click.pass_context
def view_cmd(ctx: click.Context, run_id: str) -> None:
    """Open the run's page (its numbers, Bloch spheres and density matrix) in the web browser, as upstream
    qex's `view` does; a run that recorded no page gets one written here first (as `show --html`)."""
    import webbrowser

    from ..errors import UnsupportedError
    from .runner import stored_density_matrix

    store = _store(ctx)
    r = _run(store, run_id)
    page = _bloch_file(store, r["run_id"])
    if page is None:
        _, rho = stored_density_matrix(store, r["run_id"])
        page = _write_run_page(f"qex-{r['run_id'][:8]}.html", r, json.loads(r["metadata"] or "{}"), rho, embed=False)
        console.print(f"run {r['run_id']} recorded no page: wrote {page}", soft_wrap=True)
    url = Path(page).resolve().as_uri()
    try:
        opened = webbrowser.open(url)
    except webbrowser.Error:
        opened = False
    if not opened:
        raise UnsupportedError(
            f"no web browser could be started on this machine; open the page yourself: {url} "
            "(or name a browser in the BROWSER environment variable)"
        )
    console.print(f"opened {url}", soft_wrap=True)


@qex.command("rerun")
@click.argument("run_id")
@click.pass_context
def rerun_cmd(ctx: click.Context, run_id: str) -> None:
    """Run RUN_ID again from its stored circuit, backend and noise, as a new run tagged rerun_of=RUN_ID;
    print the new state's fidelity with the original's."""
    from .runner import rerun

    store = _store(ctx)
    r = _run(store, run_id)
    again = rerun(store, r["run_id"])
    res = again.result
    console.print(
        f"run {res.run_id}: rerun of {again.original_id}, {res.experiment} {json.dumps(res.params)} on {res.backend}"
    )
    _print_state(res.metadata)
    console.print(f"fidelity with the original state: {again.fidelity:.15f} (1 - F = {1 - again.fidelity:.3g})")
    console.print(f"trace distance to the original state: {again.trace_distance:.3g}")


@qex.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.pass_context
def import_cmd(ctx: click.Context, directory: str) -> None:
    """Bring the runs of an upstream qex store (the `qex` package's qex.db, results/*.npy, artifacts/*.html)
    into this store, with their ids, params, times and states checked; DIRECTORY is only read. Running it
    twice adds nothing."""
    from ..cli import _print_import_summary
    from ..cli_base import progress_bar
    from .runner import DEFAULT_STORE, STORE_ENV
    from .upstream import check_outside, import_upstream

    check_outside(directory, ctx.obj.get("qex_store") or os.environ.get(STORE_ENV) or DEFAULT_STORE)
    store = _store(ctx)
    with progress_bar("importing upstream qex runs", unit="runs") as progress:
        summary = import_upstream(directory, store, progress=progress)
    _print_import_summary(summary)


@qex.command("export")
@click.argument("run_id")
@click.argument("output", type=click.Path(dir_okay=False))
@click.pass_context
def export_cmd(ctx: click.Context, run_id: str, output: str) -> None:
    """Write a run's density matrix to OUTPUT: .npy (exact copy), .json or .csv (row,col,real,imag per entry)."""
    from ..files import write_atomically
    from . import states
    from .runner import stored_density_matrix

    store = _store(ctx)
    r = _run(store, run_id)
    data, rho = stored_density_matrix(store, r["run_id"])  # checked against its log: written as it was logged
    suffix = os.path.splitext(output)[1].lower()
    if suffix == ".npy":
        write_atomically(Path(output), data)
    elif suffix == ".json":
        document = {"run_id": r["run_id"], "real": rho.real.tolist(), "imag": rho.imag.tolist()}
        write_atomically(Path(output), json.dumps(document).encode())
    elif suffix == ".csv":
        write_atomically(Path(output), states.density_matrix_csv(rho).encode())
    else:
        raise InvalidInputError(f"export to {output!r}: the file name must end in .npy, .json or .csv")
    console.print(f"wrote {output} ({rho.shape[0]}x{rho.shape[1]} complex)")


def _print_state(meta: dict[str, Any]) -> None:
    from rich.table import Table

    line = f"purity {meta['purity']:.6f}  entropy {meta['entropy_bits']:.6f} bits"
    if "fidelity_to_ideal" in meta:
        line += f"  fidelity to the noiseless state {meta['fidelity_to_ideal']:.6f}"
    console.print(line)
    table = Table()
    for col in ("qubit", "Bloch vector (x, y, z)", "|r|", "purity", "entropy (bits)"):
        table.add_column(col, justify="right")
    for q in meta.get("qubits", []):
        v = q["bloch"]
        table.add_row(
            f"{q['qubit']} {q['name']}" if "name" in q else str(q["qubit"]),
            _vector(v),
            f"{sum(x * x for x in v) ** 0.5:.4f}",
            f"{q['purity']:.4f}",
            f"{q['entropy_bits']:.4f}",
        )
    console.print(table)


def main() -> None:
    """The `qex` command: the same group as `alex qex`."""
    qex(prog_name="qex")
