package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os/user"
	"slices"
	"strconv"
	"time"

	"github.com/movidesk-agi/movidesk-agi/calls"
	"github.com/movidesk-agi/movidesk-agi/cmd/movidesk-agi/internal/cli"
	"github.com/movidesk-agi/movidesk-agi/doctor"
)

// ConfigUnreadableError is a command's error when its configuration file
// cannot be read or is refused: exit status 3, so that a script tells it
// from checks that failed (1).
type ConfigUnreadableError struct{ Err error }

func (e *ConfigUnreadableError) Error() string { return e.Err.Error() }

func (e *ConfigUnreadableError) Unwrap() error { return e.Err }

// ChecksFailedError is the doctor's error when a check failed: exit
// status 1, after the report has said what to change.
type ChecksFailedError struct{ Failed int }

func (e *ChecksFailedError) Error() string {
	return fmt.Sprintf("doctor: %d checks failed", e.Failed)
}

// doctorEnv is what the doctor reaches outside the configuration; tests
// replace it.
type doctorEnv struct {
	// Asterisk is nil for `asterisk -rx` with the -asterisk binary.
	Asterisk   doctor.Asterisk
	Now        func() time.Time
	LookupUser func(name string) (*user.User, error)
}

// The dialplan contexts of dialplan-examples that call the routes, and
// the routes each calls. The configuration names the callers' contexts
// (accounts' contexts, reconcile.contexts), not these: a caller's context
// reaches the routes through Dial's U() or Gosub, so it holds no AGI() of
// its own to look for.
var (
	exampleContexts = []contextRoutes{
		{"movidesk-transfer", []string{"transfer"}},
		{"movidesk-hangup", []string{"hangup"}},
	}
	exampleQueueContext = contextRoutes{"movidesk-queue", []string{"abandon", "complete"}}
)

type contextRoutes struct {
	name   string
	routes []string
}

// maxClockSkew is how far Asterisk's clock may be from this host's before
// the doctor warns: reconciliation matches the PBX's call times with the
// service's.
const maxClockSkew = 5 * time.Second

