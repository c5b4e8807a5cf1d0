#!/usr/bin/env bash
# Bring up a real one-node SLURM cluster on this host for the workflow's SLURM tests.
#
#   sudo bash .ci/slurm/start.sh            # or as root in CI, from `.ci/run`
#   bash .ci/slurm/stop.sh                  # stops only what this script started
#
# Target: Debian 12 (Slurm 22.05 from Debian's archive), run as root, no systemd needed.
# What it does, in order:
#   1. apt-installs munge, slurmctld, slurmd, slurm-client (+ slurmdbd and mariadb-server for
#      accounting) without letting the packages' init scripts start anything;
#   2. starts munged, then MariaDB + slurmdbd (so `sacct` works: the Snakemake SLURM executor
#      polls job states with sacct by default, and without accounting it loses track of jobs);
#   3. writes slurm.conf/gres.conf for one node (this host, 127.0.0.1) in one default partition,
#      with N fake GPUs as GRES (device files are links to /dev/null), so `--gpus=1` jobs are
#      scheduled like on a GPU cluster and see CUDA_VISIBLE_DEVICES;
#   4. starts slurmctld and slurmd, waits for the node to be idle, runs a smoke test.
#
# Idempotent: a daemon that is alive (PID file + process name) is left alone; the slurm daemons
# are restarted only when the generated configuration changed. Every daemon this script starts is
# recorded in $STATE_DIR/started, which stop.sh reads, so a MariaDB or munged that was running
# before is never stopped by us.
#
# Knobs (environment variables; defaults in brackets):
#   CI_SLURM_ACCOUNTING   dbd | none [dbd]. none: no database, `sacct` fails, and any Snakemake
#                         profile must then set `slurm-status-command: squeue` (MinJobAge is 1 h).
#   CI_SLURM_GPUS         number of fake GPUs on the node, 0 = no GRES [2]
#   CI_SLURM_GPU_TYPE     GPU type name, e.g. a100 (jobs may then ask for gpu_model=a100) [none]
#   CI_SLURM_PARTITION    name of the (default) partition [debug]
#   CI_SLURM_CLUSTER      ClusterName [lite]
#   CI_SLURM_ACCOUNT      account created in slurmdbd for root and CI_SLURM_USERS [lite]
#   CI_SLURM_USERS        more unix users to add to that account, space separated [none]
#   CI_SLURM_MEM_MB       RealMemory of the node [90 % of what `slurmd -C` reports]
#   CI_SLURM_TASK_PLUGIN  task/affinity, or task/none where sched_setaffinity is refused [task/affinity]
#   CI_SLURM_WAIT_S       seconds to wait for the node to become idle [120]
#   CI_SLURM_SMOKE        1 = srun/sbatch/sacct smoke test at the end, 0 = skip [1]
set -euo pipefail

ACCOUNTING=${CI_SLURM_ACCOUNTING:-dbd}
N_GPUS=${CI_SLURM_GPUS:-2}
GPU_TYPE=${CI_SLURM_GPU_TYPE:-}
PARTITION=${CI_SLURM_PARTITION:-debug}
CLUSTER=${CI_SLURM_CLUSTER:-lite}
ACCOUNT=${CI_SLURM_ACCOUNT:-lite}
USERS=${CI_SLURM_USERS:-}
TASK_PLUGIN=${CI_SLURM_TASK_PLUGIN:-task/affinity}
WAIT_S=${CI_SLURM_WAIT_S:-120}
SMOKE=${CI_SLURM_SMOKE:-1}

STATE_DIR=/run/lite-slurm            # our bookkeeping: which daemons we started
STARTED=$STATE_DIR/started
PID_DIR=/run/slurm                   # slurm daemons' PID files
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_STATE=/var/lib/slurm/slurmctld
SPOOL=/var/spool/slurmd
FAKE_DEV=/var/lib/slurm/fake-gpu
MYSQL_SOCK=/run/mysqld/mysqld.sock
DB_PASSWORD=lite-slurm-local         # MariaDB listens on a unix socket only (--skip-networking)

