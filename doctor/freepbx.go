package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// FreePBX (and Issabel) generate their dialplan; dialplan-examples/freepbx/
// fills the hooks they leave instead. These checks ask Asterisk whether
// each hook is in place, as `dialplan show` and `dialplan show globals`
// print them.

// The snippet's contexts the checks and the test call name.
const (
	// FreePBXEntry is the trunks' context: it marks the call and pushes
	// the hangup handler, then goes on to from-pstn.
	FreePBXEntry = "movidesk-freepbx-from-pstn"
	// FreePBXQueueAnswered is what QGOSUB must name.
	FreePBXQueueAnswered = "movidesk-freepbx-queue-answered"
)

// freepbxSnippet is the fix of a hook missing from the dialplan.
const freepbxSnippet = "append dialplan-examples/freepbx/extensions_custom.conf (FreePBX 16 and Issabel: extensions_custom-macro.conf) to /etc/asterisk/extensions_custom.conf, then `fwconsole reload` (Issabel: Apply Config)"

// DetectFreePBX tells whether Asterisk runs a FreePBX-shaped dialplan:
// FreePBX's from-pstn, or the snippet's trunk context, is loaded.
func DetectFreePBX(ctx context.Context, a Asterisk) (bool, error) {
	for _, name := range []string{"from-pstn", FreePBXEntry} {
		_, loaded, err := showContext(ctx, a, name)
		if err != nil {
			return false, err
		}
		if loaded {
			return true, nil
		}
	}
	return false, nil
}

// CheckFreePBX checks the snippet's hooks: the trunks' context, the hangup
// handler it pushes, the routes the hooks call, QGOSUB, the predial hooks
// (and that they end as FreePBX calls them), and the trunks' contexts.
func CheckFreePBX(ctx context.Context, a Asterisk) []Result {
	res := []Result{
		checkHolds(ctx, a, FreePBXEntry, "the trunks' context ["+FreePBXEntry+"] marks each call and goes on to from-pstn",
			"Gosub(movidesk-freepbx-inbound,", "Goto(from-pstn,"),
		checkHolds(ctx, a, "movidesk-freepbx-inbound", "[movidesk-freepbx-inbound] pushes the hangup handler [movidesk-freepbx-hangup]",
			"hangup_handler_push)=movidesk-freepbx-hangup,"),
		freepbxRoute(ctx, a, "movidesk-freepbx-hangup", "hangup"),
		freepbxRoute(ctx, a, FreePBXQueueAnswered, "transfer"),
		freepbxRoute(ctx, a, "movidesk-freepbx-answered", "transfer"),
		CheckQGOSUB(ctx, a),
	}
	res = append(res, checkPredialHooks(ctx, a)...)
	return append(res, CheckTrunks(ctx, a))
}

// checkHolds checks that context is loaded and holds each of steps, as
// `dialplan show` prints them (variables unexpanded).
func checkHolds(ctx context.Context, a Asterisk, context, check string, steps ...string) Result {
	out, loaded, err := showContext(ctx, a, context)
	switch {
	case err != nil:
		return skipped(check, err)
	case !loaded:
		return fail(check, "context not loaded", freepbxSnippet)
	}
	var missing []string
	for _, s := range steps {
		if !strings.Contains(out, s) {
			missing = append(missing, s+"...")
		}
	}
	if len(missing) > 0 {
		return fail(check, "no "+strings.Join(missing, ", no ")+" in it: it is not the snippet's", "replace it with the snippet's: "+freepbxSnippet)
	}
	return ok(check, "")
}

// freepbxRoute is CheckContext with the snippet as the fix.
func freepbxRoute(ctx context.Context, a Asterisk, context, route string) Result {
	r := CheckContext(ctx, a, context, route)
	if r.Status == Fail {
		r.Fix = freepbxSnippet
	}
	return r
}

