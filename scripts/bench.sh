#!/usr/bin/env bash
# Benchmarks interfaces_exporter side by side with node_exporter's netclass collector and with
# the sysfs floor (scripts/bench/floor.rs), and prints a markdown report with the goals of
# issue 6 marked pass or fail.
#
# Usage: scripts/bench.sh [--quick] [--out FILE]
#   --quick     fewer rounds and shorter loads: a smoke run of a minute or so, not for the README
#   --out FILE  also write the report to FILE
#
# It runs as root (namespaces, veth pairs, strace), installs what it lacks with apt-get, and
# sends traffic only to loopback, on the host and inside a namespace of its own, which it
# deletes on exit together with every process it started.
#
# What it measures, all in one run so the ratios compare like with like:
#   1. scale: 1000 interfaces (500 veth pairs, half of the pairs up, plus lo) in a namespace;
#      median scrape latency over one kept-alive connection, ours against node_exporter
#      (default sysfs mode, not --collector.netclass.netlink) and against the floor program,
#      which only lists class/net and opens, reads and closes the same files. The three take
#      turns, one scrape or pass each, and a ratio is the median of the paired ratios, so
#      whatever else the machine does (this one is shared) slows both sides of a ratio alike.
#   2. throughput: requests/s under `wrk -t2 -c16` on the host's own interfaces.
#   3. footprint: peak RSS (VmHWM) of each exporter after each load, the static binary's size,
#      and the time from spawn to the end of the first complete 200 response.
#   4. growth: our latency and the floor's at 10, 100, 1000 and 2000 interfaces.
#   and syscalls per scrape (strace -c -f) at 1000 interfaces, ours against the floor's.
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

# --- Cleanup ------------------------------------------------------------------------------

ns=ifxbench$$
ns_made=false
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

