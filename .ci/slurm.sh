#!/usr/bin/env bash
# A single-node SLURM cluster for CI (tests/test_slurm.py): `up` installs and starts it, `down` stops
# exactly the daemons `up` started (recorded in STATE_DIR; never ones that already ran), by their pid
# files. Debian's slurm-wlm (22.05) and munge, no systemd,
# no accounting database; a placeholder GPU (gres on /dev/null, model "ci") so that rules declaring gpu=1
# (and gpu_model=ci) are accepted.
# Run as root (CI is root); otherwise through sudo. Settings: SLURM_CI_TIMEOUT (seconds to wait for idle).
set -euo pipefail

STATE_DIR=/run/deltaspace-ci-slurm          # what `up` started, one daemon name a line, for `down`
CONF_DIR=/etc/slurm
MARKER="# written by deltaspace .ci/slurm.sh"  # only files carrying it are ever overwritten
LOG_DIR=/var/log/slurm
TIMEOUT=${SLURM_CI_TIMEOUT:-90}
declare -A PID_FILE=([munged]=/run/munge/munged.pid [slurmctld]=/run/slurm/slurmctld.pid
                     [slurmd]=/run/slurm/slurmd.pid)

die() { echo "slurm.sh: $*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "needs root (or sudo) to install and start SLURM; run as root"; fi
}

running() {  # running <daemon>: its pid file names a live process
  local file=${PID_FILE[$1]}
  [ -s "$file" ] && as_root kill -0 "$(cat "$file")" 2>/dev/null
}

node_state() { sinfo -h -o %T 2>/dev/null | head -n 1; }

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
      && command -v munged >/dev/null; then
    return
  fi
  echo "slurm.sh: installing slurm-wlm and munge with apt-get"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_config() {  # write_config <file>: stdin becomes the file, unless someone else's file is there
  local file=$1
  if [ -e "$file" ] && ! grep -qF "$MARKER" "$file"; then
    die "$file exists and was not written by this script; refusing to overwrite a real SLURM setup"
  fi
  { echo "$MARKER"; cat; } | as_root tee "$file" >/dev/null
}

write_configs() {
  local node cpus mem_mb
  node=$(hostname -s)
  cpus=$(nproc)
  # 95% of MemTotal: a node that reports less memory than configured is drained.
  mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
  as_root mkdir -p "$CONF_DIR"
  # NodeAddr/SlurmctldHost on 127.0.0.1: a container's short hostname need not resolve.
  write_config "$CONF_DIR/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
# Finished jobs stay visible to squeue and scontrol for an hour: without accounting (sacct), that is how
# snakemake (--slurm-status-command squeue) and tests/test_slurm.py see them finish.
MinJobAge=3600
SlurmctldPidFile=${PID_FILE[slurmctld]}
SlurmdPidFile=${PID_FILE[slurmd]}
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:ci:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  # The placeholder GPU, of model "ci": without a gres line --gpus=1 is rejected at submit time.
  write_config "$CONF_DIR/gres.conf" <<EOF
NodeName=$node Name=gpu Type=ci File=/dev/null
EOF
}

start() {  # start <daemon> <command...>: start it unless it runs, and record that we started it
  local name=$1; shift
  if running "$name"; then
    echo "slurm.sh: $name already runs (pid $(cat "${PID_FILE[$name]}")); leaving it alone"
    return
  fi
  "$@"
  local waited=0
  until running "$name"; do
    sleep 0.5; waited=$((waited + 1))
    [ "$waited" -lt 20 ] || { show_logs; die "$name did not write ${PID_FILE[$name]} within 10 s"; }
  done
  echo "$name" | as_root tee -a "$STATE_DIR/started" >/dev/null
  echo "slurm.sh: started $name (pid $(cat "${PID_FILE[$name]}"))"
}

show_logs() {
  local log
  for log in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log; do
    echo "---- last lines of $log" >&2
    as_root tail -n 25 "$log" >&2 2>/dev/null || echo "(no such file)" >&2
  done
}

up() {
  install_packages
  if [ "$(node_state)" = idle ]; then
    echo "slurm.sh: SLURM is already up (node idle); starting nothing"
    return
  fi
  write_configs
  as_root mkdir -p "$STATE_DIR" /run/munge /var/log/munge /var/lib/munge /run/slurm "$LOG_DIR" \
    /var/spool/slurmctld /var/spool/slurmd
  as_root chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || as_root mungekey --create --force
  start munged as_root runuser -u munge -- /usr/sbin/munged
  start slurmctld as_root /usr/sbin/slurmctld
  start slurmd as_root /usr/sbin/slurmd
  local waited=0 state
  until [ "$(node_state)" = idle ]; do
    sleep 1; waited=$((waited + 1))
    if [ "$waited" -ge "$TIMEOUT" ]; then
      state=$(node_state); show_logs
      die "the node did not become idle within ${TIMEOUT} s (sinfo says: '${state:-no answer}'); see the logs above"
    fi
  done
  echo "slurm.sh: SLURM is up after ${waited} s: node $(hostname -s), partition debug, $(nproc) CPUs," \
    "1 placeholder GPU of model ci"
}

down() {
  local started="$STATE_DIR/started" name pid waited
  if [ ! -s "$started" ]; then
    echo "slurm.sh: no daemons started by 'up'; stopping nothing"
    return
  fi
  for name in slurmd slurmctld munged; do  # reverse start order
    grep -qx "$name" "$started" || continue
    if ! running "$name"; then echo "slurm.sh: $name no longer runs"; continue; fi
    pid=$(cat "${PID_FILE[$name]}")
    as_root kill "$pid"
    waited=0
    while as_root kill -0 "$pid" 2>/dev/null; do
      sleep 0.5; waited=$((waited + 1))
      if [ "$waited" -ge 40 ]; then as_root kill -KILL "$pid" 2>/dev/null || true; break; fi
    done
    echo "slurm.sh: stopped $name (pid $pid)"
  done
  as_root rm -f "$started"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: .ci/slurm.sh up|down" ;;
esac
