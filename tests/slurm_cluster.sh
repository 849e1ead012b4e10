#!/usr/bin/env bash
# A single-node SLURM cluster for the tests: munged, slurmctld and slurmd, run as root, with
# every file (config, munge key and socket, state, spool, logs, pid files) in one folder.
#
#   tests/slurm_cluster.sh start  [DIR]   # write DIR/slurm.conf, start the daemons, wait for idle
#   tests/slurm_cluster.sh status [DIR]   # exit 0 when the cluster in DIR answers with an idle node
#   tests/slurm_cluster.sh stop   [DIR]   # cancel its jobs, stop its daemons
#
# DIR defaults to $SLURM_TEST_DIR, else /tmp/bids-hf-slurm; it must be reachable by the munge
# user (not under a 0700 folder such as pytest's temporary tree). Clients reach the cluster
# with SLURM_CONF=DIR/slurm.conf. Ports come from SLURMCTLD_PORT and SLURMD_PORT (default
# 6817, 6818); with its own ports and its own munged, this cluster runs beside any other.
# Needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge). Every command is
# idempotent. Exit codes: 0 done, 1 failed (the log's last lines are printed), 3 cannot run
# here (not root, or SLURM not installed).
set -euo pipefail

say() { echo "slurm: $*"; }
die() { echo "slurm: error: $1" >&2; exit "${2:-1}"; }

