package doctor

import (
	"context"
	"fmt"
	"strings"
)

// CheckContext asks `dialplan show CONTEXT` and checks that the context is
// loaded and calls the service's routes: for each route, an AGI() whose
// URL ends in /ROUTE (the examples write AGI(${MOVIDESK_AGI}/ROUTE,...),
// which the CLI shows unexpanded). With no routes, any AGI() will do.
func CheckContext(ctx context.Context, a Asterisk, context string, routes ...string) Result {
	check := "dialplan context [" + context + "] calls movidesk-agi"
	if len(routes) > 0 {
		check += " (" + strings.Join(routes, ", ") + ")"
	}
	out, loaded, err := showContext(ctx, a, context)
	if err != nil {
		return skipped(check, err)
	}
	if !loaded {
		return fail(check, "context not loaded", fmt.Sprintf(
			"define [%s] in /etc/asterisk/extensions.conf (on FreePBX: extensions_custom.conf), or #include the example that does, then run `asterisk -rx 'dialplan reload'`", context))
	}
	var agis []string
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "AGI("); i >= 0 {
			agis = append(agis, line[i:])
		}
	}
	if len(routes) == 0 {
		if len(agis) == 0 {
			return fail(check, "no AGI() in it", fmt.Sprintf(
				"add `same => n,AGI(${MOVIDESK_AGI}/ROUTE)` to [%s] (see dialplan-examples), then run `asterisk -rx 'dialplan reload'`", context))
		}
		return ok(check, "")
	}
	var missing []string
	for _, r := range routes {
		if !callsRoute(agis, r) {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return fail(check, "no AGI() to "+strings.Join(missing, ", "), fmt.Sprintf(
			"add `same => n,AGI(${MOVIDESK_AGI}/%s)` to [%s] (see dialplan-examples), then run `asterisk -rx 'dialplan reload'`", missing[0], context))
	}
	return ok(check, "")
}

// showContext asks `dialplan show NAME`; loaded is false when Asterisk
// has no such context.
func showContext(ctx context.Context, a Asterisk, name string) (out string, loaded bool, err error) {
	out, err = a.Command(ctx, "dialplan show "+name)
	if err != nil {
		return "", false, err
	}
	return out, !strings.Contains(out, "There is no existence of") && strings.Contains(out, "[ Context '"+name+"'"), nil
}

func callsRoute(agis []string, route string) bool {
	for _, a := range agis {
		// The URL is AGI's first argument: up to a comma or the closing
		// parenthesis.
		url := strings.TrimPrefix(a, "AGI(")
		if i := strings.IndexAny(url, ",)"); i >= 0 {
			url = url[:i]
		}
		if strings.HasSuffix(url, "/"+route) || strings.Contains(url, "/"+route+"?") {
			return true
		}
	}
	return false
}
