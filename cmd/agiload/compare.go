package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// comparePoint is one concurrency of -compare: the floor and agi.Server
// measured one after the other with the same load.
type comparePoint struct {
	Concurrency int    `json:"concurrency"`
	Floor       report `json:"floor"`
	AGI         report `json:"agi"`
	// RateRatio is agi's sessions/s over the floor's; P99Ratio agi's p99
	// hold over the floor's.
	RateRatio float64 `json:"rate_ratio"`
	P99Ratio  float64 `json:"p99_ratio"`
}

// runCompare starts the floor and the agi server in this process and, for
// each concurrency, runs the same closed loop against one then the other,
// after a short warm-up each, so that both see the same machine state.
// The generator shares the CPUs with the servers: the ratios hold, the
// absolute rates are lower than against a server in its own process.
func runCompare(ctx context.Context, base callConfig, concs []int, count int, d time.Duration, lim agiLimits) ([]comparePoint, error) {
	floor, err := startFloor("127.0.0.1:0", nil)
	if err != nil {
		return nil, err
	}
	defer floor.Close()
	ag, err := startAGI("127.0.0.1:0", lim, nil)
	if err != nil {
		return nil, err
	}
	defer ag.Close()
	run := func(addr string, c int, warm bool) report {
		cc := base
		cc.addr = addr
		cc.idBase = newIDBase(time.Now())
		spec := loadSpec{concurrency: c, count: count, duration: d}
		if warm {
			spec = loadSpec{concurrency: c, count: max(4*c, 200)}
		}
		t, el := runLoad(ctx, &cc, spec)
		return newReport(&cc, spec, t, el)
	}
	var points []comparePoint
	for _, c := range concs {
		run(floor.Addr(), c, true)
		f := run(floor.Addr(), c, false)
		run(ag.Addr(), c, true)
		a := run(ag.Addr(), c, false)
		p := comparePoint{Concurrency: c, Floor: f, AGI: a}
		if f.SessionsPerSec > 0 {
			p.RateRatio = a.SessionsPerSec / f.SessionsPerSec
		}
		if f.HoldMs.P99 > 0 {
			p.P99Ratio = a.HoldMs.P99 / f.HoldMs.P99
		}
		points = append(points, p)
		if ctx.Err() != nil {
			break
		}
	}
	return points, nil
}

func printCompare(w io.Writer, points []comparePoint) {
	fmt.Fprintf(w, "%6s  %12s %10s  %12s %10s  %10s %9s  %s\n", "c", "floor s/s", "floor p99", "agi s/s", "agi p99", "s/s ratio", "p99 ratio", "errors floor/agi")
	for _, p := range points {
		fmt.Fprintf(w, "%6d  %12.0f %8.3fms  %12.0f %8.3fms  %10.2f %9.2f  %d/%d\n", p.Concurrency,
			p.Floor.SessionsPerSec, p.Floor.HoldMs.P99, p.AGI.SessionsPerSec, p.AGI.HoldMs.P99,
			p.RateRatio, p.P99Ratio, p.Floor.errorCount(), p.AGI.errorCount())
	}
}
