#!/usr/bin/env bash
# Stop the one-node SLURM cluster that .ci/slurm/start.sh brought up.
#
#   bash .ci/slurm/stop.sh          # as root
#
# Stops, by PID file and never by process name, only the daemons start.sh recorded in
# /run/lite-slurm/started (a munged or MariaDB that was running before start.sh is left alone).
# Jobs still queued or running are cancelled first, so slurmd leaves no orphaned job steps.
# Configuration, the accounting database and the packages stay, so the next start takes seconds.
# CI_SLURM_STOP_ALL=1 also stops daemons start.sh found already running.
set -uo pipefail

STARTED=/run/lite-slurm/started
STOP_ALL=${CI_SLURM_STOP_ALL:-0}

pid_file() {
  case $1 in
    slurmd) echo /run/slurm/slurmd.pid ;;
    slurmctld) echo /run/slurm/slurmctld.pid ;;
    slurmdbd) echo /run/slurm/slurmdbd.pid ;;
    mariadbd) echo /run/mysqld/mysqld.pid ;;
    munged) echo /run/munge/munged.pid ;;
  esac
}

stop_daemon() {
  local name=$1 pid
  if [ "$STOP_ALL" != 1 ] && ! grep -qx "$name" "$STARTED" 2>/dev/null; then
    echo "[slurm-stop] $name: not started by start.sh, left alone"
    return
  fi
  pid=$(cat "$(pid_file "$name")" 2>/dev/null || true)
  if [ -z "$pid" ] || [ ! -r "/proc/$pid/comm" ] || [ "$(cat "/proc/$pid/comm")" != "$name" ]; then
    echo "[slurm-stop] $name: not running"
  else
    kill -TERM "$pid"
    for _ in $(seq 60); do
      [ -d "/proc/$pid" ] || break
      sleep 0.25
    done
    if [ -d "/proc/$pid" ]; then
      echo "[slurm-stop] $name (pid $pid) still alive after 15 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    echo "[slurm-stop] $name (pid $pid) stopped"
  fi
  if [ -f "$STARTED" ]; then sed -i "/^$name\$/d" "$STARTED"; fi
}

[ "$(id -u)" = 0 ] || { echo "run .ci/slurm/stop.sh as root" >&2; exit 1; }

if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING -o %A 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    echo "[slurm-stop] cancelling jobs: $(echo $jobs)"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 20); do
      [ -z "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
fi

# compute node first, the database last: each daemon can still report to the next one
for name in slurmd slurmctld slurmdbd mariadbd munged; do stop_daemon "$name"; done
