#!/usr/bin/env bash
# Local clusters and the cluster fault bench (tests/cluster; docs/cluster-testing.md).
#
#   scripts/cluster.sh start [N] [--kind sluice|kafka] [--dir DIR] [--broker-only K]
#                        [--controller-only C]
#                        start N (1-9) brokers on 127.0.0.1..N (default: 1 sluice, 3 kafka),
#                        each with its own data dir, log and ports under DIR (default
#                        ./sluice-cluster); prints the bootstrap servers when all are ready.
#                        N>1 sluice nodes are combined broker+controllers of one quorum;
#                        --broker-only K: the last K are broker-only nodes following the
#                        other voters; --controller-only C: the first C are controller-only
#                        voters (e.g. start 5 --controller-only 3 --broker-only 2)
#   scripts/cluster.sh stop|kill|status [N] [--dir DIR]
#                        SIGTERM (SIGKILL after 30 s) / SIGKILL / show every node
#   scripts/cluster.sh test [--kind sluice|kafka] [PYTEST ARGS...]
#                        run the fault bench inside private network, mount and pid namespaces
#                        (unshare --net --mount --pid), so that its partitions and small disks
#                        touch nothing of the host and nothing outlives it; the results table
#                        ends the output
#   scripts/cluster.sh check HISTORY.jsonl [--json DETAILS.json]
#                        run the checker over a history
#   scripts/cluster.sh failover [--kind sluice|kafka] [--kills N]
#                        failover time of a 3-node cluster (replication factor 3): N kill -9
#                        of a leader, time to the first acknowledged write on its partitions
#                        (tests/cluster/failover.py)
#   scripts/cluster.sh throughput [--runs N] [--duration 20s] [--kinds sluice,kafka]
#                        3 Sluice nodes beside 3 Kafka brokers: acks=all produce rate, e2e
#                        p99 and broker CPU per GB with replication factor 3
#                        (tests/cluster/throughput.py; needs the release sluice-bench)
#   scripts/cluster.sh reassign-bench [--runs N] [--size-mib M] [--kinds sluice,kafka] [--out DIR]
#                        3 Sluice nodes beside 3 Kafka brokers: time and MiB/s to move a
#                        partition of M MiB (default 1024) from node 1 to node 2 with
#                        AlterPartitionReassignments, and the two nodes' CPU over the move
#                        (tests/cluster/reassign_bench.py; needs the release sluice-bench)
#
# Needs: scripts/deps.sh (the Python venv); for kafka, scripts/deps.sh --kafka; for the
# network faults, root and nft (scripts/deps.sh --cluster installs nftables).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="$repo/.venv/bin/python"
[[ -x "$python" ]] || { echo "cluster.sh: no $python; run scripts/deps.sh first" >&2; exit 1; }

cmd="${1:-}"
shift || true
case "$cmd" in
    start | stop | kill | status)
        exec "$python" "$repo/tests/cluster/launcher.py" "$cmd" "$@"
        ;;
    check)
        exec "$python" "$repo/tests/cluster/checker.py" "$@"
        ;;
    failover)
        exec "$python" "$repo/tests/cluster/failover.py" "$@"
        ;;
    throughput)
        exec "$python" "$repo/tests/cluster/throughput.py" "$@"
        ;;
    reassign-bench)
        exec "$python" "$repo/tests/cluster/reassign_bench.py" "$@"
        ;;
    test)
        if [[ "${1:-}" == "--kind" ]]; then
            export SLUICE_CLUSTER_TARGET="${2:?--kind needs sluice or kafka}"
            shift 2
        fi
        host_ns="$(readlink /proc/self/ns/net)"
        if [[ "$(id -u)" == 0 ]]; then
            isolate=(unshare --net --mount --propagation private --pid --fork --kill-child --mount-proc)
        else
            # Without root: a user namespace of our own. Network faults will be skipped
            # there (nodes cannot get group ids of their own), the rest runs.
            isolate=(unshare --user --map-root-user --net --mount --propagation private --pid --fork --kill-child --mount-proc)
        fi
        # A pid namespace too: if pytest dies (a CI cancel, the OOM killer), every broker and
        # client it started dies with it instead of holding the namespace and 3 JVMs.
        if ! "${isolate[@]}" -- true 2>/dev/null; then
            # No namespaces here (a container without the capability, say): run in the host's
            # namespaces. network.py then refuses every network fault, which is skipped with
            # the reason (or fails under SLUICE_CLUSTER_STRICT=1); nothing touches the host.
            echo "cluster.sh: cannot create a private namespace (${isolate[*]}): network faults will not run" >&2
            cd "$repo"
            unset SLUICE_HOST_NETNS
            exec "$python" -m pytest -q -p no:cacheprovider -rs tests/cluster "$@"
        fi
        # Inside: loopback up with the nodes' addresses, then pytest. The host's namespace
        # is passed on so that network.py can refuse to run anywhere but in the new one.
        exec "${isolate[@]}" -- env SLUICE_HOST_NETNS="$host_ns" bash -c '
            set -euo pipefail
            ip link set lo up
            for i in $(seq 2 9); do ip addr add "127.0.0.$i/8" dev lo; done
            cd "$1"; shift
            # Not exec: this shell stays PID 1 of the pid namespace, and PID 1 must reap
            # orphans (kafka.sh start leaves its JVM to it); pytest would leave them zombies.
            # (The "exit" after it also keeps bash from exec-ing the last command itself.)
            "$0" -m pytest -q -p no:cacheprovider -rs tests/cluster "$@"
            exit $?
        ' "$python" "$repo" "$@"
        ;;
    *)
        sed -n '2,37p' "$0" >&2
        exit 2
        ;;
esac