cmd="${1:-}"
dir="${2:-${SLURM_TEST_DIR:-/tmp/bids-hf-slurm}}"
case "$cmd" in start | stop | status) ;; *) die "usage: $0 start|stop|status [DIR]" 2 ;; esac
[[ "$dir" == /* ]] || dir="$PWD/$dir"
conf="$dir/slurm.conf"
munge_dir="$dir/munge"  # owned by the munge user; munged refuses keys and sockets others can write
export SLURM_CONF="$conf"
PATH="$PATH:/usr/sbin:/sbin"

# The pid in FILE if that process is alive (not a zombie) and runs COMMAND.
running() {
  local file="$1" command="$2" pid state
  pid="$(cat "$file" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$command" ]] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)"
  [[ -n "$state" && "$state" != Z ]] || return 1
  echo "$pid"
}

node_state() { sinfo --noheader --Node --format=%T 2>/dev/null | head -n1; }
# Registered and answering, with or without jobs ("idle*" would mean not responding).
usable() { [[ "$1" =~ ^(idle|mixed|allocated|completing)$ ]]; }

stop_daemon() {
  local name="$1" file="$2" pid
  pid="$(running "$file" "$name")" || return 0
  kill -TERM "$pid"
  for _ in $(seq 100); do
    running "$file" "$name" >/dev/null || { say "stopped $name (pid $pid)"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  say "killed $name (pid $pid): it did not stop within 10 s of SIGTERM"
}

log_tail() {
  local log
  for log in "$dir/slurmctld.log" "$dir/slurmd.log" "$munge_dir/munged.log"; do
    [[ -s "$log" ]] && { echo "--- last lines of $log"; tail -n 15 "$log"; }
  done
  return 0
}

case "$cmd" in
status)
  state="$(node_state || true)"
  if [[ -f "$conf" ]] && usable "$state"; then
    say "cluster in $dir is up, node $state (SLURM_CONF=$conf)"
    exit 0
  fi
  say "no cluster up in $dir (node state: ${state:-no answer})"
  exit 1
  ;;

stop)
  if running "$dir/slurmctld.pid" slurmctld >/dev/null; then
    # This cluster's jobs only (SLURM_CONF); give their processes time to end.
    scancel --quiet --full --user=root 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z "$(squeue --noheader 2>/dev/null)" ]] && break
      sleep 0.2
    done
  fi
  stop_daemon slurmd "$dir/slurmd.pid"
  stop_daemon slurmctld "$dir/slurmctld.pid"
  stop_daemon munged "$munge_dir/munged.pid"
  say "cluster in $dir is down"
  exit 0
  ;;
esac

# --- start ------------------------------------------------------------------------------------
[[ "$(id -u)" == 0 ]] \
  || die "start needs root (the daemons and the jobs run as root); running as uid $(id -u)" 3
for bin in munged mungekey slurmctld slurmd sbatch sinfo; do
  command -v "$bin" >/dev/null || die "$bin not found: apt-get install slurm-wlm munge" 3
done
id munge >/dev/null 2>&1 || die "no munge user: apt-get install munge" 3

if [[ -f "$conf" ]] && running "$dir/slurmctld.pid" slurmctld >/dev/null \
    && running "$dir/slurmd.pid" slurmd >/dev/null && usable "$(node_state)"; then
  say "cluster in $dir is already up (SLURM_CONF=$conf)"
  exit 0
fi

t0=$(date +%s.%N)
mkdir -p "$dir/state" "$dir/spool" "$munge_dir"
chmod 755 "$dir"
chown munge:munge "$munge_dir"
chmod 755 "$munge_dir"  # the socket's folder must be searchable by every client

# The node line as slurmd measures this machine (CPUs, sockets, RealMemory): without
# RealMemory, a job asking for --mem is refused ("Requested node configuration is not
# available").
node_line="$(slurmd -C | head -n1)"
[[ "$node_line" == NodeName=* ]] || die "slurmd -C printed no node line: $node_line"
node="${node_line%% *}"; node="${node#NodeName=}"
ctld_port="${SLURMCTLD_PORT:-6817}"
slurmd_port="${SLURMD_PORT:-6818}"
cat >"$conf" <<EOF
# Written by tests/slurm_cluster.sh: a one-node cluster, every file under $dir.
ClusterName=bidshf
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_dir/munge.socket
# No cgroups here: processes are tracked through /proc, tasks are not confined.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Start queued tasks as soon as CPUs free up (defaults wait seconds between passes).
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
# No accounting database (so no sacct): finished jobs stay visible to scontrol for MinJobAge.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
$node_line NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
say "wrote $conf (${node_line#* }; ports $ctld_port, $slurmd_port)"

if [[ ! -s "$munge_dir/munge.key" ]]; then
  runuser -u munge -- mungekey --create --keyfile="$munge_dir/munge.key"
  say "created munge key $munge_dir/munge.key"
fi

if pid="$(running "$munge_dir/munged.pid" munged)"; then
  say "munged already running (pid $pid)"
else
  runuser -u munge -- munged --socket="$munge_dir/munge.socket" \
    --key-file="$munge_dir/munge.key" --pid-file="$munge_dir/munged.pid" \
    --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed" \
    || { log_tail; die "munged did not start"; }
  say "started munged (pid $(cat "$munge_dir/munged.pid"), socket $munge_dir/munge.socket)"
fi

# A daemon left from an earlier start with another config is restarted with this one.
stop_daemon slurmd "$dir/slurmd.pid"
stop_daemon slurmctld "$dir/slurmctld.pid"
for daemon in slurmctld slurmd; do
  pid=""
  "$daemon" -f "$conf" || { log_tail; die "$daemon did not start"; }
  for _ in $(seq 50); do  # it forks, then its child writes the pid file
    pid="$(running "$dir/$daemon.pid" "$daemon")" && break
    sleep 0.1
  done
  [[ -n "$pid" ]] || { log_tail; die "$daemon exited at startup"; }
  say "started $daemon (pid $pid)"
done

timeout="${SLURM_START_TIMEOUT:-30}"
deadline=$(( $(date +%s) + timeout ))
state=""
while (( $(date +%s) < deadline )); do
  state="$(node_state || true)"
  [[ "$state" == idle ]] && break
  for daemon in slurmctld slurmd; do
    running "$dir/$daemon.pid" "$daemon" >/dev/null \
      || { log_tail; die "$daemon exited during startup"; }
  done
  sleep 0.2
done
if [[ "$state" != idle ]]; then
  log_tail
  die "node $node not idle within $timeout s (state: ${state:-no answer}); logs in $dir"
fi
seconds="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
say "node $node idle after $seconds s; clients: export SLURM_CONF=$conf"
