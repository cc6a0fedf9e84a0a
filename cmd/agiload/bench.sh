#!/bin/sh
# Reproduces BENCHMARKS.md: the floor, agi.Server and the service's transfer
# route end to end, each in a process of its own, at each concurrency, then
# the plot. Loopback only (127.0.0.1:14570-14579). Usage, from the
# repository's root:
#   sh cmd/agiload/bench.sh [OUTDIR] [SECONDS]
# It needs gnuplot for the plot (apt-get install gnuplot-nox); without it the
# table is still written.
set -eu
out=${1:-bench-out}
secs=${2:-5}
concs="1 10 50 200"
mkdir -p "$out"
out=$(cd "$out" && pwd)
go build -o "$out/agiload" ./cmd/agiload
go build -o "$out/movidesk-agi" ./cmd/movidesk-agi
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# started KIND ADDR: the pid of a server started in the background.
start() {
	"$out/agiload" -serve "$1" -listen "$2" ${3:-} >"$out/$1.log" 2>&1 &
	pids="$pids $!"
	until grep -q listening "$out/$1.log"; do sleep 0.1; done
	sed -n 's/.* pid \([0-9]*\)$/\1/p' "$out/$1.log"
}

# load NAME ADDR PID ARGS...: one closed-loop run per concurrency, a line each.
load() {
	name=$1 addr=$2 pid=$3
	shift 3
	"$out/agiload" -addr "$addr" -c 10 -n 2000 "$@" >/dev/null # warm-up
	for c in $concs; do
		"$out/agiload" -addr "$addr" -c "$c" -d "${secs}s" -pid "$pid" -json "$@" >"$out/$name-$c.json"
		printf '%s\t%s\t%s\t%s\n' "$name" "$c" \
			"$(sed -n 's/.*"sessions_per_s": \([0-9.]*\).*/\1/p' "$out/$name-$c.json")" \
			"$(sed -n '/"hold_ms"/,/}/s/.*"p99": \([0-9.]*\).*/\1/p' "$out/$name-$c.json")" >>"$out/results.tsv"
	done
}

: >"$out/results.tsv"
floor=$(start floor 127.0.0.1:14570)
load floor 127.0.0.1:14570 "$floor"
agi=$(start agi 127.0.0.1:14571)
load agi 127.0.0.1:14571 "$agi"

# The route: the service against a stand-in Movidesk answering at once,
# with a limit no run reaches (10,000 a second) and the store on this disk.
start movidesk 127.0.0.1:14572 >/dev/null
rm -rf "$out/service" && mkdir -p "$out/service"
cat >"$out/service/config.toml" <<CONF
[server]
listen = "127.0.0.1:14573"
max_sessions = 1000
max_sessions_per_address = -1
[movidesk]
base_url = "http://127.0.0.1:14572/public/v1"
token = "00000000-0000-4000-8000-000000000000"
rate_per_minute = 600000
[store]
path = "$out/service/outbox.db"
spool = "$out/service/fallback.log"
[admin]
listen = "127.0.0.1:14574"
CONF
"$out/movidesk-agi" serve -config "$out/service/config.toml" 2>"$out/service/log.json" &
svc=$!
pids="$pids $svc"
until grep -q '"movidesk-agi started"' "$out/service/log.json"; do sleep 0.1; done
load route 127.0.0.1:14573 "$svc" -script transfer -arg queue=2 -arg branch=5252

# Ratios to the floor measured in this run.
awk -F'\t' '$1 == "floor" { f[$2] = $3 } { print $0 "\t" sprintf("%.2f", $3 / f[$2]) }' "$out/results.tsv" >"$out/table.tsv"
printf 'server\tconcurrency\tsessions/s\tp99 ms\tvs floor\n'
cat "$out/table.tsv"

if command -v gnuplot >/dev/null; then
	gnuplot <<PLOT
set terminal pngcairo size 1000,420 font ",10"
set output "$out/bench.png"
set multiplot layout 1,2
set logscale x
set xtics (1, 10, 50, 200)
set xlabel "concurrent sessions"
set key left top
set title "throughput"
set ylabel "sessions/s"
plot for [s in "floor agi route"] "< grep ^".s." $out/table.tsv" using 2:3 with linespoints title s
set title "hold time p99"
set ylabel "ms"
set logscale y
plot for [s in "floor agi route"] "< grep ^".s." $out/table.tsv" using 2:4 with linespoints title s
unset multiplot
PLOT
	echo "plot: $out/bench.png"
fi
