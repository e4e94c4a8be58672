#!/usr/bin/env bash
# Measures a machine with a GPU in one go (about 8 minutes): the learner, inference, the
# simulator, the game server and a 3-minute training run, every figure as JSON.
#
#   bash scripts/device_check.sh [OUTDIR]                on a GPU machine
#   bash scripts/device_check.sh --cpu-dry-run [OUTDIR]  the same steps at tiny sizes on CPU
#
# OUTDIR: the argument, else $OUT, else device_check_out/. It receives (8 files):
#   environment.txt   devices, versions, nvidia-smi
#   learner.json inference.json sim.json server.json   each bench's --json object
#   train_metrics.jsonl   the training run's metrics records
#   steps.log         every step's command and output
#   summary.txt       the table printed at the end
# On a GPU machine whose JAX sees no GPU, the CUDA build of JAX matching the installed jax is
# installed first (pip, into the Python that runs tempest-jax). Each step has a time limit; a
# step that fails does not stop the others, and the script exits 1 if any failed.
# PYTHON selects the interpreter (default: .venv/bin/python of this checkout, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."

dry_run=0
if [ "${1:-}" = "--cpu-dry-run" ]; then
    dry_run=1
    shift
fi
out=${1:-${OUT:-device_check_out}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Compiled programs are shared between the steps' processes.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$work/jax-cache}
log=$out/steps.log
: >"$log"
rm -f "$out"/{learner,inference,sim,server}.json "$out"/train_metrics.jsonl "$out"/summary.txt

if [ "$dry_run" = 1 ]; then
    export JAX_PLATFORMS=cpu
    # Every step takes seconds at these sizes; the limits only stop a hang.
    limit=(600 600 600 600)
    learner_args=(--config smoke --batch 32 --k 1 --seconds 0.2)
    inference_args=(--config smoke --batch 1 4 --seconds 0.3)
    sim_args=(--games 4 --seconds 0.2 --warmup-ticks 10)
    server_args=(--config smoke --clients 4 --seconds 0.5 --learning off)
    train_config=smoke
    train_seconds=600  # the smoke preset ends by itself after 3,000 frames
else
    # sim, learner, inference, server: with the 3-minute run, at most 8 minutes. On one H200
    # (JAX 0.11.2) they took 42, about 100 (six learner compilations of 5-18 s), 45 and 46 s.
    limit=(60 120 50 60)
    # The gpu preset's network: the reference-sized default, as the GPU run trains.
    learner_args=(--config gpu --batch 256 768 --k 1 8 32 --seconds 0.5)
    inference_args=(--config gpu --batch 1 4 16 64 256 --seconds 1)
    sim_args=(--games 256 4096 16384 --seconds 1)
    # Ceiling and server-only half a second each: the server bench stays inside its minute.
    server_args=(--config gpu --clients 16 64 --seconds 3 --learning off --ceiling-seconds 0.5
                 --server-only-seconds 0.5)
    train_config=gpu
    train_seconds=180
fi

names=() statuses=() seconds=()
failed=0

record() {  # record NAME STATUS SECONDS
    names+=("$1") statuses+=("$2") seconds+=("$3")
    [ "$2" = ok ] || failed=1
    printf '== %s: %s (%s s)\n' "$1" "$2" "$3" | tee -a "$log"
}

status_of() {  # status_of EXIT_CODE
    case $1 in
        0) echo ok ;;
        124 | 137) echo "TIMEOUT" ;;
        *) echo "FAILED (exit $1)" ;;
    esac
}

tj() { "$PYTHON" -m tempest_jax.cli "$@"; }

# --- the environment, and JAX with a GPU --------------------------------------------------------
start=$SECONDS
{
    echo "date: $(date -u +%FT%TZ)"
    echo "git: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    command -v nvidia-smi >/dev/null && nvidia-smi
} >"$out/environment.txt" 2>&1
gpu_ok=1
if [ "$dry_run" = 0 ]; then
    has_gpu() { "$PYTHON" -c 'import jax, sys; sys.exit(jax.default_backend() != "gpu")'; }
    if ! has_gpu >>"$log" 2>&1; then
        version=$("$PYTHON" -c 'import jax; print(jax.__version__)')
        echo "== installing jax[cuda12]==$version" | tee -a "$log"
        "$PYTHON" -m pip install -U "jax[cuda12]==$version" >>"$log" 2>&1
        has_gpu >>"$log" 2>&1 || gpu_ok=0
    fi