// Globals reads `dialplan show globals`: each line NAME=value.
func Globals(ctx context.Context, a Asterisk) (map[string]string, error) {
	out, err := a.Command(ctx, "dialplan show globals")
	if err != nil {
		return nil, err
	}
	g := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "--") {
			continue
		}
		if k, v, found := strings.Cut(line, "="); found && k != "" && !strings.ContainsAny(k, " \t") {
			g[k] = v
		}
	}
	return g, nil
}

// CheckQGOSUB checks that the QGOSUB global runs the snippet's queue hook,
// which FreePBX passes to every Queue(): directly, or through a context of
// the administrator's that calls it.
func CheckQGOSUB(ctx context.Context, a Asterisk) Result {
	const check = "the QGOSUB global runs [" + FreePBXQueueAnswered + "] when a queue member answers"
	const fix = "add `QGOSUB=" + FreePBXQueueAnswered + "` to /etc/asterisk/globals_custom.conf (see dialplan-examples/freepbx/globals_custom.conf), then `fwconsole reload`"
	g, err := Globals(ctx, a)
	if err != nil {
		return skipped(check, err)
	}
	v := g["QGOSUB"]
	switch {
	case v == FreePBXQueueAnswered:
		return ok(check, "")
	case v == "":
		return fail(check, "QGOSUB is not set: no answer of a queue call is reported", fix)
	}
	// Another hook of the administrator's: fine if it calls the snippet's.
	out, loaded, err := showContext(ctx, a, v)
	if err != nil {
		return skipped(check, err)
	}
	if loaded && strings.Contains(out, "Gosub("+FreePBXQueueAnswered+",") {
		return ok(check, "through ["+v+"]")
	}
	return fail(check, "QGOSUB="+v+", which does not call ["+FreePBXQueueAnswered+"]",
		"set QGOSUB to "+FreePBXQueueAnswered+" in /etc/asterisk/globals_custom.conf, or add `same => n,Gosub("+FreePBXQueueAnswered+",s,1)` to ["+v+"] before its Return(), then `fwconsole reload`")
}

// predialHooks are FreePBX's hooks before a Dial to an extension, a ring
// group and a hunt, and the generated context that calls each.
var predialHooks = []struct{ name, caller, call string }{
	{"macro-dialout-one-predial-hook", "macro-dial-one", "dialout-one-predial-hook"},
	{"macro-dial-ringall-predial-hook", "macro-dial", "dial-ringall-predial-hook"},
	{"macro-dial-hunt-predial-hook", "macro-dial", "dial-hunt-predial-hook"},
}

// checkPredialHooks checks that each predial hook is the snippet's, not
// FreePBX's empty stub, and that it ends as FreePBX calls it: Return()
// after Gosub (FreePBX 17), MacroExit() after Macro (FreePBX 16, Issabel).
func checkPredialHooks(ctx context.Context, a Asterisk) []Result {
	callers := map[string]string{}
	var res []Result
	for _, h := range predialHooks {
		check := "predial hook [" + h.name + "] adds U(movidesk-freepbx-answered) to FreePBX's Dial"
		out, loaded, err := showContext(ctx, a, h.name)
		if err != nil {
			res = append(res, skipped(check, err))
			continue
		}
		if !loaded {
			res = append(res, warn(check, "FreePBX has no such hook here: answers of calls to extensions and ring groups are not reported",
				"check `asterisk -rx 'dialplan show "+h.caller+"'` for a "+h.call+" line (docs/freepbx.md, Issabel), then "+freepbxSnippet))
			continue
		}
		if !strings.Contains(out, "Gosub(movidesk-freepbx-dial-options,") {
			res = append(res, fail(check, "FreePBX's empty stub is in place: the snippet's hook is not loaded", freepbxSnippet))
			continue
		}
		style, found := callers[h.caller]
		if !found {
			style = callStyle(ctx, a, h.caller, h.call)
			callers[h.caller] = style
		}
		endsMacro := strings.Contains(out, "MacroExit(")
		switch {
		case style == "Macro" && !endsMacro:
			res = append(res, fail(check, "it ends with Return() but FreePBX calls it with Macro() (FreePBX 16, Issabel): calls through it fail",
				"use dialplan-examples/freepbx/extensions_custom-macro.conf instead of extensions_custom.conf in /etc/asterisk/extensions_custom.conf, then `fwconsole reload`"))
		case style == "Gosub" && endsMacro:
			res = append(res, fail(check, "it ends with MacroExit() but FreePBX calls it with Gosub() (FreePBX 17): calls through it fail",
				"use dialplan-examples/freepbx/extensions_custom.conf instead of extensions_custom-macro.conf in /etc/asterisk/extensions_custom.conf, then `fwconsole reload`"))
		default:
			res = append(res, ok(check, ""))
		}
	}
	return res
}

