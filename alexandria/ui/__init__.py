"""`alex ui`: a live local dashboard over a store, in the browser.

Framework: Starlette, served by uvicorn. Starlette is small (routing, responses, static files, a
test client; nothing else), typed, and well kept; it runs plain `def` endpoints in a thread pool,
which is what blocking SQLite reads need, while uvicorn gives a real HTTP/1.1 server that shuts
down gracefully on Ctrl-C and SIGTERM. Flask's development server would do for one user too, but
it is documented as not meant for anything else and stops by killing the process; a dashboard
left open in a tab polls every second, which an async server handles without a thread per tab.

What it serves (every page is rendered on the server with Jinja2, autoescaping on, so whatever a
user logged is shown as text; `static/ui.js` then polls the JSON endpoints and updates in place):

* ``/``: the runs, children under their parent, filtered and sorted by the query string
  (``experiment``, ``status``, ``tag=k=v``, ``param=k=v``, ``q`` (text), ``sort``, ``desc``);
* ``/run/<id>``: one run, with a plotly chart per metric (min/max envelope and last value per
  bucket, from `query.downsample`), refreshed every ``interval`` while the run is running;
  artifacts a plug-in names (`embedded_artifacts`, e.g. Bloch spheres) are embedded;
* ``/compare?run=<id>&run=<id>``: parameters side by side, one chart per metric with the runs
  overlaid;
* ``/api/runs``, ``/api/run/<id>/status``, ``/api/run/<id>/metric/<key>``: what the pages poll;
* ``/artifact/<run_id>/<name>``: an artifact's file, found in the ``artifact`` table and served
  only if its recorded path, resolved (symlinks included), lies inside the store; a directory
  artifact is not served (404): zipping a large folder on request is not a dashboard's job;
* ``/static/plotly.min.js``: plotly.js from the installed plotly package (no CDN, works offline).

Requests read through one `Reader(store, fold=False)` (a read-only connection: SQLite refuses writes on
it) and every route is GET (HEAD) only. The server folds new log lines itself in a background thread
(`watch.watch`: at once on a file notification, and every ``interval`` seconds), unless ``fold=False``.

The modules: app.py (the routes), data.py (what they serve, from the read model), render.py (templates,
formatting for them, JSON), security.py (headers, hosts, artifact paths), server.py (sockets, uvicorn).
"""

from .app import Dashboard, create_app
from .server import BackgroundServer, serve

__all__ = ["BackgroundServer", "Dashboard", "create_app", "serve"]