fi
"$PYTHON" -c 'import jax, jaxlib, numpy, sys
print("python:", sys.version.split()[0], " jax:", jax.__version__, " jaxlib:",
      jaxlib.__version__, " numpy:", numpy.__version__)
print("backend:", jax.default_backend(), " devices:", jax.devices())' >>"$out/environment.txt" 2>&1
if [ "$gpu_ok" = 1 ]; then
    record jax ok $((SECONDS - start))
else
    record jax "FAILED (no GPU after installing jax[cuda12]; steps skipped)" $((SECONDS - start))
fi

# --- the benches -------------------------------------------------------------------------------
run_bench() {  # run_bench NAME LIMIT ARGS...
    local name=$1 limit=$2
    shift 2
    if [ "$gpu_ok" = 0 ]; then
        record "$name" skipped 0
        return
    fi
    echo "== $name: tempest-jax bench $name $* --json" >>"$log"
    local start=$SECONDS code
    timeout --kill-after=10 "$limit" "$PYTHON" -m tempest_jax.cli bench "$name" "$@" --json \
        >"$work/$name.out" 2>>"$log"
    code=$?
    # The JSON object is the last line; anything printed before it goes to the log.
    head -n -1 "$work/$name.out" >>"$log"
    tail -n 1 "$work/$name.out" >"$out/$name.json"
    if [ "$code" = 0 ] && ! "$PYTHON" -c 'import json, sys; json.load(open(sys.argv[1]))' \
            "$out/$name.json" 2>>"$log"; then
        code=1
    fi
    [ "$code" = 0 ] || rm -f "$out/$name.json"
    record "$name" "$(status_of "$code")" $((SECONDS - start))
}

# The sim bench first: the inference and server benches record simulator frames with the
# programs it compiled (the compilation cache above).
run_bench sim "${limit[0]}" "${sim_args[@]}"
run_bench learner "${limit[1]}" "${learner_args[@]}"
run_bench inference "${limit[2]}" "${inference_args[@]}"
run_bench server "${limit[3]}" "${server_args[@]}"

# --- training ----------------------------------------------------------------------------------
if [ "$gpu_ok" = 0 ]; then
    record train skipped 0
else
    run_dir=$work/runs/device-check
    echo "== train: tempest-jax train --config $train_config for at most ${train_seconds} s" \
        >>"$log"
    start=$SECONDS
    # SIGINT stops the run as Ctrl-C does: it saves and exits 0.
    timeout --preserve-status --signal=INT --kill-after=30 "$train_seconds" \
        "$PYTHON" -m tempest_jax.cli train --config "$train_config" --no-keys \
        --set "run.dir=$work/runs" --set run.name=device-check --set dashboard.enabled=false \
        </dev/null >>"$log" 2>&1
    code=$?
    if [ -s "$run_dir/metrics.jsonl" ]; then
        cp "$run_dir/metrics.jsonl" "$out/train_metrics.jsonl"
    elif [ "$code" = 0 ]; then
        code=1
        echo "train: no metrics records written" >>"$log"
    fi
    record train "$(status_of "$code")" $((SECONDS - start))
fi

# --- summary -----------------------------------------------------------------------------------
{
    printf '%-10s %-60s %8s\n' step status seconds
    for i in "${!names[@]}"; do
        printf '%-10s %-60s %8s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}"
    done
    echo
    "$PYTHON" - "$out" <<'EOF'
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
for name in ("learner", "inference", "sim", "server"):
    path = out / f"{name}.json"
    if path.is_file():
        figures = json.loads(path.read_text())["figures"]
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key:36s} {value:,.3f}" if isinstance(value, float) else
                  f"  {key:36s} {value}")
path = out / "train_metrics.jsonl"
if path.is_file():
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    periodic = [r for r in records if not r.get("final")]
    if records:
        print(f"train: {len(records)} metrics records")
        for key in ("frames", "updates", "replay_size", "loss"):
            if key in records[-1]:
                print(f"  {key:36s} {records[-1][key]}")
        if periodic:  # rates since the previous record; the final record has none
            for key in ("fps", "updates_per_s"):
                print(f"  {key + ' (last periodic record)':36s} {periodic[-1][key]:,.1f}")
EOF
} | tee "$out/summary.txt"
exit "$failed"
