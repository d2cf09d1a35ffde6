#!/usr/bin/env bash
# Benchmarks interfaces_exporter's two sources (netlink and sysfs) side by side with
# node_exporter's netclass collector (sysfs and netlink modes) and with two floors
# (scripts/bench/floor.rs), and prints a markdown report with the goals of issues 6 and 12
# marked pass or fail.
#
# Usage: scripts/bench.sh [--quick] [--out FILE]
#   --quick     fewer rounds and shorter loads: a smoke run of two minutes, not for the README
#   --out FILE  also write the report to FILE
#
# It runs as root (namespaces, veth pairs, strace), installs what it lacks with apt-get, and
# sends traffic only to loopback, on the host and inside a namespace of its own, which it
# deletes on exit together with every process it started.
#
# What it measures, all in one run so the ratios compare like with like. "Ours" is our netlink
# source (`--collector.source=netlink`); "our sysfs" is `--collector.source=sysfs`.
#   1. scale: 1001 interfaces (500 veth pairs, half of the pairs up, plus lo) in a namespace;
#      median scrape latency over one kept-alive connection of ours, our sysfs source,
#      node_exporter's netclass in its default sysfs mode and with --collector.netclass.netlink,
#      and three floors: the sysfs floor (list class/net, open, read and close the same files),
#      the dump floor (one RTM_GETLINK dump, discarded) and the dump floor plus one ethtool
#      ioctl per interface that is up (what a default netlink scrape must do at the least,
#      since the dump has no speed or duplex). All take turns, one scrape or pass each, and a
#      ratio is the median of the paired ratios, so whatever else the machine does (this one is
#      shared) slows both sides of a ratio alike.
#   2. throughput: requests/s under `wrk -t2 -c16` on the host's own interfaces (our default
#      source, which is what `auto` picks there).
#   3. footprint: peak RSS (VmHWM) of each exporter after each load, the static binary's size,
#      and the time from spawn to the end of the first complete 200 response.
#   4. growth: both our sources' latency and their floors' at 11, 101, 1001 and 2001 interfaces.
#   5. host disruption: the time of a batch of 800 `ip link set DEV up|down` in a second
#      namespace while one exporter is scraped at a fixed 20 scrapes/s over the 1001
#      interfaces, divided by the same batch with no scraper (the kernel's RTNL lock is one for
#      all namespaces, and sysfs reads of carrier, speed and duplex take it).
#   and syscalls per scrape (strace -c -f) at 1001 interfaces, both sources against the floors'.
#
# Until the binary knows --collector.source (it says so in --help), the netlink column runs
# with the default source and the report says in its first lines that those figures are not
# real.
#
# Latency is measured by `floor scrape`, a small client that sends exactly N requests on one
# connection with TCP_NODELAY and times each from the first byte written to the last body byte
# read. `wrk -c1 --latency` would do nearly the same, but runs for a duration rather than a
# count (a handful of samples for node_exporter at 2000 interfaces) and gives up on a request
# after 2 s. Neither client asks for gzip, so node_exporter sends plain text as we do.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command_line="scripts/bench.sh${*:+ $*}"
# Another busy process skews every figure; the report shows the load the run started under.
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)

usage() {
    sed -n '6,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

quick=false
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick=true ;;
        --out) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; out=$2; shift ;;
        --out=*) out=${1#--out=} ;;
        -h | --help) usage; exit 0 ;;
        *) echo "bench.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: needs root for network namespaces and strace" >&2
    exit 1
fi

# Repetitions. A round at 1000 interfaces takes about 12 s on a 2-core machine (node_exporter
# takes most of it); five of them give ratios that move by a few percent from run to run.
if $quick; then
    rounds=2          # rounds at 1000 interfaces
    disrupt_rounds=2  # rounds of the host-disruption figure, each under every scraper and none
    disrupt_runs=4    # batches in a row under one scraper, of which the mean is taken
    scale_n_req=3     # scrapes of each exporter (and floor passes) per round
    growth_rounds=1
    tp_rounds=1
    tp_secs=3
    startup_ours=5
    startup_peer=2
    strace_scrapes=1
    breakdown_passes=5
else
    rounds=5
    disrupt_rounds=5
    disrupt_runs=10
    scale_n_req=15
    growth_rounds=3
    tp_rounds=5
    tp_secs=10
    startup_ours=20
    startup_peer=5
    strace_scrapes=3
    breakdown_passes=20
fi

log() { echo "bench.sh: $*" >&2; }

# The host-disruption figure: the scrape rate, and the size of the batch of link changes.
disrupt_rate=20
disrupt_pairs=200 # 400 devices, each set up then down: 800 commands

# --- Tools --------------------------------------------------------------------------------

# hyperfine is not needed: it times a program until it exits, while startup here is timed
# until a running server first answers, which `floor startup` does.
need=(wrk:wrk strace:strace prometheus-node-exporter:prometheus-node-exporter ip:iproute2
    curl:curl awk:gawk)
missing=()
for pair in "${need[@]}"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # The Debian package starts a node_exporter service on :9100; it is not ours to measure.
    if [[ " ${missing[*]} " == *" prometheus-node-exporter "* ]] && command -v systemctl >/dev/null; then
        systemctl disable --now prometheus-node-exporter >/dev/null 2>&1 || true
    fi
