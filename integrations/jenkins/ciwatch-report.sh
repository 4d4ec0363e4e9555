#!/bin/sh
# Report a freestyle Jenkins build to ciwatch. Add it as the last "Execute shell" step, or as a
# post-build script (e.g. with the PostBuildScript plugin) so it also runs after a failure.
#
#   CIWATCH_SERVER=https://ciwatch.example.com CIWATCH_REPORT_TOKEN=... \
#     sh ciwatch-report.sh [STATUS]
#
# STATUS defaults to "success" when this runs as a normal build step: a failing step before it
# stops the build. JOB_NAME, BUILD_NUMBER, BUILD_URL, GIT_COMMIT and GIT_BRANCH are read by
# ciwatch from Jenkins' environment.
set -eu
: "${CIWATCH_SERVER:?set CIWATCH_SERVER to the ciwatch base URL}"
: "${CIWATCH_REPORT_TOKEN:?set CIWATCH_REPORT_TOKEN to the server report_token}"
status="${1:-success}"
if ! command -v ciwatch >/dev/null 2>&1; then
  python3 -m pip install --quiet --user ciwatch
  PATH="$HOME/.local/bin:$PATH"
fi
exec ciwatch report --status "$status"
