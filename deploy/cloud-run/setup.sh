#!/usr/bin/env bash
# Servo on Cloud Run: everything a project needs, as gcloud commands.
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-project-servo \
#   DATABASE_URL='postgresql://servo:...@10.0.0.5/servo' \
#   DEFINITIONS=examples/quickstart \
#   deploy/cloud-run/setup.sh
#
# Written against Google's documented gcloud interfaces and NOT run against Google
# Cloud; the local emulator (`servo emulate gcp`) is what the test-suite runs. Read
# it before running it (docs/deploy/cloud-run.md walks through every step). Each
# step is safe to run again: it creates what is missing and updates what exists.
#
# What you need: gcloud logged in as someone who may enable APIs, create service
# accounts and grant roles in PROJECT (an Owner, or the matching admin roles), and a
# PostgreSQL database reachable from Cloud Run for the catalog (its URL in
# DATABASE_URL the first time; it is stored in Secret Manager, never in a file).
set -euo pipefail

# ---------------------------------------------------------------- settings
PROJECT="${PROJECT:?set PROJECT to your Google Cloud project id}"
REGION="${REGION:-europe-west1}"
BUCKET="${BUCKET:-${PROJECT}-servo}"
# The definitions baked into the image: a definitions.py, or a folder with one
# (relative to the repository root, the build context).
DEFINITIONS="${DEFINITIONS:-definitions.py}"
TAG="${TAG:-$(date +%Y%m%d-%H%M%S)}"
REPOSITORY="${REPOSITORY:-servo}"
IMAGE="${REGION}-docker.pkg.dev/${PROJECT}/${REPOSITORY}/servo:${TAG}"
# Secret Manager secret holding the catalog's SQLAlchemy URL (SERVO_DATABASE_URL).
DB_SECRET="${DB_SECRET:-servo-database-url}"
# Who runs `servo materialize` against this deployment (e.g. user:you@example.com or
# serviceAccount:ci@...); empty: grant nothing, do it later.
CLIENT_MEMBER="${CLIENT_MEMBER:-}"
# Where to write the client's settings file (SERVO_CONFIG).
CLIENT_CONFIG="${CLIENT_CONFIG:-servo-gcp.yaml}"

# Service names: must match metadata.name in the two manifests.
WORKER_SERVICE="servo-worker"
RECONCILER_SERVICE="servo-reconciler"
# Queue names: must match SERVO_CLOUD_CLOUD_TASKS_{QUEUE,TIMER_QUEUE,RECONCILE_QUEUE}.
TASKS_QUEUE="servo-tasks"
TIMERS_QUEUE="servo-timers"
RECONCILE_QUEUE="servo-reconcile"
SWEEP_JOB="servo-sweep"

# Runtime identity of both services; invoker identity of every push (Cloud Tasks and
# Cloud Scheduler sign their OIDC tokens as it).
RUNTIME_SA_NAME="servo-runtime"
INVOKER_SA_NAME="servo-invoker"
RUNTIME_SA="${RUNTIME_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"
INVOKER_SA="${INVOKER_SA_NAME}@${PROJECT}.iam.gserviceaccount.com"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../.." && pwd)"

# Every gcloud command below acts on PROJECT (without changing your gcloud config).
export CLOUDSDK_CORE_PROJECT="${PROJECT}"
PROJECT_NUMBER="$(gcloud projects describe "${PROJECT}" --format='value(projectNumber)')"
# Cloud Run's deterministic URLs (https://SERVICE-PROJECT_NUMBER.REGION.run.app), known
# before the services exist, so each service can be told the other's URL.
WORKER_URL="https://${WORKER_SERVICE}-${PROJECT_NUMBER}.${REGION}.run.app"
RECONCILER_URL="https://${RECONCILER_SERVICE}-${PROJECT_NUMBER}.${REGION}.run.app"

# The ${...} placeholders of the manifests that render() replaces.
PLACEHOLDERS=(IMAGE PROJECT REGION BUCKET RUNTIME_SA INVOKER_SA WORKER_URL RECONCILER_URL DB_SECRET)