fi

# --- Build --------------------------------------------------------------------------------

target_dir=${CARGO_TARGET_DIR:-target}
notes=()
if [[ -x scripts/build-static.sh ]]; then
    log "building the static binary with scripts/build-static.sh"
    scripts/build-static.sh x86_64-unknown-linux-musl >&2
else
    # Until build-static.sh lands, the plain musl build; it links with the toolchain's default
    # linker, so its size may differ a little from the release build's.
    notes+=("scripts/build-static.sh was missing; the static binary came from a plain \`cargo build --release --target x86_64-unknown-linux-musl\`")
    log "building the static binary with cargo (scripts/build-static.sh is missing)"
    cargo build --release --locked --target x86_64-unknown-linux-musl >&2
fi
bin=$target_dir/x86_64-unknown-linux-musl/release/interfaces_exporter
# The floor is built for the host's libc target: glibc's open() is one openat syscall, the least
# an open can cost, so the floor is a true floor whichever libc the exporter links.
log "building the floor program"
cargo build --release --locked --example floor >&2
floor=$target_dir/release/examples/floor
peer=$(command -v prometheus-node-exporter)
[[ -x $bin && -x $floor ]] || { echo "bench.sh: build outputs missing" >&2; exit 1; }
# Absolute paths, because `ip netns exec` runs them from elsewhere.
bin=$(realpath "$bin")
floor=$(realpath "$floor")

# Our two sources. Before the netlink source lands the binary has no --collector.source and
# reads sysfs only: the netlink column then runs the default source, so that the script can be
# developed and smoke-tested, and the report says loudly that its netlink figures are not real.
help_ours=$("$bin" --help 2>&1 || true)
if [[ $help_ours == *--collector.source* ]]; then
    netlink_real=true
    src_netlink=(--collector.source=netlink)
    src_sysfs=(--collector.source=sysfs)
else
    netlink_real=false
    src_netlink=()
    src_sysfs=()
    netlink_warning="WARNING: $bin has no --collector.source flag, so the netlink column ran the default (sysfs) source: every figure for our netlink source, and every issue-12 verdict on it, is NOT REAL"
    log "$netlink_warning"
fi
# node_exporter's netlink mode of netclass (1.5.0 and later); the run is meaningless without it.
help_peer=$("$peer" --help 2>&1 || true)
if [[ $help_peer != *--collector.netclass.netlink* ]]; then
    echo "bench.sh: $peer has no --collector.netclass.netlink (node_exporter 1.5.0 or later has)" >&2
    exit 1
fi

# --- Cleanup ------------------------------------------------------------------------------

ns=ifxbench$$
ns_made=false
ns_host=ifxhost$$
ns_host_made=false
pids=()
work=$(mktemp -d)
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if $ns_made; then
        ip netns del "$ns" 2>/dev/null || true
    fi
    if $ns_host_made; then
        ip netns del "$ns_host" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- Helpers ------------------------------------------------------------------------------

