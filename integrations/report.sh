#!/bin/sh
# Report this CI run to a ciwatch server (POST /api/v1/report) with nothing but sh and curl:
# no Python, no pip. The GitHub action, the GitLab template and the Jenkins step all run it.
#
#   CIWATCH_SERVER=https://ciwatch.example.com CIWATCH_REPORT_TOKEN=... sh report.sh STATUS
#
# STATUS is ciwatch's word (success, failed, canceled, skipped, running, queued, manual) or the
# CI system's own: GitHub `job.status` (failure, cancelled), GitLab `CI_JOB_STATUS`, Jenkins
# `currentBuild.currentResult` (SUCCESS, UNSTABLE, FAILURE, ABORTED, NOT_BUILT). It defaults to
# CIWATCH_STATUS. The run's fields come from the CI's variables, as `ciwatch report` reads them:
#
#   GitHub Actions  GITHUB_REPOSITORY, GITHUB_RUN_ID, GITHUB_RUN_NUMBER, GITHUB_RUN_ATTEMPT,
#                   GITHUB_WORKFLOW, GITHUB_HEAD_REF or GITHUB_REF_NAME, GITHUB_SHA,
#                   GITHUB_EVENT_NAME, GITHUB_TRIGGERING_ACTOR or GITHUB_ACTOR, GITHUB_SERVER_URL
#   GitLab CI       CI_PROJECT_PATH, CI_PIPELINE_ID, CI_PIPELINE_IID, CI_PIPELINE_NAME,
#                   CI_COMMIT_REF_NAME, CI_COMMIT_SHA, CI_PIPELINE_SOURCE, GITLAB_USER_LOGIN,
#                   CI_PIPELINE_URL, CI_PIPELINE_CREATED_AT
#   Jenkins         JOB_NAME, BUILD_NUMBER, BRANCH_NAME or GIT_BRANCH, GIT_COMMIT, BUILD_URL,
#                   BUILD_USER_ID
#
# CIWATCH_PROJECT, CIWATCH_RUN_ID, CIWATCH_REF, CIWATCH_SHA, CIWATCH_URL, CIWATCH_AUTHOR,
# CIWATCH_WORKFLOW, CIWATCH_NUMBER and CIWATCH_SOURCE (default push) override them.
# CIWATCH_RETRIES (default 4) and CIWATCH_TIMEOUT (seconds per attempt, default 10) tune curl.
#
# Every value is sent form-encoded by curl (--data-urlencode), so quotes, spaces, & and =,
# newlines and any Unicode arrive as they are. The token goes to curl on its standard input,
# never on a command line that `ps` shows.
#
# Exit 0 when stored, 2 when the server refuses the report (bad token or field, or an unknown
# status), 3 when it stays unreachable: the codes of `ciwatch report`.
set -eu

fail() {
  code=$1
  shift
  printf 'ciwatch report: %s\n' "$*" >&2
  exit "$code"
}

: "${CIWATCH_SERVER:?set CIWATCH_SERVER to the ciwatch base URL}"
: "${CIWATCH_REPORT_TOKEN:?set CIWATCH_REPORT_TOKEN to the server report_token}"
command -v curl >/dev/null 2>&1 || fail 3 "curl is not installed"

word=${1:-${CIWATCH_STATUS:-}}
[ -n "$word" ] || fail 2 "give the status: report.sh STATUS (or set CIWATCH_STATUS)"
case $(printf '%s' "$word" | tr '[:upper:]' '[:lower:]') in
  success | passed) status=success ;;
  failed | failure | unstable | error | timed_out) status=failed ;;
  canceled | cancelled | aborted | canceling) status=canceled ;;
  skipped | not_built) status=skipped ;;
  running | in_progress | started) status=running ;;
  queued | pending | created | waiting_for_resource | preparing) status=queued ;;
  manual) status=manual ;;
  *) fail 2 "'$word' is not a status (success, failed, canceled, skipped, running, queued," \
    "manual, or a CI's own word: failure, cancelled, UNSTABLE, ABORTED, NOT_BUILT, ...)" ;;
esac

