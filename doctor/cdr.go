package doctor

import (
	"context"
	"strings"
)

// CDRStatus is what `cdr show status` says.
type CDRStatus struct {
	Enabled    bool
	Batch      bool
	Unanswered bool
	Backends   []string
}

// ParseCDRStatus reads the output of `cdr show status` (Asterisk 22).
func ParseCDRStatus(out string) CDRStatus {
	var s CDRStatus
	inBackends := false
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "* ") {
			inBackends = t == "* Registered Backends"
			continue
		}
		if inBackends {
			if t != "" && !strings.HasPrefix(t, "---") && t != "(none)" {
				s.Backends = append(s.Backends, t)
			}
			continue
		}
		k, v, found := strings.Cut(t, ":")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Logging":
			s.Enabled = v == "Enabled"
		case "Mode":
			s.Batch = v == "Batch"
		case "Log unanswered calls":
			s.Unanswered = v == "Yes"
		}
	}
	return s
}

// CheckCDR checks the CDR options reconciliation relies on: CDRs on,
// written at once (a batch is lost when Asterisk dies), unanswered calls
// kept, and a backend registered. newcdrcolumns is not shown by the CLI:
// it is for a check that reads cdr.conf.
func CheckCDR(ctx context.Context, a Asterisk) []Result {
	const check = "CDR settings for reconciliation"
	out, err := a.Command(ctx, "cdr show status")
	if err != nil {
		return []Result{skipped(check, err)}
	}
	if !strings.Contains(out, "Call Detail Record (CDR) settings") {
		return []Result{fail(check, "unexpected answer: "+firstLine(out), "load the CDR engine: in /etc/asterisk/cdr.conf [general] set `enable = yes`, then `asterisk -rx 'module reload cdr'`")}
	}
	s := ParseCDRStatus(out)
	var res []Result
	if s.Enabled {
		res = append(res, ok("CDR logging enabled", ""))
	} else {
		res = append(res, fail("CDR logging enabled", "disabled", "in /etc/asterisk/cdr.conf [general] set `enable = yes`, then `asterisk -rx 'module reload cdr'`"))
	}
	if s.Batch {
		res = append(res, warn("CDRs written at once", "batch mode: records wait in memory and are lost if Asterisk stops abruptly",
			"in /etc/asterisk/cdr.conf [general] set `batch = no` (or keep it and set reconcile's settle longer than `time`), then `asterisk -rx 'module reload cdr'`"))
	} else {
		res = append(res, ok("CDRs written at once", "simple mode"))
	}
	if s.Unanswered {
		res = append(res, ok("CDRs of unanswered calls kept", ""))
	} else {
		res = append(res, warn("CDRs of unanswered calls kept", "Log unanswered calls: No, so missed calls leave no record",
			"in /etc/asterisk/cdr.conf [general] set `unanswered = yes`, then `asterisk -rx 'module reload cdr'`"))
	}
	if len(s.Backends) > 0 {
		res = append(res, ok("CDR backend registered", strings.Join(s.Backends, ", ")))
	} else {
		res = append(res, fail("CDR backend registered", "none",
			"add a `[csv]` section to /etc/asterisk/cdr.conf (cdr_csv) or a table to /etc/asterisk/cdr_adaptive_odbc.conf, load that module, then `asterisk -rx 'module reload cdr'`"))
	}
	return res
}
