#!/bin/bash
# Queue the grading array, then the merge, which starts once every task has succeeded.
#
#   KIT=~/aics-ch3-kit SUBMISSIONS=~/submissions OUT=~/grades examples/slurm/submit.sh [sbatch options]
#
# Extra arguments go to the array's sbatch (e.g. --array=1-8 for eight shards). SEED is drawn
# here once for the whole class unless you set it; keep it (it is also in every gradebook):
# rerunning a task needs the same one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${KIT:=$HOME/aics-ch3-kit}"
: "${SEED:=$(python3 -c 'import secrets; print(secrets.randbelow(2**31))')}"
export KIT SEED
echo "seed $SEED"
# Set the kit up once here: tasks starting together must not all create its .venv at once.
(cd "$KIT" && source env.sh >/dev/null)
array="$(sbatch --parsable "$@" "$here/grade_array.sbatch")"
array="${array%%;*}"   # --parsable may print "jobid;cluster"
echo "grading: job array $array"
sbatch --dependency="afterok:$array" "$here/merge.sbatch"