# A number from a manifest (`yaml_value FILE KEY`): the manifests are the one place
# the worker's concurrency and instance cap are written down.
yaml_value() {
  sed -n "s/^ *${2}: *\"\{0,1\}\([0-9][0-9]*\)\"\{0,1\} *$/\1/p" "$1" | head -n 1
}

# Rendered manifests and the build config go here (nothing secret), removed at exit.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/servo-setup-XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# A manifest with its placeholders replaced, written under WORK; prints its path.
render() {
  local source="$1" target name value
  target="${WORK}/$(basename "${source}")"
  cp "${source}" "${target}"
  for name in "${PLACEHOLDERS[@]}"; do
    value="${!name}"
    value="${value//&/\\&}"
    value="${value//|/\\|}"
    sed -i "s|\${${name}}|${value}|g" "${target}"
  done
  if grep -n '^[^#]*\${' "${target}" >&2; then
    echo "error: ${source} still has placeholders (above) that setup.sh does not know" >&2
    exit 2
  fi
  echo "${target}"
}

WORKER_CONCURRENCY="$(yaml_value "${HERE}/worker.service.yaml" containerConcurrency)"
WORKER_MAX_INSTANCES="$(yaml_value "${HERE}/worker.service.yaml" 'autoscaling.knative.dev\/maxScale')"

# ---------------------------------------------------------------- 1. APIs
gcloud services enable \
  run.googleapis.com \
  cloudtasks.googleapis.com \
  cloudscheduler.googleapis.com \
  storage.googleapis.com \
  secretmanager.googleapis.com \
  artifactregistry.googleapis.com \
  cloudbuild.googleapis.com \
  iam.googleapis.com

# ---------------------------------------------------------------- 2. storage
# Ledger, projections and asset values. Uniform access (IAM only, no ACLs) and no
# public access; Servo's create-only writes and manifest CAS use object generations,
# which every GCS bucket has.
if ! gcloud storage buckets describe "gs://${BUCKET}" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://${BUCKET}" \
    --location="${REGION}" \
    --uniform-bucket-level-access \
    --public-access-prevention
fi

# Docker images.
if ! gcloud artifacts repositories describe "${REPOSITORY}" --location="${REGION}" >/dev/null 2>&1; then
  gcloud artifacts repositories create "${REPOSITORY}" \
    --location="${REGION}" --repository-format=docker \
    --description="Servo images"
fi

# ---------------------------------------------------------------- 3. service accounts
for name in "${RUNTIME_SA_NAME}" "${INVOKER_SA_NAME}"; do
  if ! gcloud iam service-accounts describe "${name}@${PROJECT}.iam.gserviceaccount.com" >/dev/null 2>&1; then
    gcloud iam service-accounts create "${name}" --display-name="Servo ${name#servo-}"
  fi
done

# ---------------------------------------------------------------- 4. the catalog's URL
# DATABASE_URL is read from the environment, never written to disk or printed.
if ! gcloud secrets describe "${DB_SECRET}" >/dev/null 2>&1; then
  : "${DATABASE_URL:?set DATABASE_URL (postgresql://...) the first time: it becomes the secret ${DB_SECRET}}"
  printf '%s' "${DATABASE_URL}" |
    gcloud secrets create "${DB_SECRET}" --replication-policy=automatic --data-file=-
elif [[ -n "${DATABASE_URL:-}" ]]; then
  printf '%s' "${DATABASE_URL}" | gcloud secrets versions add "${DB_SECRET}" --data-file=-
fi

# ---------------------------------------------------------------- 5. queues
# create_or_update_queue NAME FLAGS...: the same flags either way.
create_or_update_queue() {
  local name="$1" verb=create
  shift
  if gcloud tasks queues describe "${name}" --location="${REGION}" >/dev/null 2>&1; then
    verb=update
  fi
  gcloud tasks queues "${verb}" "${name}" --location="${REGION}" "$@"
}