T0=$(date +%s%N)
elapsed() { local ms=$((($(date +%s%N) - T0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
say() { printf '[slurm-start %5ss] %s\n' "$(elapsed)" "$*"; }
fail() {
  say "ERROR: $*"
  local f
  for f in "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log "$LOG_DIR"/slurmdbd.log; do
    if [ -f "$f" ]; then echo "--- last lines of $f"; tail -n 20 "$f"; fi
  done
  exit 1
}

# running <pid file> <comm>: the PID file names a live process with that command name.
running() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}
pid_of() { cat "$1" 2>/dev/null || echo '?'; }
remember() { grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >>"$STARTED"; }
# until_ok <seconds> <what> <command...>: retry the command every 0.5 s until it succeeds.
until_ok() {
  local limit=$1 what=$2
  shift 2
  local deadline=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "gave up after ${limit}s waiting for $what"
    sleep 0.5
  done
}
# stop_by_pidfile <pid file> <comm>: TERM, wait up to 10 s (used only on daemons we restart).
stop_by_pidfile() {
  local pid
  running "$1" "$2" || return 0
  pid=$(cat "$1")
  kill "$pid"
  for _ in $(seq 40); do [ -d "/proc/$pid" ] || return 0; sleep 0.25; done
  fail "$2 (pid $pid) did not stop"
}
# install_if_changed <new file> <target>: move into place; return 0 if the content changed.
install_if_changed() {
  if cmp -s "$1" "$2"; then
    rm -f "$1"
    return 1
  fi
  mv -f "$1" "$2"
}

install_packages() {
  local pkgs="munge slurmctld slurmd slurm-client"
  [ "$ACCOUNTING" = dbd ] && pkgs="$pkgs slurmdbd mariadb-server"
  # shellcheck disable=SC2086
  if dpkg -s $pkgs >/dev/null 2>&1; then
    say "packages present"
    return
  fi
  say "installing $pkgs"
  # Debian's invoke-rc.d asks policy-rc.d before starting a service; 101 = "not allowed".
  # We start every daemon ourselves, with our configuration.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  say "packages installed"
}

start_munge() {
  mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
  if [ ! -s /etc/munge/munge.key ]; then
    say "creating munge key"
    mungekey --create --keyfile=/etc/munge/munge.key --force
  fi
  # munged refuses keys or directories that others can read
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
  chmod 700 /etc/munge /var/log/munge
  chmod 600 /etc/munge/munge.key
  chmod 755 /run/munge
  if running /run/munge/munged.pid munged; then
    say "munged running (pid $(pid_of /run/munge/munged.pid))"
    return
  fi
  rm -f /run/munge/munged.pid
  # --force: a socket left by a killed munged must not block the start
  runuser -u munge -- /usr/sbin/munged --force
  remember munged
  until_ok 20 munged bash -c 'munge -n | unmunge'
  say "munged started (pid $(pid_of /run/munge/munged.pid))"
}

start_database() {
  mkdir -p /run/mysqld /var/log/mysql
  chown mysql:mysql /run/mysqld /var/log/mysql
  if [ ! -d /var/lib/mysql/mysql ]; then
    say "initialising MariaDB"
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  if running /run/mysqld/mysqld.pid mariadbd; then
    say "mariadbd running (pid $(pid_of /run/mysqld/mysqld.pid))"
  else
    rm -f /run/mysqld/mysqld.pid
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking --socket="$MYSQL_SOCK" \
      --pid-file=/run/mysqld/mysqld.pid --log-error=/var/log/mysql/error.log \
      </dev/null >/dev/null 2>&1 &
    remember mariadbd
    until_ok 60 mariadbd mariadb-admin --socket="$MYSQL_SOCK" ping
    say "mariadbd started (pid $(pid_of /run/mysqld/mysqld.pid))"
  fi
  mariadb --socket="$MYSQL_SOCK" -e "
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    FLUSH PRIVILEGES;"

  cat >"$CONF_DIR/slurmdbd.conf.new" <<EOF
# written by .ci/slurm/start.sh
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=slurm
PidFile=$PID_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
  # slurmdbd refuses a config that is readable by others or not owned by SlurmUser
  chown slurm:slurm "$CONF_DIR/slurmdbd.conf.new"
  chmod 600 "$CONF_DIR/slurmdbd.conf.new"
  if install_if_changed "$CONF_DIR/slurmdbd.conf.new" "$CONF_DIR/slurmdbd.conf"; then
    stop_by_pidfile "$PID_DIR/slurmdbd.pid" slurmdbd
  fi
  if running "$PID_DIR/slurmdbd.pid" slurmdbd; then
    say "slurmdbd running (pid $(pid_of "$PID_DIR/slurmdbd.pid"))"
  else
    rm -f "$PID_DIR/slurmdbd.pid"
    slurmdbd
    remember slurmdbd
    until_ok 20 "slurmdbd PID file" test -s "$PID_DIR/slurmdbd.pid"
    say "slurmdbd started (pid $(pid_of "$PID_DIR/slurmdbd.pid"))"
  fi
}

register_account() {
  until_ok 60 "slurmdbd to answer" sacctmgr -n list cluster
  sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" ||
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=lite-ci organization=lite >/dev/null
  local user
  for user in root $USERS; do
    sacctmgr -n -P list assoc user="$user" account="$ACCOUNT" format=user | grep -qx "$user" ||
      sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null
  done
  say "account '$ACCOUNT' on cluster '$CLUSTER' for: root $USERS"
}

# write_slurm_conf: writes slurm.conf + gres.conf; sets CONF_CHANGED=1 if either changed.
# (A global rather than an exit status: `set -e` is off inside a function tested with && or if.)
CONF_CHANGED=0
write_slurm_conf() {
  local node=$1 hw cpus boards sockets cores threads mem
  # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hw=$(slurmd -C | head -n 1)
  field() { tr ' ' '\n' <<<"$hw" | sed -n "s/^$1=//p"; }
  cpus=$(field CPUs)
  boards=$(field Boards)
  sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket)
  threads=$(field ThreadsPerCore)
  # Declaring all of the physical memory makes slurmd drain the node ("Low RealMemory") as soon
  # as the kernel reports a little less; 90 % leaves room.
  mem=${CI_SLURM_MEM_MB:-$(($(field RealMemory) * 9 / 10))}

  local accounting gres_types="" node_gres=""
  if [ "$ACCOUNTING" = dbd ]; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none"
  else
    accounting="AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log"
  fi

  : >"$CONF_DIR/gres.conf.new"
  if [ "$N_GPUS" -gt 0 ]; then
    # slurmd only checks that each File= exists; links to /dev/null need no mknod.
    mkdir -p "$FAKE_DEV"
    local i
    for i in $(seq 0 $((N_GPUS - 1))); do ln -sfn /dev/null "$FAKE_DEV/nvidia$i"; done
    gres_types="GresTypes=gpu"
    [ "$ACCOUNTING" = dbd ] && gres_types="$gres_types
AccountingStorageTRES=gres/gpu"
    node_gres=" Gres=gpu:${GPU_TYPE:+$GPU_TYPE:}$N_GPUS"
    echo "NodeName=$node Name=gpu${GPU_TYPE:+ Type=$GPU_TYPE} File=$FAKE_DEV/nvidia[0-$((N_GPUS - 1))]" \
      >"$CONF_DIR/gres.conf.new"
  fi

  cat >"$CONF_DIR/slurm.conf.new" <<EOF
# written by .ci/slurm/start.sh: a one-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$PID_DIR/slurmctld.pid
SlurmdPidFile=$PID_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# linuxproc tracking and affinity need no cgroup hierarchy (containers rarely give one)
ProctrackType=proctrack/linuxproc
TaskPlugin=$TASK_PLUGIN
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
$accounting
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=256
# finished jobs stay visible to squeue for an hour, so squeue can serve as status command too
MinJobAge=3600
ReturnToService=2
# sbatch rejects a job that can never run here (e.g. more CPUs than the node has) at once,
# instead of leaving it pending forever while Snakemake waits
EnforcePartLimits=ALL
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MpiDefault=none
$gres_types
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem$node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  if install_if_changed "$CONF_DIR/slurm.conf.new" "$CONF_DIR/slurm.conf"; then CONF_CHANGED=1; fi
  if install_if_changed "$CONF_DIR/gres.conf.new" "$CONF_DIR/gres.conf"; then CONF_CHANGED=1; fi
  chmod 644 "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"
}

start_slurm_daemons() {
  if [ "$CONF_CHANGED" = 1 ]; then
    if running "$PID_DIR/slurmd.pid" slurmd || running "$PID_DIR/slurmctld.pid" slurmctld; then
      say "configuration changed: restarting slurmd and slurmctld"
    fi
    stop_by_pidfile "$PID_DIR/slurmd.pid" slurmd
    stop_by_pidfile "$PID_DIR/slurmctld.pid" slurmctld
  fi
  if running "$PID_DIR/slurmctld.pid" slurmctld; then
    say "slurmctld running (pid $(pid_of "$PID_DIR/slurmctld.pid"))"
  else
    rm -f "$PID_DIR/slurmctld.pid"
    slurmctld
    remember slurmctld
    until_ok 20 "slurmctld PID file" test -s "$PID_DIR/slurmctld.pid"
    say "slurmctld started (pid $(pid_of "$PID_DIR/slurmctld.pid"))"
  fi
  until_ok 30 "slurmctld to answer" scontrol ping
  if running "$PID_DIR/slurmd.pid" slurmd; then
    say "slurmd running (pid $(pid_of "$PID_DIR/slurmd.pid"))"
  else
    rm -f "$PID_DIR/slurmd.pid"
    slurmd
    remember slurmd
    until_ok 20 "slurmd PID file" test -s "$PID_DIR/slurmd.pid"
    say "slurmd started (pid $(pid_of "$PID_DIR/slurmd.pid"))"
  fi
}

wait_for_idle_node() {
  local node=$1 state deadline=$(($(date +%s) + WAIT_S))
  while :; do
    state=$(sinfo -h -n "$node" -o '%T' 2>/dev/null || true)
    case "$state" in
      idle | mixed | allocated) break ;;  # allocated/mixed: someone's jobs already run on it
      drain* | down* | fail*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
      scontrol show node "$node" || true
      fail "node $node is '$state', not idle, after ${WAIT_S}s"
    fi
    sleep 0.5
  done
  say "node $node is $state"
  sinfo -o '%P %a %D %T %N cpus=%c mem=%m gres=%G'
}

smoke_test() {
  local out job state
  out=$(timeout 60 srun -N1 -n1 hostname) || fail "srun hostname failed"
  say "srun hostname: $out"
  if [ "$N_GPUS" -gt 0 ]; then
    out=$(timeout 60 srun --gpus=1 bash -c 'echo "${CUDA_VISIBLE_DEVICES:-unset}"') || fail "srun --gpus=1 failed"
    [ "$out" != unset ] || fail "a --gpus=1 step did not get CUDA_VISIBLE_DEVICES"
    say "srun --gpus=1: CUDA_VISIBLE_DEVICES=$out"
  fi
  job=$(sbatch --parsable --job-name=lite-smoke -o /dev/null --wrap true) || fail "sbatch failed"
  if [ "$ACCOUNTING" = dbd ]; then
    state=
    for _ in $(seq 60); do
      state=$(sacct -n -X -P -j "$job" -o State 2>/dev/null || true)
      [ "$state" = COMPLETED ] && break
      sleep 0.5
    done
    [ "$state" = COMPLETED ] || fail "sacct reports batch job $job as '$state', not COMPLETED"
    say "sbatch job $job: sacct says $state"
  else
    for _ in $(seq 60); do
      state=$(squeue -h -j "$job" --states=all -o %T 2>/dev/null || true)
      [ "$state" = COMPLETED ] && break
      sleep 0.5
    done
    say "sbatch job $job: squeue says $state (no accounting: profiles need slurm-status-command: squeue)"
  fi
}

main() {
  [ "$(id -u)" = 0 ] || { echo "run .ci/slurm/start.sh as root" >&2; exit 1; }
  case "$ACCOUNTING" in dbd | none) ;; *) echo "CI_SLURM_ACCOUNTING must be dbd or none" >&2; exit 1 ;; esac

  install_packages
  say "$(slurmd -V)"
  mkdir -p "$STATE_DIR" "$PID_DIR" "$CONF_DIR" "$LOG_DIR" "$CTLD_STATE" "$SPOOL"
  touch "$STARTED"
  chown slurm:slurm "$LOG_DIR" "$CTLD_STATE"

  local node
  node=$(hostname -s)
  if ! getent hosts "$node" >/dev/null; then
    say "adding $node to /etc/hosts"
    echo "127.0.0.1 $node" >>/etc/hosts
  fi

  start_munge
  if [ "$ACCOUNTING" = dbd ]; then start_database; fi

  write_slurm_conf "$node"
  if [ "$ACCOUNTING" = dbd ]; then register_account; fi
  start_slurm_daemons
  wait_for_idle_node "$node"
  local up
  up=$(elapsed)
  if [ "$SMOKE" = 1 ]; then smoke_test; fi
  say "SLURM ready: node up after ${up}s; total $(elapsed)s"
}

main "$@"
