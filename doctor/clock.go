package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// clockCommand asks Asterisk for the time of day, in UTC. Neither `core
// show sysinfo` nor `core show uptime` gives it; STRFTIME (func_strings)
// does. Not as %s: the C library computes that from the fields in its own
// zone, while Asterisk fills them in its own (seen: 3 hours off with
// TZ=America/Sao_Paulo, with the zone UTC and with none), so the fields
// themselves are read.
const clockCommand = "dialplan eval function STRFTIME(,UTC,%Y-%m-%dT%H:%M:%SZ)"

// CheckClock compares Asterisk's clock with now (the service's host's
// clock when the doctor runs there): call times come from Asterisk, and
// reconciliation matches them against the service's. More than max apart
// is a warning.
func CheckClock(ctx context.Context, a Asterisk, now func() time.Time, max time.Duration) Result {
	check := fmt.Sprintf("Asterisk's clock within %s of this host's", max)
	before := now()
	out, err := a.Command(ctx, clockCommand)
	after := now()
	if err != nil {
		return skipped(check, err)
	}
	var ast time.Time
	for _, line := range strings.Split(out, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), "Result:"); found {
			if t, err := time.Parse(time.RFC3339, strings.TrimSpace(v)); err == nil {
				ast = t
			}
		}
	}
	if ast.IsZero() || strings.Contains(out, "Return Value: Failure") {
		return warn(check, "skipped: Asterisk cannot evaluate STRFTIME()",
			"in /etc/asterisk/modules.conf add `load = func_strings.so`, then `asterisk -rx 'module load func_strings.so'`")
	}
	// Asterisk's second lies within [before, after], give or take the one
	// second the format truncates.
	var skew time.Duration
	switch {
	case ast.Before(before.Add(-time.Second)):
		skew = before.Sub(ast) - time.Second
	case ast.After(after):
		skew = ast.Sub(after)
	}
	if skew > max {
		return warn(check, fmt.Sprintf("%s apart (Asterisk %s, here %s)", skew.Round(time.Second), ast.UTC().Format(time.RFC3339), before.UTC().Format(time.RFC3339)),
			"synchronise both hosts with NTP (chrony or systemd-timesyncd; `timedatectl` shows whether it is on)")
	}
	return ok(check, "")
}
