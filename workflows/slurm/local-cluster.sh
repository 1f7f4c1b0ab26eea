#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the job-array
# script and `biounet segment --cluster slurm` (tests/test_slurm.py).
#
#   sudo bash workflows/slurm/local-cluster.sh          # install, configure, start; wait for an idle node
#   sudo bash workflows/slurm/local-cluster.sh stop     # stop the daemons this script started
#
# It installs Debian's slurm-wlm and munge (apt-get), writes a minimal
# /etc/slurm/slurm.conf for one node on localhost (no cgroups: proctrack/linuxproc,
# task/none; select/cons_tres; no accounting), starts munged, slurmctld and
# slurmd directly (no systemd), and waits until `sinfo` shows the node idle.
# If the cluster already answers, it does nothing. Needs root. Not for a real
# site: there, use the site's SLURM.
#
# Environment:
#   SLURM_LOCAL_GPUS   declare this many (fake) GPUs as gres "gpu" (default 0:
#                      none, so jobs must not ask for --gres; see segment-array.sbatch)
#   SLURM_LOCAL_MEM    node RealMemory in MB (default: what `slurmd -C` finds, less 1 GB)
#   SLURM_LOCAL_WAIT   seconds to wait for the node to come up (default 60)
set -euo pipefail

STATE=/var/lib/biounet-slurm           # logs and spool of this local cluster
CONF=/etc/slurm
GPUS=${SLURM_LOCAL_GPUS:-0}
WAIT=${SLURM_LOCAL_WAIT:-60}

log() { echo "local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

stop() {
    for daemon in slurmd slurmctld munged; do
        if [[ -f $STATE/$daemon.pid ]]; then
            pid=$(cat "$STATE/$daemon.pid")
            if kill -0 "$pid" 2>/dev/null; then
                log "stopping $daemon ($pid)"
                kill "$pid" || true
            fi
            rm -f "$STATE/$daemon.pid"
        fi
    done
}

if [[ ${1:-} == stop ]]; then
    stop
    exit 0
fi

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -n1; }

if command -v sinfo >/dev/null && [[ $(node_state) == idle* ]]; then
    log "SLURM already answers: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    exit 0
fi

[[ $(id -u) == 0 ]] || die "run as root (installs packages, writes /etc/slurm, starts daemons)"

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm munge
fi

# 2. Configuration: one node, this machine, addressed as 127.0.0.1.
NODE=$(hostname -s)
mkdir -p "$STATE/spool/slurmctld" "$STATE/spool/slurmd" "$STATE/log" "$CONF"
read -r CPUS SOCKETS CORES THREADS MEM < <(slurmd -C | head -n1 | tr ' ' '\n' | awk -F= '
    $1=="CPUs"{c=$2} $1=="SocketsPerBoard"{s=$2} $1=="CoresPerSocket"{k=$2}
    $1=="ThreadsPerCore"{t=$2} $1=="RealMemory"{m=$2}
    END{print c, s, k, t, m}')
[[ -n $CPUS && -n $MEM ]] || die "slurmd -C did not describe this node: $(slurmd -C 2>&1)"
MEM=${SLURM_LOCAL_MEM:-$(( MEM > 2048 ? MEM - 1024 : MEM ))}

GRES_NODE=""
GRES_TYPES=""
if (( GPUS > 0 )); then
    GRES_TYPES="GresTypes=gpu"
    GRES_NODE="Gres=gpu:$GPUS"
    # Counted only, no device files: there is no GPU behind them.
    echo "NodeName=$NODE Name=gpu Count=$GPUS" > "$CONF/gres.conf"
else
    rm -f "$CONF/gres.conf"
fi

cat > "$CONF/slurm.conf" <<EOF
# Written by biounet workflows/slurm/local-cluster.sh: a single-node test cluster.
ClusterName=biounet-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldPort=6817
SlurmdPort=6818
MaxArraySize=10001
KillWait=10
MinJobAge=300
$GRES_TYPES
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM $GRES_NODE State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
log "wrote $CONF/slurm.conf (node $NODE: $CPUS CPUs, $MEM MB, $GPUS GPUs)"

# 3. Daemons (started directly; a container has no systemd).
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || { log "creating a munge key"; mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; }
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    log "starting munged"
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid || die "munged did not start"
    for _ in $(seq 50); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || true
    munge -n </dev/null | unmunge >/dev/null || die "munge does not work: $(munge -n 2>&1 </dev/null | unmunge 2>&1)"
fi

running() { [[ -f $STATE/$1.pid ]] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

if running slurmctld; then
    log "slurmctld running: reconfiguring"
    scontrol reconfigure || true
else
    log "starting slurmctld"
    slurmctld -i || die "slurmctld did not start: $(tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null)"
fi
if ! running slurmd; then
    log "starting slurmd"
    slurmd -N "$NODE" || die "slurmd did not start: $(tail -n 20 "$STATE/log/slurmd.log" 2>/dev/null)"
fi

# 4. Wait for the node to be idle.
state=""
for _ in $(seq $((WAIT * 2))); do
    state=$(node_state || true)
    if [[ $state == idle* ]]; then
        break
    fi
    if [[ $state == down* || $state == drain* ]]; then
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true
    fi
    sleep 0.5
done
if [[ $state != idle* ]]; then
    log "node state after ${WAIT}s: '${state:-no answer}'"
    sinfo -N -l 2>&1 | sed 's/^/  /' >&2 || true
    log "slurmctld log:"; tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null | sed 's/^/  /' >&2 || true
    log "slurmd log:"; tail -n 20 "$STATE/log/slurmd.log" 2>/dev/null | sed 's/^/  /' >&2 || true
    die "the SLURM node did not become idle"
fi
log "ready: $(sinfo -h -N -o '%N %T %c CPUs %m MB %G')"