# Runs a command in the namespace, or on the host when the first argument is empty.
in_ns() {
    local where=$1
    shift
    if [[ -n $where ]]; then
        ip netns exec "$where" "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME NS PORT: starts an exporter in NS (empty: host) on 127.0.0.1:PORT, waits until
# it answers, and sets $started to its pid (ip netns exec execs, so the pid is the exporter's).
# NAME: ours (netlink source), sysfs (our sysfs source), auto (our default source), peer
# (node_exporter's netclass, sysfs mode) or peer_nl (its --collector.netclass.netlink).
start() {
    local name=$1 where=$2 port=$3 cmd
    case "$name" in
        ours) cmd=("$bin" "${src_netlink[@]}" "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
        sysfs) cmd=("$bin" "${src_sysfs[@]}" "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
        auto) cmd=("$bin" "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
        peer) cmd=("$peer" --collector.disable-defaults --collector.netclass
            "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
        peer_nl) cmd=("$peer" --collector.disable-defaults --collector.netclass
            --collector.netclass.netlink "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
    esac
    if [[ -n $where ]]; then
        ip netns exec "$where" "${cmd[@]}" >/dev/null 2>>"$work/$name.log" &
    else
        "${cmd[@]}" >/dev/null 2>>"$work/$name.log" &
    fi
    started=$!
    pids+=("$started")
    local deadline=$((SECONDS + 20))
    until in_ns "$where" curl -sf -o /dev/null "http://127.0.0.1:$port/metrics"; do
        if ((SECONDS > deadline)) || ! kill -0 "$started" 2>/dev/null; then
            echo "bench.sh: $name did not start; its log:" >&2
            cat "$work/$name.log" >&2
            exit 1
        fi
        sleep 0.02
    done
}

# stop PID: ends a process this script started and forgets it, so the exit trap cannot signal
# a later process that reused the number.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

forget() {
    local keep=() p
    for p in "${pids[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    pids=("${keep[@]}")
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# cpu_ticks PID: "user system" CPU time of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
tick_us=$(awk -v t="$(getconf CLK_TCK)" 'BEGIN {print 1000000 / t}')

# cpu_add NAME PID BEFORE REQUESTS: adds the CPU time PID used since BEFORE to NAME's tally.
declare -A cpu_user cpu_sys cpu_requests
cpu_add() {
    local u0 s0 u1 s1
    read -r u0 s0 <<<"$3"
    read -r u1 s1 <<<"$(cpu_ticks "$2")"
    cpu_user[$1]=$((${cpu_user[$1]:-0} + u1 - u0))
    cpu_sys[$1]=$((${cpu_sys[$1]:-0} + s1 - s0))
    cpu_requests[$1]=$((${cpu_requests[$1]:-0} + $4))
}

# field KEY < line: the value of KEY=VALUE in a floor output line.
field() { tr ' ' '\n' | sed -n "s/^$1=//p"; }

# median < numbers, one a line.
median() {
    sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# calc EXPR: floating-point arithmetic.
calc() { awk "BEGIN {printf \"%.6g\", $1}"; }

ms() { awk -v u="$1" 'BEGIN {printf (u >= 100000 ? "%.0f ms" : (u >= 10000 ? "%.1f ms" : "%.2f ms")), u / 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf (k < 4096 ? "%d KiB" : "%.1f MiB"), (k < 4096 ? k : k / 1024)}'; }
kib() { awk -v b="$1" 'BEGIN {printf "%d KiB", (b + 1023) / 1024}'; }
x() { awk -v r="$1" 'BEGIN {printf "%.2fx", r}'; }
verdict() { awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {ok = (op == ">=") ? v >= g : v <= g; print (ok ? "pass" : "**FAIL**")}'; }

# add_pairs FROM TO: veth pairs vaI/vbI for I in [FROM, TO), even I up, odd I down.
add_pairs() {
    local i
    for ((i = $1; i < $2; i++)); do
        echo "link add va$i type veth peer name vb$i"
        if ((i % 2 == 0)); then
            echo "link set va$i up"
            echo "link set vb$i up"
        fi
    done | ip -n "$ns" -batch -
}

count_ifaces() { in_ns "$ns" ls /sys/class/net | wc -l; }

# rotate NS N TARGET...: runs `floor scrape` in NS with N rounds over the targets (LABEL=URL or
# floor) in turn, and sets med[LABEL] to each target's median in us and ratio[A/B] to the median
# of the paired ratios. The lines also go to $work/lines.
declare -A med ratio
kept_ratios='sysfs/ours|peer_nl/ours|peer/ours|ours/dump|ours/dumpeth|sysfs/floor|peer/sysfs'
rotate() {
    local where=$1 n=$2 out line key
    shift 2
    out=$(in_ns "$where" "$floor" scrape "$@" --requests "$n" --warmup 1)
    # Every pair's ratio comes out both ways; the raw lines keep the ones the report uses.
    grep -E "^target=|^ratio=($kept_ratios) " <<<"$out" >>"$work/lines"
    while read -r line; do
        case "$line" in
            target=*)
                key=$(field target <<<"$line")
                med[$key]=$(field median_us <<<"$line")
                ;;
            ratio=*)
                key=$(field ratio <<<"$line")
                ratio[$key]=$(field median <<<"$line")
                ;;
        esac
    done <<<"$out"
}

# floor_us NS N MODE: median time in us of N floor passes in MODE.
floor_us() {
    local line
    line=$(in_ns "$1" "$floor" scan --passes "$2" --warmup 2 --mode "$3")
    echo "$line" >>"$work/lines"
    field median_us <<<"$line"
}

# label KEY: how the report names a target.
label() {
    case $1 in
        ours) echo "ours (netlink source)" ;;
        sysfs) echo "our sysfs source" ;;
        dump) echo "dump floor" ;;
        dumpeth) echo "dump + ethtool floor" ;;
        floor) echo "sysfs floor (open+read+close)" ;;
        peer_nl) echo "node_exporter --collector.netclass.netlink" ;;
        peer) echo "node_exporter netclass (sysfs)" ;;
        none) echo "no scraper" ;;
    esac
}

# nl_verdict VALUE OP GOAL: a verdict on a figure of our netlink source, marked when the
# netlink source was not really run.
nl_verdict() {
    if $netlink_real; then
        verdict "$@"
    else
        echo "$(verdict "$@") (NOT REAL)"
    fi
}

