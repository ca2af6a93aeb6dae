"""The operators' dashboard: static files served by the controller, and its API views.

The page (``index.html``, ``style.css``, the ES modules ``app.js`` imports: ``units.js``,
``unit.js``, ``schedule.js``, ``commands.js``, ``reports.js``, ``admin.js``, ``shell.js``,
``api.js``, ``format.js``, ``dom.js``, ``state.js``; and the plain scripts ``i18n.js`` and
``chart.js``) needs no build step and nothing from the internet:
`controller.api.routes.dashboard` serves it at ``/`` and ``/static/...``. It talks to the controller's own API with the bearer token the
user signs in with. `controller.dashboard.views` assembles what the page shows (units
with what runs now, next start, alarms; chart series; schedule checks); see
docs/dashboard.md.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent
"""Where the dashboard's static files live (next to this module)."""
