"""The HTTP service (docs/architecture.md#http-and-dashboard): `create_app(runtime)` in
`ciwatch.web.app` builds the FastAPI application — JSON API, dashboard, `/metrics`, `/cc.xml`,
probes."""