// doctorCommand is `movidesk-agi doctor`: the checks of the set-up from
// the PBX's side that the configuration calls for, one line each.
func doctorCommand(ctx context.Context, args []string, stdout, stderr io.Writer, env doctorEnv) error {
	fs, f := doctorFlags()
	fs.SetOutput(stderr)
	path, astUser, astBin, queuesConf, cdrConf, pbx := f.config, f.asteriskUser, f.asterisk, f.queuesConf, f.cdrConf, f.pbx
	call, callFallback, callContext, callTimeout := f.call, f.callFallback, f.callContext, f.callTimeout
	if err := cli.ParseInterspersed(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.UsageError{Msg: "doctor: " + err.Error()}
	}
	switch {
	case fs.NArg() != 0:
		return cli.UsageError{Msg: "doctor takes no argument"}
	case *path == "":
		return cli.UsageError{Msg: "doctor: -config FILE is required"}
	case *pbx != pbxAuto && *pbx != pbxPlain && *pbx != pbxFreePBX:
		return cli.UsageError{Msg: fmt.Sprintf("doctor: -pbx %q: want auto, plain or freepbx", *pbx)}
	case *callTimeout <= 0:
		return cli.UsageError{Msg: "doctor: -call-timeout must be positive"}
	}
	cfg, err := LoadConfig(*path)
	if err != nil {
		return &ConfigUnreadableError{Err: err}
	}
	if env.Asterisk == nil {
		env.Asterisk = doctor.CLI{Path: *astBin}
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.LookupUser == nil {
		env.LookupUser = user.Lookup
	}

	var rep doctor.Report
	rep = append(rep, doctor.CheckService(ctx, cfg.Server.Listen, 3*time.Second))
	// Once unreachable, every console check says skipped at once.
	ast, _ := doctor.Probe(ctx, env.Asterisk)
	rep = append(rep, doctor.CheckAGIGlobal(ctx, ast, cfg.Server.Listen, 3*time.Second))
	freepbx, shape := dialplanShape(ctx, ast, *pbx)
	rep = append(rep, shape)

	queues := cfg.queueNames()
	reconcileOn := cfg.Reconcile.Enabled
	clickToCall := cfg.ClickToCall.Listen != ""
	rep = append(rep, doctor.CheckModules(ctx, ast, doctor.Modules(doctor.Needs{
		Queues:      len(queues) > 0,
		Reconcile:   reconcileOn && cfg.Reconcile.Source != reconcilePostgres,
		ClickToCall: clickToCall,
	}))...)

	var contexts []contextRoutes
	if freepbx {
		rep = append(rep, doctor.CheckFreePBX(ctx, ast)...)
	} else {
		contexts = slices.Clone(exampleContexts)
		if len(queues) > 0 {
			contexts = append(contexts, exampleQueueContext)
		}
	}
	if clickToCall && cfg.ClickToCall.Context != "" {
		// The originated call's own context: its hangup reports the call.
		contexts = append(contexts, contextRoutes{cfg.ClickToCall.Context, []string{"hangup"}})
	}
	for _, c := range contexts {
		rep = append(rep, doctor.CheckContext(ctx, ast, c.name, c.routes...))
	}

	if len(queues) > 0 {
		rep = append(rep, doctor.CheckQueues(*queuesConf, queues)...)
	}
	if reconcileOn {
		rep = append(rep, doctor.CheckCDR(ctx, ast)...)
		if cfg.Reconcile.Source == reconcileCSV {
			rc := cfg.Reconcile
			rep = append(rep, doctor.CheckCDRConf(*cdrConf, doctor.CSVSettings{
				LogUniqueID: rc.LogUniqueID, LogUserField: rc.LogUserField, NewCDRColumns: rc.NewCDRColumns, Timezone: rc.Timezone,
			})...)
		}
	}
	if clickToCall {
		cc := cfg.ClickToCall
		rep = append(rep, doctor.CheckARI(ctx, cc.ARIURL, cc.ARIUsername, cc.ARIPassword))
	}
	rep = append(rep, doctor.CheckClock(ctx, ast, env.Now, maxClockSkew))
	rep = append(rep, checkSpoolAs(cfg.Store.Spool, *astUser, env.LookupUser)...)
	if cfg.Recordings.Enabled {
		rep = append(rep, checkRecordingsAs(cfg.Recordings.Folder, *f.serviceUser, env.LookupUser))
	}
	if *call || *callFallback {
		rep = append(rep, testCalls(ctx, ast, cfg, freepbx, *callContext, *callFallback, *callTimeout)...)
	}

	if err := rep.Render(stdout); err != nil {
		return err
	}
	if rep.ExitCode() != 0 {
		n := 0
		for _, r := range rep {
			if r.Status == doctor.Fail {
				n++
			}
		}
		return &ChecksFailedError{Failed: n}
	}
	return nil
}

// testCalls places the test call (and with fallback the second one) in
// context, the examples' own by default.
func testCalls(ctx context.Context, ast doctor.Asterisk, cfg Config, freepbx bool, context string, fallback bool, timeout time.Duration) []doctor.Result {
	if context == "" {
		context = "movidesk-doctor"
		if freepbx {
			context = "movidesk-freepbx-doctor"
		}
	}
	if cfg.Admin.Listen == "" {
		return []doctor.Result{{Status: doctor.Fail, Check: "test call", Detail: "admin.listen is off: the service reports the test call there",
			Fix: "set [admin] listen (e.g. \"" + DefaultAdminListen + "\") and restart movidesk-agi"}}
	}
	if r := doctor.CheckContext(ctx, ast, context, calls.TestRoute); r.Status != doctor.OK {
		if r.Status == doctor.Fail {
			r.Fix = "append the examples' [" + context + "] and [" + context + "-agent] (dialplan-examples/extensions-movidesk.conf; FreePBX: freepbx/extensions_custom.conf), then `asterisk -rx 'dialplan reload'`"
		}
		return []doctor.Result{r}
	}
	tc := testCall{ast: ast, api: testCallClient(cfg), apiAddr: cfg.Admin.Listen, context: context,
		queue: cfg.testQueue(), freepbx: freepbx, timeout: timeout}
	res := tc.run(ctx, testModeCall)
	if fallback {
		res = append(res, tc.run(ctx, testModeFallback)...)
	}
	return res
}

// checkRecordingsAs checks the recordings folder as the user named name
// (the service's) meets it.
func checkRecordingsAs(folder, name string, lookup func(string) (*user.User, error)) doctor.Result {
	_, uid, gid, err := userIDs(name, lookup)
	if err != nil {
		return doctor.Result{Status: doctor.Fail, Check: "recordings folder " + folder + " readable by the service's user",
			Detail: fmt.Sprintf("user %q: %v", name, err), Fix: "name the user movidesk-agi runs as (User= in its systemd unit) with -service-user"}
	}
	return doctor.CheckRecordings(folder, name, uid, gid)
}

// userIDs looks up the user named name and its numeric ids.
func userIDs(name string, lookup func(string) (*user.User, error)) (u *user.User, uid, gid int, err error) {
	if u, err = lookup(name); err != nil {
		return nil, 0, 0, err
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return nil, 0, 0, err
	}
	gid, err = strconv.Atoi(u.Gid)
	return u, uid, gid, err
}

// checkSpoolAs checks the spool, and the folders on its way, as the user
// named name will meet them.
func checkSpoolAs(spool, name string, lookup func(string) (*user.User, error)) []doctor.Result {
	u, uid, gid, err := userIDs(name, lookup)
	if err != nil {
		return []doctor.Result{{Status: doctor.Fail,
			Check:  "fallback spool " + spool + " writable by Asterisk's user",
			Detail: fmt.Sprintf("user %q: %v", name, err),
			Fix:    "name the user Asterisk runs as (runuser in /etc/asterisk/asterisk.conf) with -asterisk-user"}}
	}
	gids := []int{gid}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if n, err := strconv.Atoi(id); err == nil && n != gid {
				gids = append(gids, n)
			}
		}
	}
	return []doctor.Result{doctor.CheckSpoolDirs(spool, uid, gids), doctor.CheckSpool(spool, calls.SpoolHeader, uid, gid)}
}

