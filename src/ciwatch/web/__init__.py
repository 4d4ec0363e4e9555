"""The HTTP service (DESIGN §9): `create_app(runtime)` in `ciwatch.web.app` builds the FastAPI
application — JSON API, dashboard, `/metrics`, `/cc.xml`, probes."""
