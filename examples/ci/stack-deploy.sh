#!/bin/sh
# A CI job's deploy step for examples/stack: plan, deploy, act on the verdict.
#
#   DOCKER_HOST=ssh://deploy@manager STACK=shop WEB_IMAGE=registry:5000/web:$SHA \
#       examples/ci/stack-deploy.sh
#
# Exit codes are zdd-swarm's: 0 the release landed, 1 it was put back (the
# stack runs what it ran before: fail the job, nothing else to do), 4 something
# could not be put back (named in stack-result.json: page a human), 2 bad
# input (nothing changed), 5 the engine could not be reached.
set -u

here=$(cd "$(dirname "$0")/.." && pwd)
stack=${STACK:?set STACK, the stack name}
compose=${COMPOSE_FILE:-$here/stack/compose.yml}
result=${RESULT_FILE:-stack-result.json}
zdd=${ZDD_SWARM:-zdd-swarm}

: "${DOCKER_HOST:?set DOCKER_HOST to a swarm manager}"

echo "--- plan"
$zdd stack deploy -c "$compose" "$stack" --dry-run || exit $?

echo "--- deploy"
$zdd stack deploy -c "$compose" "$stack" --json > "$result"
code=$?

case $code in
    0) echo "stack $stack: the release landed" ;;
    1) echo "stack $stack: the release failed and was put back; see $result" ;;
    4) echo "stack $stack: NOT everything could be put back; see $result" >&2 ;;
    *) echo "stack $stack: not deployed (exit $code); see $result" >&2 ;;
esac
exit $code