// The -pbx values.
const (
	pbxAuto    = "auto"
	pbxPlain   = "plain"
	pbxFreePBX = "freepbx"
)

// dialplanShape tells whether to check the FreePBX snippet rather than the
// plain examples, and says which and why.
func dialplanShape(ctx context.Context, ast doctor.Asterisk, pbx string) (bool, doctor.Result) {
	const check = "dialplan checked as"
	switch pbx {
	case pbxPlain:
		return false, doctor.Result{Status: doctor.OK, Check: check + " the plain examples (dialplan-examples/)", Detail: "-pbx plain"}
	case pbxFreePBX:
		return true, doctor.Result{Status: doctor.OK, Check: check + " FreePBX's (dialplan-examples/freepbx/)", Detail: "-pbx freepbx"}
	}
	freepbx, err := doctor.DetectFreePBX(ctx, ast)
	switch {
	case err != nil:
		return false, doctor.Result{Status: doctor.Warn, Check: check + " the plain examples (dialplan-examples/)",
			Detail: "cannot tell: " + err.Error(), Fix: "on FreePBX or Issabel, give -pbx freepbx"}
	case freepbx:
		return true, doctor.Result{Status: doctor.OK, Check: check + " FreePBX's (dialplan-examples/freepbx/)",
			Detail: "from-pstn or " + doctor.FreePBXEntry + " is loaded (-pbx plain checks the plain examples)"}
	}
	return false, doctor.Result{Status: doctor.OK, Check: check + " the plain examples (dialplan-examples/)",
		Detail: "no from-pstn context (-pbx freepbx checks FreePBX's snippet)"}
}

// queueNames are the keys of [queues] and of every account's queues, once
// each, sorted.
func (c *Config) queueNames() []string {
	set := map[string]bool{}
	for q := range c.Queues {
		set[q] = true
	}
	for _, a := range c.Accounts {
		for q := range a.Queues {
			set[q] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}