# us_range "LO..HI": both ends in ms.
us_range() { echo "$(ms "${1%..*}")..$(ms "${1#*..}")"; }

# --- 2 and 3: throughput and footprint on the host ------------------------------------------

# These run first, before the namespace exists: with 2000 veth devices present, even in another
# namespace, the exporter's time to first scrape on the host went from about 1.2 ms to 1.8-3.7 ms
# on the 2-core test machine.

log "throughput on the host: $tp_rounds rounds of wrk -t2 -c16 -d${tp_secs}s each"
host_ifaces=$(ls /sys/class/net | wc -l)
p1=$(free_port)
start auto "" "$p1"
ours_host=$started
p2=$(free_port)
while [[ $p2 == "$p1" ]]; do p2=$(free_port); done
start peer "" "$p2"
peer_host=$started
rps() {
    wrk -t2 -c16 -d"${tp_secs}s" "http://127.0.0.1:$1/metrics" | tee -a "$work/wrk" |
        awk '/^Requests\/sec:/ {print $2}'
}
to=() tp=() r_tp=()
for ((r = 0; r < tp_rounds; r++)); do
    a=$(rps "$p1")
    b=$(rps "$p2")
    to+=("$a") tp+=("$b") r_tp+=("$(calc "$a / $b")")
    log "  round $((r + 1)): ours $a/s, node_exporter $b/s"
done
tp_ours=$(printf '%s\n' "${to[@]}" | median)
tp_peer=$(printf '%s\n' "${tp[@]}" | median)
ratio_tp=$(printf '%s\n' "${r_tp[@]}" | median)
hwm_ours_host=$(hwm_kib "$ours_host")
hwm_peer_host=$(hwm_kib "$peer_host")
stop "$ours_host"
stop "$peer_host"

log "startup: $startup_ours runs of ours, $startup_peer of node_exporter"
p=$(free_port)
startup_ours_us=$("$floor" startup --runs "$startup_ours" --addr "127.0.0.1:$p" -- \
    "$bin" "--web.listen-address=127.0.0.1:$p" --path.sysfs=/sys | tee -a "$work/lines" | field median_us)
p=$(free_port)
startup_peer_us=$("$floor" startup --runs "$startup_peer" --addr "127.0.0.1:$p" -- \
    "$peer" --collector.disable-defaults --collector.netclass "--web.listen-address=127.0.0.1:$p" |
    tee -a "$work/lines" | field median_us)

size_ours=$(stat -c %s "$bin")
size_peer=$(stat -c %s "$(realpath "$peer")")

# --- 1, 4 and 5: scale, growth and host disruption, in one namespace that grows --------------

ip netns add "$ns"
ns_made=true
ip -n "$ns" link set lo up
ours_port=9425
sysfs_port=9426
peer_port=9100
peer_nl_port=9101
start ours "$ns" "$ours_port"
ours_ns=$started
start sysfs "$ns" "$sysfs_port"
sysfs_ns=$started
url_ours=http://127.0.0.1:$ours_port/metrics
url_sysfs=http://127.0.0.1:$sysfs_port/metrics
url_peer=http://127.0.0.1:$peer_port/metrics
url_peer_nl=http://127.0.0.1:$peer_nl_port/metrics

# spread < numbers: "min..max".
spread() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo ".." hi}'; }

# strace_server PID URL FILE: counts the system calls of the server PID (all its threads) over
# $strace_scrapes scrapes of URL on one connection, into FILE.
strace_server() {
    local pid=$1 url=$2 file=$3 sp deadline
    strace -c -f -p "$pid" -o "$file" 2>"$file.err" &
    sp=$!
    pids+=("$sp")
    deadline=$((SECONDS + 10))
    until grep -q attached "$file.err" 2>/dev/null; do
        ((SECONDS < deadline)) || { echo "bench.sh: strace did not attach" >&2; exit 1; }
        sleep 0.05
    done
    in_ns "$ns" "$floor" scrape "$url" --requests "$strace_scrapes" --warmup 0 >/dev/null
    kill -INT "$sp"
    wait "$sp" 2>/dev/null || true
    forget "$sp"
}

declare -A growth_ours growth_sysfs growth_floor growth_dump growth_ratio_sysfs growth_ratio_ours growth_n
pairs=0
for target_pairs in 5 50 500 1000; do
    log "growth: $((target_pairs * 2)) interfaces"
    add_pairs "$pairs" "$target_pairs"
    pairs=$target_pairs
    n=$(count_ifaces)
    growth_n[$target_pairs]=$n
    # About 3 s of scraping the sysfs source per round, at most 200 scrapes; the netlink source
    # and the dump floor take a tenth of that.
    per=$((3000000 / (n * 110 + 1000)))
    ((per < 5)) && per=5
    ((per > 200)) && per=200
    $quick && per=$(((per + 3) / 4))
    o=() s=() f=() d=() gs=() go=()
    for ((r = 0; r < growth_rounds; r++)); do
        rotate "$ns" "$per" "sysfs=$url_sysfs" floor=floor "ours=$url_ours" dump=dump
        o+=("${med[ours]}") s+=("${med[sysfs]}") f+=("${med[floor]}") d+=("${med[dump]}")
        gs+=("${ratio[sysfs/floor]}") go+=("${ratio[ours/dump]}")
    done
    growth_ours[$target_pairs]=$(printf '%s\n' "${o[@]}" | median)
    growth_sysfs[$target_pairs]=$(printf '%s\n' "${s[@]}" | median)
    growth_floor[$target_pairs]=$(printf '%s\n' "${f[@]}" | median)
    growth_dump[$target_pairs]=$(printf '%s\n' "${d[@]}" | median)
    growth_ratio_sysfs[$target_pairs]=$(printf '%s\n' "${gs[@]}" | median)
    growth_ratio_ours[$target_pairs]=$(printf '%s\n' "${go[@]}" | median)

    if ((target_pairs != 500)); then
        continue
    fi

    log "scale: $n interfaces, $rounds rounds"
    start peer "$ns" "$peer_port"
    peer_ns=$started
    start peer_nl "$ns" "$peer_nl_port"
    peer_nl_ns=$started
    declare -A scale_runs=() scale_ratios=()
    for ((r = 0; r < rounds; r++)); do
        t_ours=$(cpu_ticks "$ours_ns")
        t_sysfs=$(cpu_ticks "$sysfs_ns")
        t_peer=$(cpu_ticks "$peer_ns")
        t_peer_nl=$(cpu_ticks "$peer_nl_ns")
        rotate "$ns" "$scale_n_req" "ours=$url_ours" "sysfs=$url_sysfs" floor=floor dump=dump \
            dumpeth=dump+ethtool "peer_nl=$url_peer_nl" "peer=$url_peer"
        cpu_add ours "$ours_ns" "$t_ours" $((scale_n_req + 1))
        cpu_add sysfs "$sysfs_ns" "$t_sysfs" $((scale_n_req + 1))
        cpu_add peer "$peer_ns" "$t_peer" $((scale_n_req + 1))
        cpu_add peer_nl "$peer_nl_ns" "$t_peer_nl" $((scale_n_req + 1))
        for k in ours sysfs floor dump dumpeth peer_nl peer; do
            scale_runs[$k]+="${med[$k]} "
        done
        for k in sysfs/ours peer_nl/ours peer/ours ours/dump ours/dumpeth sysfs/floor peer/sysfs; do
            scale_ratios[$k]+="${ratio[$k]} "
        done
        log "  round $((r + 1)): ours $(ms "${med[ours]}"), our sysfs $(ms "${med[sysfs]}"), dump floor $(ms "${med[dump]}"), dump+ethtool $(ms "${med[dumpeth]}"), sysfs floor $(ms "${med[floor]}"), node_exporter netlink $(ms "${med[peer_nl]}"), sysfs $(ms "${med[peer]}")"
    done
    scale_n=$n
    declare -A scale_us=() scale_spread=() scale_ratio=()
    for k in "${!scale_runs[@]}"; do
        scale_us[$k]=$(tr ' ' '\n' <<<"${scale_runs[$k]}" | grep . | median)
        scale_spread[$k]=$(tr ' ' '\n' <<<"${scale_runs[$k]}" | grep . | spread)
    done
    for k in "${!scale_ratios[@]}"; do
        scale_ratio[$k]=$(tr ' ' '\n' <<<"${scale_ratios[$k]}" | grep . | median)
    done
    declare -A hwm_1000=() fds_1000=()
    for k in ours sysfs peer peer_nl; do
        pid_var=${k}_ns
        hwm_1000[$k]=$(hwm_kib "${!pid_var}")
        # Descriptors held between scrapes: each sysfs file kept open and once read pins about
        # 5.6 KiB of kernel memory (its seq_file page and bookkeeping), which VmHWM does not show.
        fds_1000[$k]=$(ls "/proc/${!pid_var}/fd" | wc -l)
    done

    # The batch runs in a namespace of its own, with 400 devices that take turns going up and
    # down; its time with no scraper is the baseline of each round, and the scrapers take turns
    # in a rotating order so that none always follows another.
    log "host disruption: $disrupt_rounds rounds of $disrupt_runs batches of $((disrupt_pairs * 4)) link changes under $disrupt_rate scrapes/s of each exporter and none"
    ip netns add "$ns_host"
    ns_host_made=true
    for ((i = 0; i < disrupt_pairs; i++)); do
        echo "link add ha$i type veth peer name hb$i"
    done | ip -n "$ns_host" -batch -
    {
        for ((i = 0; i < disrupt_pairs; i++)); do
            echo "link set ha$i up"
            echo "link set hb$i up"
        done
        for ((i = 0; i < disrupt_pairs; i++)); do
            echo "link set ha$i down"
            echo "link set hb$i down"
        done
    } >"$work/batch"
    disrupt_who=(ours sysfs peer_nl peer)
    declare -A disrupt_ratio_runs=() disrupt_rate_runs=()
    disrupt_none_runs=""
    # disrupt_batch WHO: sets $batch to the mean batch time in us under WHO (none: no scraper).
    disrupt_batch() {
        local who=$1 url=() url_var line
        if [[ $who != none ]]; then
            url_var=url_$who
            url=(--url "${!url_var}")
        fi
        line=$(in_ns "$ns" "$floor" disrupt "${url[@]}" --rate "$disrupt_rate" \
            --runs "$disrupt_runs" -- ip -n "$ns_host" -batch "$work/batch")
        echo "target=$who $line" >>"$work/lines"
        batch=$(field batch_us <<<"$line")
        if [[ $who == none ]]; then
            disrupt_none_runs+="$batch "
        else
            disrupt_rate_runs[$who]+="$(field achieved_per_s <<<"$line") "
        fi
    }
    # Each scraper's batches sit between two without a scraper, and its slowdown is over the
    # mean of those two, so that the load of the shared machine drifting during a round moves
    # both sides of a ratio alike. The scrapers take turns in a rotating order.
    for ((r = 0; r < disrupt_rounds; r++)); do
        disrupt_batch none
        before=$batch
        progress=""
        for ((j = 0; j < ${#disrupt_who[@]}; j++)); do
            k=${disrupt_who[$(((j + r) % ${#disrupt_who[@]}))]}
            disrupt_batch "$k"
            under=$batch
            disrupt_batch none
            disrupt_ratio_runs[$k]+="$(calc "2 * $under / ($before + $batch)") "
            progress+=", $(label "$k") $(ms "$under") ($(ms "$before") and $(ms "$batch") without)"
            before=$batch
        done
        log "  round $((r + 1))$progress"
    done
    declare -A disrupt_slowdown=() disrupt_achieved=()
    for k in "${disrupt_who[@]}"; do
        disrupt_slowdown[$k]=$(tr ' ' '\n' <<<"${disrupt_ratio_runs[$k]}" | grep . | median)
        disrupt_achieved[$k]=$(tr ' ' '\n' <<<"${disrupt_rate_runs[$k]}" | grep . | median)
    done
    disrupt_none_us=$(tr ' ' '\n' <<<"$disrupt_none_runs" | grep . | median)
    ip netns del "$ns_host"
    ns_host_made=false
    stop "$peer_ns"
    stop "$peer_nl_ns"

    # Where a pass goes: listing alone, open+close, open+read+close, and two access patterns
    # the exporter could use instead.
    log "floor breakdown at $n interfaces"
    declare -A breakdown
    for mode in list openclose open openat dirfd pread; do
        breakdown[$mode]=$(floor_us "$ns" "$breakdown_passes" "$mode")
    done
    breakdown_files=$(in_ns "$ns" "$floor" scan --passes 1 --warmup 0 | field files)

    log "syscalls: strace over $strace_scrapes scrapes of each source"
    strace_server "$ours_ns" "$url_ours" "$work/strace-ours"
    strace_server "$sysfs_ns" "$url_sysfs" "$work/strace-sysfs"
    in_ns "$ns" strace -c -f -o "$work/strace-floor" \
        "$floor" scan --passes "$strace_scrapes" --warmup 0 >/dev/null
    in_ns "$ns" strace -c -f -o "$work/strace-dump" \
        "$floor" dump --passes "$strace_scrapes" --warmup 0 >/dev/null
    in_ns "$ns" strace -c -f -o "$work/strace-dumpeth" \
        "$floor" dump --ethtool --passes "$strace_scrapes" --warmup 0 >"$work/dumpeth-line"
    dumpeth_up=$(field up <"$work/dumpeth-line")
done
stop "$ours_ns"
stop "$sysfs_ns"

# strace_table FILE N: "syscall calls-per-N" lines, most frequent first, from strace -c output.
strace_table() {
    awk -v n="$2" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            printf "%s %.1f\n", $NF, $4 / n
        }' "$1" | sort -k2 -g -r
}
declare -A sys_total
for k in ours sysfs dumpeth dump floor; do
    strace_table "$work/strace-$k" "$strace_scrapes" >"$work/sys-$k"
    sys_total[$k]=$(awk '{s += $2} END {printf "%.0f", s}' "$work/sys-$k")
done

# --- Report -------------------------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
version_ours=$("$bin" --version 2>&1 | head -1)
version_peer=$("$peer" --version 2>&1 | head -1 | sed 's/ *(.*//')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit+uncommitted"

report() {
    local k n s
    echo "## Benchmark: interfaces_exporter (netlink and sysfs sources) vs node_exporter netclass vs the floors"
    echo
    if ! $netlink_real; then
        echo "> **$netlink_warning.**"
        echo
    fi
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $cpu, kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, load average $load_at_start at start"
    echo "- ours: $version_ours (commit $commit), $bin; \"ours\" is \`${src_netlink[*]:-(no flag: default source)}\`, \"our sysfs source\" \`${src_sysfs[*]:-(no flag: default source)}\`; throughput and startup use the default source"
    echo "- peer: $version_peer, \`--collector.disable-defaults --collector.netclass\` (sysfs mode) and the same with \`--collector.netclass.netlink\`"
    echo "- command: \`$command_line\`$($quick && echo ' (quick: too few repetitions for the README)')"
    echo
    echo "### Goals of issue 12 ($scale_n interfaces; ours is the netlink source)"
    echo
    echo "| figure | measured | ratio | goal | result |"
    echo "|---|---|---|---|---|"
    echo "| scrape, our sysfs source / ours | $(ms "${scale_us[sysfs]}") / $(ms "${scale_us[ours]}") | $(x "${scale_ratio[sysfs/ours]}") | >= 8x | $(nl_verdict "${scale_ratio[sysfs/ours]}" ">=" 8) |"
    echo "| scrape, node_exporter \`--collector.netclass.netlink\` / ours | $(ms "${scale_us[peer_nl]}") / $(ms "${scale_us[ours]}") | $(x "${scale_ratio[peer_nl/ours]}") | >= 4x | $(nl_verdict "${scale_ratio[peer_nl/ours]}" ">=" 4) |"
    echo "| scrape, node_exporter sysfs netclass / ours | $(ms "${scale_us[peer]}") / $(ms "${scale_us[ours]}") | $(x "${scale_ratio[peer/ours]}") | >= 50x | $(nl_verdict "${scale_ratio[peer/ours]}" ">=" 50) |"
    echo "| scrape, ours / dump floor | $(ms "${scale_us[ours]}") / $(ms "${scale_us[dump]}") | $(x "${scale_ratio[ours/dump]}") | <= 1.6x | $(nl_verdict "${scale_ratio[ours/dump]}" "<=" 1.6) |"
    echo "| scrape, ours / dump + ethtool floor ($dumpeth_up interfaces up) | $(ms "${scale_us[ours]}") / $(ms "${scale_us[dumpeth]}") | $(x "${scale_ratio[ours/dumpeth]}") | the fair floor of a default scrape | info |"
    echo "| syscalls per scrape, ours | ${sys_total[ours]} | | <= 600 | $(nl_verdict "${sys_total[ours]}" "<=" 600) |"
    echo "| host up/down batch at $disrupt_rate scrapes/s of ours, slowdown | $(ms "$disrupt_none_us") without a scraper | $(x "${disrupt_slowdown[ours]}") | <= 1.2x | $(nl_verdict "${disrupt_slowdown[ours]}" "<=" 1.2) |"
    echo "| peak RSS scraping $scale_n interfaces, ours | $(mib "${hwm_1000[ours]}") | | <= 3 MiB | $(nl_verdict "${hwm_1000[ours]}" "<=" 3072) |"
    echo
    echo "### Goals of the earlier issues (issue 6: the sysfs source)"
    echo
    echo "| figure | ours | peer | ratio | goal | result |"
    echo "|---|---|---|---|---|---|"
    echo "| scrape at $scale_n interfaces, node_exporter sysfs / our sysfs source | $(ms "${scale_us[sysfs]}") | $(ms "${scale_us[peer]}") | $(x "${scale_ratio[peer/sysfs]}") | >= 6x | $(verdict "${scale_ratio[peer/sysfs]}" ">=" 6) |"
    echo "| scrape at $scale_n interfaces, our sysfs source / sysfs floor | $(ms "${scale_us[sysfs]}") | floor $(ms "${scale_us[floor]}") | $(x "${scale_ratio[sysfs/floor]}") | <= 1.1x | $(verdict "${scale_ratio[sysfs/floor]}" "<=" 1.1) |"
    echo "| requests per second on the host ($host_ifaces interfaces), ours (default source) / node_exporter | $(printf '%.0f' "$tp_ours")/s | $(printf '%.0f' "$tp_peer")/s | $(x "$ratio_tp") | >= 10x | $(verdict "$ratio_tp" ">=" 10) |"
    echo "| peak RSS under wrk on the host | $(mib "$hwm_ours_host") | $(mib "$hwm_peer_host") | $(x "$(calc "$hwm_peer_host / $hwm_ours_host")") smaller | <= 1 MiB | $(verdict "$hwm_ours_host" "<=" 1024) |"
    echo "| peak RSS scraping $scale_n interfaces, our sysfs source | $(mib "${hwm_1000[sysfs]}") | $(mib "${hwm_1000[peer]}") | $(x "$(calc "${hwm_1000[peer]} / ${hwm_1000[sysfs]}")") smaller | <= 2 MiB | $(verdict "${hwm_1000[sysfs]}" "<=" 2048) |"
    echo "| open descriptors after scraping $scale_n interfaces, ours / our sysfs source | ${fds_1000[ours]} / ${fds_1000[sysfs]} | ${fds_1000[peer]} (netlink mode ${fds_1000[peer_nl]}) | | none; about 5.6 KiB of kernel memory per sysfs file held open and read | info |"
    echo "| static binary | $(kib "$size_ours") | $(kib "$size_peer") | $(x "$(calc "$size_peer / $size_ours")") smaller | <= 640 KiB | $(verdict "$size_ours" "<=" 655360) |"
    echo "| exec to first successful scrape (default source) | $(ms "$startup_ours_us") | $(ms "$startup_peer_us") | $(x "$(calc "$startup_peer_us / $startup_ours_us")") faster | <= 5 ms | $(verdict "$startup_ours_us" "<=" 5000) |"
    echo
    echo "### Scrape latency at $scale_n interfaces"
    echo
    echo "| target | median | round medians | user CPU per scrape | system CPU per scrape | peak RSS |"
    echo "|---|---|---|---|---|---|"
    for k in ours sysfs dump dumpeth floor peer_nl peer; do
        if [[ -n ${cpu_requests[$k]:-} ]]; then
            echo "| $(label "$k") | $(ms "${scale_us[$k]}") | $(us_range "${scale_spread[$k]}") | $(ms "$(calc "${cpu_user[$k]} * $tick_us / ${cpu_requests[$k]}")") | $(ms "$(calc "${cpu_sys[$k]} * $tick_us / ${cpu_requests[$k]}")") | $(mib "${hwm_1000[$k]}") |"
        else
            echo "| $(label "$k") | $(ms "${scale_us[$k]}") | $(us_range "${scale_spread[$k]}") | | | |"
        fi
    done
    echo
    echo "Latency is the median over $rounds rounds of each round's median; a round is $scale_n_req turns of one scrape or pass of each target in the order above (each exporter on one kept-alive connection), and a round's ratio is the median of its $scale_n_req paired ratios; a ratio shown is the median of the rounds' ratios. CPU is utime and stime from /proc/PID/stat over the rounds (${cpu_requests[ours]} scrapes each), at the kernel's $(getconf CLK_TCK) Hz tick: system time is the kernel building the dump, answering ethtool, or opening and reading sysfs files; user time is parsing, rendering and HTTP (for node_exporter also the Go runtime and its garbage collector). Peak RSS is VmHWM after the rounds. Throughput is the median of $tp_rounds rounds of \`wrk -t2 -c16 -d${tp_secs}s\` each. Startup is the median of $startup_ours runs (node_exporter: $startup_peer) from spawn to the last byte of the first 200 response, polling every 50 us."
    echo
    echo "### Host disruption: $((disrupt_pairs * 4)) \`ip link set DEV up|down\` in another namespace while $scale_n interfaces are scraped"
    echo
    echo "| scraper at $disrupt_rate scrapes/s | batch slowdown | scrapes/s achieved during the batch |"
    echo "|---|---|---|"
    for k in ours sysfs peer_nl peer; do
        echo "| $(label "$k") | $(x "${disrupt_slowdown[$k]}") | $(printf '%.1f' "${disrupt_achieved[$k]}") |"
    done
    echo
    echo "A batch is one \`ip -batch\` of $((disrupt_pairs * 4)) commands ($((disrupt_pairs * 2)) veth devices set up, then down) in a namespace of its own, timed from spawn to exit. \`floor disrupt\` runs $disrupt_runs batches in a row and takes their mean, while it GETs one exporter every $((1000 / disrupt_rate)) ms on one kept-alive connection, from 0.5 s before the first batch; a scrape that overruns its slot starts the next at once and never a burst, so a source slower than $((1000 / disrupt_rate)) ms a scrape is scraped back to back (the achieved rate shows it). A round does this under each exporter in a rotating order, and with no scraper before and after each (median $(ms "$disrupt_none_us") a batch); the slowdown is the median over $disrupt_rounds rounds of the mean batch time under the scraper over the mean of the two without, on either side of it."
    echo
    echo "### Growth: scrape latency against interfaces"
    echo
    echo "| interfaces | ours | dump floor | ours / dump | our sysfs source | sysfs floor | sysfs / floor | ours per interface | our sysfs per interface |"
    echo "|---|---|---|---|---|---|---|---|---|"
    for k in 5 50 500 1000; do
        n=${growth_n[$k]}
        echo "| $n | $(ms "${growth_ours[$k]}") | $(ms "${growth_dump[$k]}") | $(x "${growth_ratio_ours[$k]}") | $(ms "${growth_sysfs[$k]}") | $(ms "${growth_floor[$k]}") | $(x "${growth_ratio_sysfs[$k]}") | $(printf '%.1f' "$(calc "${growth_ours[$k]} / $n")") us | $(printf '%.1f' "$(calc "${growth_sysfs[$k]} / $n")") us |"
    done
    echo
    echo "Medians of $growth_rounds round(s) of a scrape of our sysfs source, a sysfs floor pass, a scrape of ours and a dump floor pass in turn (the ratios paired as above), in a namespace that grows from 5 to 1000 veth pairs (the interface count includes lo); the $scale_n-interface row is measured apart from the scale rounds above."
    echo
    echo "### Syscalls per scrape at $scale_n interfaces (strace -c -f, $strace_scrapes scrapes or passes)"
    echo
    echo "| syscall | ours per scrape | our sysfs source per scrape | dump + ethtool floor per pass | dump floor per pass | sysfs floor per pass |"
    echo "|---|---|---|---|---|---|"
    for s in $(cat "$work"/sys-{ours,sysfs,dumpeth,dump,floor} | awk '!seen[$1]++ && $2 >= 0.5 {print $1}'); do
        echo -n "| $s"
        for k in ours sysfs dumpeth dump floor; do
            echo -n " | $(awk -v s="$s" '$1 == s {print $2}' "$work/sys-$k")"
        done
        echo " |"
    done
    echo -n "| **total**"
    for k in ours sysfs dumpeth dump floor; do
        echo -n " | ${sys_total[$k]} ($(printf '%.2f' "$(calc "${sys_total[$k]} / $scale_n")") per interface)"
    done
    echo " |"
    echo
    echo "Our counts include, once per connection, its accept and thread start; the floors' include their own exec and setup, spread over their passes."
    echo
    echo "### Where a sysfs floor pass goes at $scale_n interfaces ($breakdown_files files, medians of $breakdown_passes passes)"
    echo
    echo "| floor mode | per pass | per file |"
    echo "|---|---|---|"
    echo "| list class/net only | $(ms "${breakdown[list]}") | |"
    local m what
    for m in openclose open openat dirfd pread; do
        case $m in
            openclose) what="open + close, no read" ;;
            open) what="open + read + close (the floor)" ;;
            openat) what="open the interface directory, then openat + read + close" ;;
            dirfd) what="openat from an O_PATH directory fd held across passes + read + close" ;;
            pread) what="list, then pread at 0 on fds held open" ;;
        esac
        echo "| $what | $(ms "${breakdown[$m]}") | $(printf '%.2f' "$(calc "(${breakdown[$m]} - ${breakdown[list]}) / $breakdown_files")") us |"
    done
    echo
    echo "### Raw measurements"
    echo
    echo '```'
    cat "$work/lines"
    grep -E '^Running|Requests/sec|^ +Latency' "$work/wrk"
    echo '```'
    if [[ ${#notes[@]} -gt 0 ]]; then
        echo
        local note
        for note in "${notes[@]}"; do
            echo "Note: $note."
        done
    fi
}

report >"$work/report.md"
cat "$work/report.md"
if [[ -n $out ]]; then
    cp "$work/report.md" "$out"
    log "report written to $out"
fi