# Task dispatches -> worker /execute. Never more pushes in flight than the workers have
# slots (maxScale x containerConcurrency): beyond that, Cloud Run answers 429 and
# the queue only slows down. Cloud Tasks caps a queue at 500 dispatches/s. A push the
# queue gives up on is redriven by the sweep after SERVO_RECONCILER_START_DEADLINE_S
# (a new attempt, a new task name), so retries here are bounded.
create_or_update_queue "${TASKS_QUEUE}" \
  --max-dispatches-per-second=500 \
  --max-concurrent-dispatches="$((WORKER_MAX_INSTANCES * WORKER_CONCURRENCY))" \
  --max-attempts=10 \
  --min-backoff=1s \
  --max-backoff=30s \
  --max-doublings=4

# Durable timers (schedule_time) -> reconciler /internal/timers. A timer the queue
# gives up on is fired by the sweep once it is SERVO_RECONCILER_TIMER_GRACE_S overdue.
create_or_update_queue "${TIMERS_QUEUE}" \
  --max-dispatches-per-second=100 \
  --max-concurrent-dispatches=16 \
  --max-attempts=20 \
  --min-backoff=1s \
  --max-backoff=60s \
  --max-doublings=5

# Reconcile requests (worker reports, submissions) -> reconciler /internal/reconcile.
# A lost one is found by the sweep (anti-entropy folds ledger objects no report named).
create_or_update_queue "${RECONCILE_QUEUE}" \
  --max-dispatches-per-second=500 \
  --max-concurrent-dispatches=64 \
  --max-attempts=50 \
  --min-backoff=0.5s \
  --max-backoff=10s \
  --max-doublings=4

# ---------------------------------------------------------------- 6. IAM
# The runtime account creates tasks on the three queues (the reconciler dispatches and
# arms timers; workers hand their reports to the reconcile queue) ...
for queue in "${TASKS_QUEUE}" "${TIMERS_QUEUE}" "${RECONCILE_QUEUE}"; do
  gcloud tasks queues add-iam-policy-binding "${queue}" --location="${REGION}" \
    --member="serviceAccount:${RUNTIME_SA}" --role=roles/cloudtasks.enqueuer >/dev/null
done
# ... with the invoker's OIDC token on them, which needs actAs on the invoker account.
gcloud iam service-accounts add-iam-policy-binding "${INVOKER_SA}" \
  --member="serviceAccount:${RUNTIME_SA}" --role=roles/iam.serviceAccountUser >/dev/null
# Ledger, projections, values: read, create-only write, list (anti-entropy), delete (gc).
gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
  --member="serviceAccount:${RUNTIME_SA}" --role=roles/storage.objectAdmin >/dev/null
# The catalog's URL.
gcloud secrets add-iam-policy-binding "${DB_SECRET}" \
  --member="serviceAccount:${RUNTIME_SA}" --role=roles/secretmanager.secretAccessor >/dev/null

# ---------------------------------------------------------------- 7. image
# Cloud Build with the Dockerfile outside the root (`gcloud builds submit --tag` only
# finds ./Dockerfile), so a one-step build config is written for it.
BUILD_CONFIG="${WORK}/cloudbuild.yaml"
cat >"${BUILD_CONFIG}" <<EOF
steps:
  - name: gcr.io/cloud-builders/docker
    args: [build, -f, deploy/cloud-run/Dockerfile, --build-arg, "DEFINITIONS=${DEFINITIONS}", -t, "${IMAGE}", .]
images: ["${IMAGE}"]
EOF
gcloud builds submit "${ROOT}" --config="${BUILD_CONFIG}"
# Without Cloud Build: gcloud auth configure-docker "${REGION}-docker.pkg.dev", then
#   docker build -f deploy/cloud-run/Dockerfile --build-arg DEFINITIONS=... -t "${IMAGE}" .
#   docker push "${IMAGE}"