project='' run_id='' number='' attempt='' workflow='' ref='' sha='' event='' author='' url=''
created_at=''
if [ "${GITHUB_ACTIONS:-}" = true ]; then
  project=${GITHUB_REPOSITORY:-}
  run_id=${GITHUB_RUN_ID:-}
  number=${GITHUB_RUN_NUMBER:-}
  attempt=${GITHUB_RUN_ATTEMPT:-}
  workflow=${GITHUB_WORKFLOW:-}
  ref=${GITHUB_HEAD_REF:-${GITHUB_REF_NAME:-}}
  sha=${GITHUB_SHA:-}
  event=${GITHUB_EVENT_NAME:-}
  author=${GITHUB_TRIGGERING_ACTOR:-${GITHUB_ACTOR:-}}
  if [ -n "$project" ] && [ -n "$run_id" ]; then
    url="${GITHUB_SERVER_URL:-https://github.com}/$project/actions/runs/$run_id"
  fi
elif [ "${GITLAB_CI:-}" = true ]; then
  project=${CI_PROJECT_PATH:-}
  run_id=${CI_PIPELINE_ID:-}
  number=${CI_PIPELINE_IID:-}
  workflow=${CI_PIPELINE_NAME:-}
  ref=${CI_COMMIT_REF_NAME:-}
  sha=${CI_COMMIT_SHA:-}
  event=${CI_PIPELINE_SOURCE:-}
  author=${GITLAB_USER_LOGIN:-}
  url=${CI_PIPELINE_URL:-}
  created_at=${CI_PIPELINE_CREATED_AT:-}
elif [ -n "${JENKINS_URL:-}" ] && [ -n "${JOB_NAME:-}" ] && [ -n "${BUILD_NUMBER:-}" ]; then
  project=$JOB_NAME
  run_id=$BUILD_NUMBER
  number=$BUILD_NUMBER
  ref=${BRANCH_NAME:-${GIT_BRANCH:-}}
  ref=${ref#refs/remotes/origin/}
  ref=${ref#origin/}
  ref=${ref#refs/heads/}
  sha=${GIT_COMMIT:-}
  url=${BUILD_URL:-}
  author=${BUILD_USER_ID:-}
fi
project=${CIWATCH_PROJECT:-$project}
run_id=${CIWATCH_RUN_ID:-$run_id}
number=${CIWATCH_NUMBER:-$number}
workflow=${CIWATCH_WORKFLOW:-$workflow}
ref=${CIWATCH_REF:-$ref}
sha=${CIWATCH_SHA:-$sha}
url=${CIWATCH_URL:-$url}
author=${CIWATCH_AUTHOR:-$author}
[ -n "$project" ] || fail 2 "no project: not in GitHub Actions, GitLab CI or Jenkins? Set CIWATCH_PROJECT"
[ -n "$run_id" ] || fail 2 "no run id: not in GitHub Actions, GitLab CI or Jenkins? Set CIWATCH_RUN_ID"
# Like `ciwatch report`, a run number or attempt that is not a whole number is left out.
case $number in *[!0-9]*) number='' ;; esac
case $attempt in *[!0-9]*) attempt='' ;; esac

# The form: one --data-urlencode per non-empty field (curl encodes all after the first `=`).
set -- --data-urlencode "status=$status" --data-urlencode "provider_status=$word" \
  --data-urlencode "source=${CIWATCH_SOURCE:-push}"
for field in project run_id number attempt workflow ref sha event author url created_at; do
  eval "value=\${$field}"
  # shellcheck disable=SC2154 # value is set by the eval
  [ -z "$value" ] || set -- "$@" --data-urlencode "$field=$value"
done

endpoint="${CIWATCH_SERVER%/}/api/v1/report"
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
# The header goes through curl's config on stdin: " and \ are escaped for its quoted string.
escaped=$(printf '%s' "$CIWATCH_REPORT_TOKEN" | sed 's/[\\"]/\\&/g')
set +e
code=$(printf 'header = "Authorization: Bearer %s"\n' "$escaped" | curl --config - \
  --silent --show-error --output "$answer" --write-out '%{http_code}' \
  --retry "${CIWATCH_RETRIES:-4}" --retry-connrefused --retry-max-time 120 \
  --max-time "${CIWATCH_TIMEOUT:-10}" "$@" "$endpoint")
rc=$?
set -e
case $code in
  2??) printf 'ciwatch report: reported %s run %s: %s\n' "$project" "$run_id" "$status" >&2 ;;
  000 | '') fail 3 "cannot reach ciwatch at $endpoint (curl exit $rc)" ;;
  4??) fail 2 "ciwatch refused the report (HTTP $code): $(head -c 500 "$answer")" ;;
  *) fail 3 "ciwatch did not store the report (HTTP $code): $(head -c 500 "$answer")" ;;
esac
