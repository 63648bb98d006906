# Sourced by the sweep scripts: keep a sweep's finished runs in its committed records file while it runs, so
# a session cut off mid-sweep keeps every run that finished (the sweep itself resumes with resume=auto).
#   start_recording RECORDS INPUT...   every RECORD_EVERY seconds (default 600), `align compare INPUT...
#                                      [RECORDS] --records RECORDS` into a scratch dir; in the background
#   stop_recording                     stop it (the script's own final `align compare --records` follows)
start_recording() {
    RECORDING_RECORDS=$1
    shift
    RECORDING_INPUTS=("$@")
    ( while sleep "${RECORD_EVERY:-600}"; do record_now; done ) &
    RECORDING_PID=$!
}

record_now() {  # never fails the caller: a sweep with nothing finished yet has nothing to record
    local inputs=() input
    for input in "${RECORDING_INPUTS[@]}" "$RECORDING_RECORDS"; do  # those that exist yet
        if [ -e "$input" ]; then inputs+=("$input"); fi
    done
    if [ ${#inputs[@]} -eq 0 ]; then return 0; fi
    .venv/bin/align compare "${inputs[@]}" --records "$RECORDING_RECORDS" \
        --out "${TMPDIR:-/tmp}/align-recording-$$" > /dev/null 2>&1 || true
}

stop_recording() {
    if [ -n "${RECORDING_PID:-}" ]; then kill "$RECORDING_PID" 2> /dev/null || true; fi
}