# start NAME NS PORT: starts ours or the peer in NS (empty: host) on 127.0.0.1:PORT, waits until
# it answers, and sets $started to its pid (ip netns exec execs, so the pid is the exporter's).
start() {
    local name=$1 where=$2 port=$3 cmd
    case "$name" in
        ours) cmd=("$bin" "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
        peer) cmd=("$peer" --collector.disable-defaults --collector.netclass
            "--web.listen-address=127.0.0.1:$port" --path.sysfs=/sys) ;;
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
rotate() {
    local where=$1 n=$2 out line key
    shift 2
    out=$(in_ns "$where" "$floor" scrape "$@" --requests "$n" --warmup 1)
    echo "$out" >>"$work/lines"
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

# --- 2 and 3: throughput and footprint on the host ------------------------------------------

# These run first, before the namespace exists: with 2000 veth devices present, even in another
# namespace, the exporter's time to first scrape on the host went from about 1.2 ms to 1.8-3.7 ms
# on the 2-core test machine.

log "throughput on the host: $tp_rounds rounds of wrk -t2 -c16 -d${tp_secs}s each"
host_ifaces=$(ls /sys/class/net | wc -l)
p1=$(free_port)
start ours "" "$p1"
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

# --- 1 and 4: scale and growth, in one namespace that grows ---------------------------------

ip netns add "$ns"
ns_made=true
ip -n "$ns" link set lo up
ours_port=9425
peer_port=9100
start ours "$ns" "$ours_port"
ours_ns=$started

declare -A growth_ours growth_floor growth_ratio growth_n
pairs=0
for target_pairs in 5 50 500 1000; do
    log "growth: $((target_pairs * 2)) interfaces"
    add_pairs "$pairs" "$target_pairs"
    pairs=$target_pairs
    n=$(count_ifaces)
    growth_n[$target_pairs]=$n
    # About 3 s of scraping per round and side, at most 200 scrapes.
    per=$((3000000 / (n * 110 + 1000)))
    ((per < 5)) && per=5
    ((per > 200)) && per=200
    $quick && per=$(((per + 3) / 4))
    o=() f=() g=()
    for ((r = 0; r < growth_rounds; r++)); do
        rotate "$ns" "$per" "ours=http://127.0.0.1:$ours_port/metrics" floor
        o+=("${med[ours]}") f+=("${med[floor]}") g+=("${ratio[ours/floor]}")
    done
    growth_ours[$target_pairs]=$(printf '%s\n' "${o[@]}" | median)
    growth_floor[$target_pairs]=$(printf '%s\n' "${f[@]}" | median)
    growth_ratio[$target_pairs]=$(printf '%s\n' "${g[@]}" | median)

    if ((target_pairs != 500)); then
        continue
    fi

    log "scale: $n interfaces, $rounds rounds"
    start peer "$ns" "$peer_port"
    peer_ns=$started
    so=() sf=() sp=() r_peer=() r_floor=()
    for ((r = 0; r < rounds; r++)); do
        t_ours=$(cpu_ticks "$ours_ns")
        t_peer=$(cpu_ticks "$peer_ns")
        rotate "$ns" "$scale_n_req" "ours=http://127.0.0.1:$ours_port/metrics" floor \
            "peer=http://127.0.0.1:$peer_port/metrics"
        cpu_add ours "$ours_ns" "$t_ours" $((scale_n_req + 1))
        cpu_add peer "$peer_ns" "$t_peer" $((scale_n_req + 1))
        so+=("${med[ours]}") sf+=("${med[floor]}") sp+=("${med[peer]}")
        r_peer+=("${ratio[peer/ours]}")
        r_floor+=("${ratio[ours/floor]}")
        log "  round $((r + 1)): ours $(ms "${med[ours]}"), floor $(ms "${med[floor]}"), node_exporter $(ms "${med[peer]}")"
    done
    scale_n=$n
    scale_ours_us=$(printf '%s\n' "${so[@]}" | median)
    scale_floor_us=$(printf '%s\n' "${sf[@]}" | median)
    scale_peer_us=$(printf '%s\n' "${sp[@]}" | median)
    ratio_peer=$(printf '%s\n' "${r_peer[@]}" | median)
    ratio_floor=$(printf '%s\n' "${r_floor[@]}" | median)
    spread_ours="$(printf '%s\n' "${so[@]}" | sort -g | head -1)..$(printf '%s\n' "${so[@]}" | sort -g | tail -1)"
    spread_floor="$(printf '%s\n' "${sf[@]}" | sort -g | head -1)..$(printf '%s\n' "${sf[@]}" | sort -g | tail -1)"
    spread_peer="$(printf '%s\n' "${sp[@]}" | sort -g | head -1)..$(printf '%s\n' "${sp[@]}" | sort -g | tail -1)"
    hwm_ours_1000=$(hwm_kib "$ours_ns")
    hwm_peer_1000=$(hwm_kib "$peer_ns")
    # Descriptors held between scrapes: each sysfs file kept open and once read pins about
    # 5.6 KiB of kernel memory (its seq_file page and bookkeeping), which VmHWM does not show.
    fds_ours_1000=$(ls "/proc/$ours_ns/fd" | wc -l)
    fds_peer_1000=$(ls "/proc/$peer_ns/fd" | wc -l)
    stop "$peer_ns"

    # Where a pass goes: listing alone, open+close, open+read+close, and two access patterns
    # the exporter could use instead.
    log "floor breakdown at $n interfaces"
    declare -A breakdown
    for mode in list openclose open openat dirfd pread; do
        breakdown[$mode]=$(floor_us "$ns" "$breakdown_passes" "$mode")
    done
    breakdown_files=$(in_ns "$ns" "$floor" scan --passes 1 --warmup 0 | field files)

    log "syscalls: strace over $strace_scrapes scrapes"
    strace -c -f -p "$ours_ns" -o "$work/strace-ours" 2>"$work/strace-ours.err" &
    strace_pid=$!
    pids+=("$strace_pid")
    deadline=$((SECONDS + 10))
    until grep -q attached "$work/strace-ours.err" 2>/dev/null; do
        ((SECONDS < deadline)) || { echo "bench.sh: strace did not attach" >&2; exit 1; }
        sleep 0.05
    done
    in_ns "$ns" "$floor" scrape "http://127.0.0.1:$ours_port/metrics" \
        --requests "$strace_scrapes" --warmup 0 >/dev/null
    kill -INT "$strace_pid"
    wait "$strace_pid" 2>/dev/null || true
    forget "$strace_pid"
    in_ns "$ns" strace -c -f -o "$work/strace-floor" \
        "$floor" scan --passes "$strace_scrapes" --warmup 0 >/dev/null
done
stop "$ours_ns"

# strace_table FILE N: "syscall calls-per-N" lines, most frequent first, from strace -c output.
strace_table() {
    awk -v n="$2" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            printf "%s %.1f\n", $NF, $4 / n
        }' "$1" | sort -k2 -g -r
}
strace_table "$work/strace-ours" "$strace_scrapes" >"$work/sys-ours"
strace_table "$work/strace-floor" "$strace_scrapes" >"$work/sys-floor"
sys_total_ours=$(awk '{s += $2} END {printf "%.0f", s}' "$work/sys-ours")
sys_total_floor=$(awk '{s += $2} END {printf "%.0f", s}' "$work/sys-floor")

