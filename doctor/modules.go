package doctor

import (
	"context"
	"fmt"
	"strings"
)

// Module is a module the dialplan examples need: any one of Names loaded
// (e.g. cdr_csv.so or cdr_adaptive_odbc.so) will do.
type Module struct {
	Names []string
	// Why says what breaks without it, in the administrator's words.
	Why string
}

// Needs says which optional parts of the service are configured.
type Needs struct {
	Queues      bool // [queues] has entries
	Reconcile   bool // reconciliation from CDRs is on
	ClickToCall bool // click-to-call through ARI is on
}

// Modules lists the modules the examples need for n.
func Modules(n Needs) []Module {
	m := []Module{
		{Names: []string{"res_agi.so"}, Why: "AGI() itself"},
		{Names: []string{"func_env.so"}, Why: "FILE(), the fallback spool when the service is unreachable"},
		{Names: []string{"func_uri.so"}, Why: "URIENCODE(), the recording link"},
	}
	if n.Queues {
		m = append(m, Module{Names: []string{"app_queue.so"}, Why: "Queue()"})
	}
	if n.Reconcile {
		m = append(m, Module{Names: []string{"cdr_csv.so", "cdr_adaptive_odbc.so"}, Why: "the CDRs reconciliation reads"})
	}
	if n.ClickToCall {
		m = append(m,
			Module{Names: []string{"res_ari.so"}, Why: "ARI, which click-to-call originates through"},
			Module{Names: []string{"res_http_websocket.so"}, Why: "ARI's event socket"})
	}
	return m
}

// CheckModules asks `module show like NAME` for each module.
func CheckModules(ctx context.Context, a Asterisk, mods []Module) []Result {
	var res []Result
	for _, m := range mods {
		check := "module " + strings.Join(m.Names, " or ") + " loaded (" + m.Why + ")"
		var found string
		var err error
		for _, name := range m.Names {
			var out string
			out, err = a.Command(ctx, "module show like "+strings.TrimSuffix(name, ".so"))
			if err != nil {
				break
			}
			if moduleRunning(out, name) {
				found = name
				break
			}
		}
		switch {
		case err != nil:
			res = append(res, skipped(check, err))
		case found != "":
			res = append(res, ok(check, found))
		default:
			res = append(res, fail(check, "not loaded", fmt.Sprintf(
				"in /etc/asterisk/modules.conf add `load = %s` (and remove any `noload = %s`), then run `asterisk -rx 'module load %s'`",
				m.Names[0], m.Names[0], m.Names[0])))
		}
	}
	return res
}

// moduleRunning reads `module show like` output: a line whose first field
// is the module and whose status column says Running.
func moduleRunning(out, name string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name && strings.Contains(line, " Running ") {
			return true
		}
	}
	return false
}