# ---------------------------------------------------------------- 8. services
# `replace` creates the service or rolls out a new revision of it, from the manifest.
# (Rendered into variables first, so that a manifest render() refuses stops the script.)
RECONCILER_MANIFEST="$(render "${HERE}/reconciler.service.yaml")"
WORKER_MANIFEST="$(render "${HERE}/worker.service.yaml")"
gcloud run services replace "${RECONCILER_MANIFEST}" --region="${REGION}"
gcloud run services replace "${WORKER_MANIFEST}" --region="${REGION}"

# roles/run.invoker for the invoker account (whose tokens Cloud Tasks and Cloud
# Scheduler send), nobody else, never allUsers. The manifests switch Cloud Run's
# invoker check off (run.googleapis.com/invoker-iam-disabled): with it on, Cloud Run
# strips the token's signature and Servo, which verifies the token itself, would
# refuse every push. The grant is what the check needs the day it is switched back on.
for service in "${WORKER_SERVICE}" "${RECONCILER_SERVICE}"; do
  gcloud run services add-iam-policy-binding "${service}" --region="${REGION}" \
    --member="serviceAccount:${INVOKER_SA}" --role=roles/run.invoker >/dev/null
done

# ---------------------------------------------------------------- 9. sweep schedule
# Anti-entropy, the recovery of every lost message: every minute, POST {} to the
# reconciler's /internal/sweep with an OIDC token of the invoker account for the
# reconciler's URL. No retries: a missed sweep is the next one's work.
sweep_flags=(
  --location="${REGION}"
  --schedule="* * * * *"
  --uri="${RECONCILER_URL}/internal/sweep"
  --http-method=POST
  --message-body="{}"
  --oidc-service-account-email="${INVOKER_SA}"
  --oidc-token-audience="${RECONCILER_URL}"
  --attempt-deadline=180s
  --max-retry-attempts=0
)
if gcloud scheduler jobs describe "${SWEEP_JOB}" --location="${REGION}" >/dev/null 2>&1; then
  gcloud scheduler jobs update http "${SWEEP_JOB}" "${sweep_flags[@]}" \
    --update-headers=Content-Type=application/json
else
  gcloud scheduler jobs create http "${SWEEP_JOB}" "${sweep_flags[@]}" \
    --headers=Content-Type=application/json
fi

# ---------------------------------------------------------------- 10. the client
# `servo materialize` plans here, writes the run request to the bucket and notifies
# the reconciler through the reconcile queue (with the invoker's token), so the
# client's identity needs the same three grants as the runtime account.
if [[ -n "${CLIENT_MEMBER}" ]]; then
  gcloud storage buckets add-iam-policy-binding "gs://${BUCKET}" \
    --member="${CLIENT_MEMBER}" --role=roles/storage.objectAdmin >/dev/null
  gcloud tasks queues add-iam-policy-binding "${RECONCILE_QUEUE}" --location="${REGION}" \
    --member="${CLIENT_MEMBER}" --role=roles/cloudtasks.enqueuer >/dev/null
  gcloud iam service-accounts add-iam-policy-binding "${INVOKER_SA}" \
    --member="${CLIENT_MEMBER}" --role=roles/iam.serviceAccountUser >/dev/null
fi

# The client's settings (nothing secret in them).
cat >"${CLIENT_CONFIG}" <<EOF
storage:
  backend: gcs
  bucket: ${BUCKET}
cloud:
  provider: gcp
  gcp:
    project: ${PROJECT}
    region: ${REGION}
  cloud_tasks:
    queue: ${TASKS_QUEUE}
    timer_queue: ${TIMERS_QUEUE}
    reconcile_queue: ${RECONCILE_QUEUE}
    service_account_email: ${INVOKER_SA}
  cloud_run:
    worker_url: ${WORKER_URL}
    reconciler_url: ${RECONCILER_URL}
EOF

echo "worker:     ${WORKER_URL}"
echo "reconciler: ${RECONCILER_URL}"
echo "image:      ${IMAGE}"
echo "then:       SERVO_CONFIG=${CLIENT_CONFIG} servo materialize --defs <your definitions>"