# --- Report -------------------------------------------------------------------------------

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
version_ours=$("$bin" --version 2>&1 | head -1)
version_peer=$("$peer" --version 2>&1 | head -1 | sed 's/ *(.*//')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit="$commit+uncommitted"

report() {
    echo "## Benchmark: interfaces_exporter vs node_exporter netclass vs the sysfs floor"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $(nproc) cores, $cpu, kernel $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, load average $load_at_start at start"
    echo "- ours: $version_ours (commit $commit), $bin"
    echo "- peer: $version_peer, \`--collector.disable-defaults --collector.netclass\` (sysfs mode)"
    echo "- command: \`$command_line\`$($quick && echo ' (quick: too few repetitions for the README)')"
    echo
    echo "| figure | ours | peer | ratio | goal | result |"
    echo "|---|---|---|---|---|---|"
    echo "| scrape at $scale_n interfaces, node_exporter / ours | $(ms "$scale_ours_us") | $(ms "$scale_peer_us") | $(x "$ratio_peer") | >= 6x | $(verdict "$ratio_peer" ">=" 6) |"
    echo "| scrape at $scale_n interfaces, ours / open+read+close floor | $(ms "$scale_ours_us") | floor $(ms "$scale_floor_us") | $(x "$ratio_floor") | <= 1.1x | $(verdict "$ratio_floor" "<=" 1.1) |"
    echo "| requests per second on the host ($host_ifaces interfaces), ours / node_exporter | $(printf '%.0f' "$tp_ours")/s | $(printf '%.0f' "$tp_peer")/s | $(x "$ratio_tp") | >= 10x | $(verdict "$ratio_tp" ">=" 10) |"
    echo "| peak RSS under wrk on the host | $(mib "$hwm_ours_host") | $(mib "$hwm_peer_host") | $(x "$(calc "$hwm_peer_host / $hwm_ours_host")") smaller | <= 1 MiB | $(verdict "$hwm_ours_host" "<=" 1024) |"
    echo "| peak RSS scraping $scale_n interfaces | $(mib "$hwm_ours_1000") | $(mib "$hwm_peer_1000") | $(x "$(calc "$hwm_peer_1000 / $hwm_ours_1000")") smaller | <= 2 MiB | $(verdict "$hwm_ours_1000" "<=" 2048) |"
    echo "| open descriptors after scraping $scale_n interfaces | $fds_ours_1000 | $fds_peer_1000 | | none; about 5.6 KiB of kernel memory per sysfs file held open and read | info |"
    echo "| static binary | $(kib "$size_ours") | $(kib "$size_peer") | $(x "$(calc "$size_peer / $size_ours")") smaller | <= 640 KiB | $(verdict "$size_ours" "<=" 655360) |"
    echo "| exec to first successful scrape | $(ms "$startup_ours_us") | $(ms "$startup_peer_us") | $(x "$(calc "$startup_peer_us / $startup_ours_us")") faster | <= 5 ms | $(verdict "$startup_ours_us" "<=" 5000) |"
    echo
    echo "Latency is the median over $rounds rounds of each round's median; a round is $scale_n_req turns of one scrape of ours, one floor pass and one scrape of node_exporter (each exporter on one kept-alive connection), and a round's ratio is the median of its $scale_n_req paired ratios; the ratio shown is the median of the rounds' ratios. Round medians ranged: ours $(ms "${spread_ours%..*}")..$(ms "${spread_ours#*..}"), floor $(ms "${spread_floor%..*}")..$(ms "${spread_floor#*..}"), node_exporter $(ms "${spread_peer%..*}")..$(ms "${spread_peer#*..}"). Throughput is the median of $tp_rounds rounds of \`wrk -t2 -c16 -d${tp_secs}s\` each. Peak RSS is VmHWM after the load. Startup is the median of $startup_ours runs (node_exporter: $startup_peer) from spawn to the last byte of the first 200 response, polling every 50 us."
    echo
    echo "### CPU per scrape at $scale_n interfaces"
    echo
    echo "| exporter | user | system | total |"
    echo "|---|---|---|---|"
    local who label
    for who in ours peer; do
        [[ $who == ours ]] && label=interfaces_exporter || label=node_exporter
        echo "| $label | $(ms "$(calc "${cpu_user[$who]} * $tick_us / ${cpu_requests[$who]}")") | $(ms "$(calc "${cpu_sys[$who]} * $tick_us / ${cpu_requests[$who]}")") | $(ms "$(calc "(${cpu_user[$who]} + ${cpu_sys[$who]}) * $tick_us / ${cpu_requests[$who]}")") |"
    done
    echo
    echo "From utime and stime in /proc/PID/stat over the scale rounds (${cpu_requests[ours]} and ${cpu_requests[peer]} scrapes), at the kernel's $(getconf CLK_TCK) Hz tick. System time is the kernel opening, reading and closing sysfs files; user time is parsing, rendering and HTTP (or, for node_exporter, also the Go runtime and its garbage collector)."
    echo
    echo "### Growth: scrape latency against interfaces"
    echo
    echo "| interfaces | ours | floor | ours / floor | ours per interface | floor per interface |"
    echo "|---|---|---|---|---|---|"
    local k n
    for k in 5 50 500 1000; do
        n=${growth_n[$k]}
        echo "| $n | $(ms "${growth_ours[$k]}") | $(ms "${growth_floor[$k]}") | $(x "${growth_ratio[$k]}") | $(printf '%.1f' "$(calc "${growth_ours[$k]} / $n")") us | $(printf '%.1f' "$(calc "${growth_floor[$k]} / $n")") us |"
    done
    echo
    echo "Medians of $growth_rounds round(s) of alternating scrapes and floor passes (the ratio is paired as above), in a namespace that grows from 5 to 1000 veth pairs (the interface count includes lo); the 1000-interface row is measured apart from the scale rounds above."
    echo
    echo "### Syscalls per scrape at $scale_n interfaces (strace -c -f, $strace_scrapes scrapes)"
    echo
    echo "| syscall | ours per scrape | floor per pass |"
    echo "|---|---|---|"
    local s
    for s in $(cat "$work/sys-ours" "$work/sys-floor" | awk '!seen[$1]++ && $2 >= 0.5 {print $1}'); do
        echo "| $s | $(awk -v s="$s" '$1 == s {print $2}' "$work/sys-ours") | $(awk -v s="$s" '$1 == s {print $2}' "$work/sys-floor") |"
    done
    echo "| **total** | $sys_total_ours ($(printf '%.1f' "$(calc "$sys_total_ours / $scale_n")") per interface) | $sys_total_floor ($(printf '%.1f' "$(calc "$sys_total_floor / $scale_n")") per interface) |"
    echo
    echo "Ours counts include, once per connection, its accept and thread start; the floor's include its own exec and setup, spread over its passes."
    echo
    echo "### Where a floor pass goes at $scale_n interfaces ($breakdown_files files, medians of $breakdown_passes passes)"
    echo
    echo "| floor mode | per pass | per file |"
    echo "|---|---|---|"
    echo "| list class/net only | $(ms "${breakdown[list]}") | |"
    local m
    for m in openclose open openat dirfd pread; do
        case $m in
            openclose) label="open + close, no read" ;;
            open) label="open + read + close (the floor)" ;;
            openat) label="open the interface directory, then openat + read + close" ;;
            dirfd) label="openat from an O_PATH directory fd held across passes + read + close" ;;
            pread) label="list, then pread at 0 on fds held open" ;;
        esac
        echo "| $label | $(ms "${breakdown[$m]}") | $(printf '%.2f' "$(calc "(${breakdown[$m]} - ${breakdown[list]}) / $breakdown_files")") us |"
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