// callStyle tells how FreePBX's context caller calls hook: "Macro",
// "Gosub", or "" when it cannot tell.
func callStyle(ctx context.Context, a Asterisk, caller, hook string) string {
	out, loaded, err := showContext(ctx, a, caller)
	switch {
	case err != nil || !loaded:
		return ""
	case strings.Contains(out, "Macro("+hook+","):
		return "Macro"
	case strings.Contains(out, "Gosub(macro-"+hook+","):
		return "Gosub"
	}
	return ""
}

// FreePBX's contexts for calls from a trunk, which bypass the snippet.
var bypassContexts = []string{"from-pstn", "from-trunk"}

// CheckTrunks checks the trunks' contexts: the PJSIP endpoints with an
// identify (match=), which FreePBX makes for each trunk. A trunk left at
// from-pstn bypasses the snippet: a warning, since an outbound-only trunk
// may stay so; a failure when no trunk goes through the snippet at all.
func CheckTrunks(ctx context.Context, a Asterisk) Result {
	const check = "trunks send their calls to [" + FreePBXEntry + "]"
	out, err := a.Command(ctx, "pjsip show identifies")
	if err != nil {
		return skipped(check, err)
	}
	if strings.Contains(out, "No such command") {
		return ok(check, "no PJSIP here: check each trunk's context= by hand")
	}
	var endpoints []string
	for _, line := range strings.Split(out, "\n") {
		v, found := strings.CutPrefix(strings.TrimSpace(line), "Identify:")
		if !found || strings.Contains(v, "<") {
			continue
		}
		if _, ep, found := strings.Cut(strings.TrimSpace(v), "/"); found && ep != "" && !slices.Contains(endpoints, ep) {
			endpoints = append(endpoints, ep)
		}
	}
	if len(endpoints) == 0 {
		return ok(check, "no PJSIP endpoint with an identify (match=), as FreePBX makes for trunks: check each trunk's context by hand")
	}
	var hooked, bypass []string
	for _, ep := range endpoints {
		out, err := a.Command(ctx, "pjsip show endpoint "+ep)
		if err != nil {
			return skipped(check, err)
		}
		c := endpointContext(out)
		switch {
		case c == FreePBXEntry:
			hooked = append(hooked, ep)
		case slices.Contains(bypassContexts, c):
			bypass = append(bypass, ep+" ("+c+")")
		}
	}
	if len(bypass) == 0 {
		if len(hooked) == 0 {
			return ok(check, "no trunk goes straight to from-pstn")
		}
		return ok(check, strings.Join(hooked, ", "))
	}
	fix := fmt.Sprintf("in FreePBX, Connectivity > Trunks > each of them > pjsip Settings > Advanced > Context: %s (Issabel: context=%s in the PEER details), then Apply Config; an outbound-only trunk may stay", FreePBXEntry, FreePBXEntry)
	detail := strings.Join(bypass, ", ") + ": their calls bypass movidesk-agi"
	if len(hooked) == 0 {
		return fail(check, detail+", and no trunk goes through "+FreePBXEntry, fix)
	}
	return warn(check, detail, fix)
}

// endpointContext reads the context of `pjsip show endpoint NAME`.
func endpointContext(out string) string {
	for _, line := range strings.Split(out, "\n") {
		k, v, found := strings.Cut(line, ":")
		if found && strings.TrimSpace(k) == "context" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
