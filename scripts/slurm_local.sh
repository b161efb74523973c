#!/usr/bin/env bash
# A single-node SLURM on this machine's loopback, for the cluster tests (needs root).
#   scripts/slurm_local.sh start STATE_DIR   install slurm-wlm + munge if missing, start the daemons
#   scripts/slurm_local.sh stop STATE_DIR    stop the daemons this script started, remove its slurm.conf
# Spool, state, logs and pid files live in STATE_DIR. The config must sit at SLURM's default path,
# /etc/slurm/slurm.conf: Snakemake's job-step plugin drops SLURM_CONF from the environment of the srun
# it runs inside each job. A slurm.conf this script did not write is never replaced (exit 3).
set -euo pipefail

cmd=${1:?usage: slurm_local.sh start|stop STATE_DIR}
state=$(realpath -m "${2:?usage: slurm_local.sh start|stop STATE_DIR}")

CONF=/etc/slurm/slurm.conf
MARK="Written by deploysnake's scripts/slurm_local.sh"

stop_pidfile() {
    local file=$1
    [[ -s $file ]] || return 0
    local pid
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

if [[ $cmd == stop ]]; then
    stop_pidfile "$state/slurmd.pid"
    stop_pidfile "$state/slurmctld.pid"
    # munged only when this script started it (it writes its pid there then).
    stop_pidfile "$state/munged.pid"
    if grep -qs "$MARK" "$CONF"; then rm -f "$CONF"; fi
    exit 0
fi
[[ $cmd == start ]] || { echo "slurm_local.sh: unknown command $cmd (start or stop)" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "slurm_local.sh: must run as root (it starts slurmd)" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >&2
fi

if [[ -e $CONF ]] && ! grep -qs "$MARK" "$CONF"; then
    echo "slurm_local.sh: $CONF exists and is not ours: this machine has its own SLURM; not touching it" >&2
    exit 3
fi
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    echo "slurm_local.sh: slurmctld or slurmd already runs here (pids $(pgrep -d, -x 'slurmctld|slurmd')); stop it first" >&2
    exit 3
fi
mkdir -p "$state/ctld" "$state/spool" /etc/slurm
host=$(hostname -s)
cpus=$(nproc)
# SLURM refuses a node that reports less memory than configured: leave headroom.
memory=$(( $(free -m | awk '/^Mem:/ {print $7}') * 85 / 100 ))

if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    mungekey --create --keyfile /etc/munge/munge.key >&2
    chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    runuser -u munge -- munged --pid-file="$state/munged.pid" 2>&1 >&2 || munged --force --pid-file="$state/munged.pid" >&2
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
    # munged runs as user munge and writes its pid file elsewhere when it cannot write ours.
    [[ -s $state/munged.pid ]] || pgrep -n -x munged > "$state/munged.pid"
fi

cat > "$CONF" <<EOF
# $MARK: one node on loopback, for tests ($state).
ClusterName=deploysnake
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue this long (an hour): Snakemake's slurm executor reads their
# state there, and the test checks every job of a run that takes minutes.
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld >&2
slurmd >&2
for _ in $(seq 100); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
        exit 0
    fi
    sleep 0.2
done
echo "slurm_local.sh: the node did not become idle in 20 s; see $state/slurmctld.log and $state/slurmd.log" >&2
sinfo >&2 || true
exit 1
