#!/bin/sh
# Reproduces docs/benchmarks.md: the floor, agi.Server and the service's transfer
# route end to end, each in a process of its own, at each concurrency, then
# the plot. Loopback only (127.0.0.1:14570-14579). Usage, from the
# repository's root:
#   sh cmd/agiload/bench.sh [OUTDIR] [SECONDS] [ROUNDS]
# At each concurrency the three servers take turns, ROUNDS times (3), and
# each figure is the median of its rounds: a ratio compares runs made
# within seconds of each other, which the machine's drift cannot skew.
# It needs gnuplot for the plot (apt-get install gnuplot-nox); without it the
# table is still written.
set -eu
out=${1:-bench-out}
secs=${2:-5}
rounds=${3:-3}
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
	p=$!
	pids="$pids $p"
	until grep -q listening "$out/$1.log"; do
		if ! kill -0 "$p" 2>/dev/null; then
			echo "bench.sh: $1 did not start:" >&2
			cat "$out/$1.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	sed -n 's/.* pid \([0-9]*\)$/\1/p' "$out/$1.log"
}

# once NAME C ADDR PID ARGS...: one closed-loop run, a line of raw.tsv.
once() {
	name=$1 c=$2 addr=$3 pid=$4
	shift 4
	"$out/agiload" -addr "$addr" -c "$c" -d "${secs}s" -pid "$pid" -json "$@" >"$out/$name-$c.json"
	printf '%s\t%s\t%s\t%s\n' "$name" "$c" \
		"$(sed -n 's/.*"sessions_per_s": \([0-9.]*\).*/\1/p' "$out/$name-$c.json")" \
		"$(sed -n '/"hold_ms"/,/}/s/.*"p99": \([0-9.]*\).*/\1/p' "$out/$name-$c.json")" >>"$out/raw.tsv"
}

floor=$(start floor 127.0.0.1:14570)
agi=$(start agi 127.0.0.1:14571)

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
route="-script transfer -arg queue=2 -arg branch=5252"

for addr in 127.0.0.1:14570 127.0.0.1:14571; do
	"$out/agiload" -addr "$addr" -c 10 -n 2000 >/dev/null # warm-up
done
# shellcheck disable=SC2086 # $route is words
"$out/agiload" -addr 127.0.0.1:14573 -c 10 -n 2000 $route >/dev/null
: >"$out/raw.tsv"
for c in $concs; do
	i=0
	while [ "$i" -lt "$rounds" ]; do
		once floor "$c" 127.0.0.1:14570 "$floor"
		once agi "$c" 127.0.0.1:14571 "$agi"
		# shellcheck disable=SC2086
		once route "$c" 127.0.0.1:14573 "$svc" $route
		i=$((i + 1))
	done
done
# The median of each server's rounds at each concurrency: rate and p99.
sort -t "$(printf '\t')" -k1,1 -k2,2n -k3,3n "$out/raw.tsv" | awk -F'\t' -v OFS='\t' '
	{ k = $1 OFS $2; n[k]++; r[k, n[k]] = $3; p[k, n[k]] = $4; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
	END { for (i = 1; i <= m; i++) { k = order[i]; j = int((n[k] + 1) / 2); print k, r[k, j], p[k, j] } }' >"$out/results.tsv"

# Ratios to the floor measured in this run.
awk -F'\t' 'NR == FNR { if ($1 == "floor") f[$2] = $3; next } { print $0 "\t" sprintf("%.2f", $3 / f[$2]) }' \
	"$out/results.tsv" "$out/results.tsv" >"$out/ratios.tsv"
for s in floor agi route; do grep "^$s	" "$out/ratios.tsv"; done >"$out/table.tsv"
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
