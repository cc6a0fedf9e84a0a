package calls

import (
	"context"
	"errors"
	"fmt"
	"github.com/movidesk-agi/movidesk-agi/cdr"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/account"
	"github.com/movidesk-agi/movidesk-agi/agi"
	"github.com/movidesk-agi/movidesk-agi/callstate"
	"github.com/movidesk-agi/movidesk-agi/recordings"
)

// inputError is bad input from the dialplan or the channel: it can never
// succeed as it is, so the handler reports ERROR and the call goes on.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) error {
	return &inputError{fmt.Sprintf(format, args...)}
}

// channel is what a handler knows of a call: the AGI arguments, a few
// fields of the AGI environment, and the channel's variables, read on first
// use. It comes from a live AGI session or from a fallback spool line.
type channel struct {
	cfg      *Config
	args     map[string]string
	now      time.Time
	uniqueID string // agi_uniqueid
	callerID string // agi_callerid, "" for unknown
	context  string // agi_context
	name     string // agi_channel
	read     func(name string) (string, error)
	vars     map[string]string
	linked   string           // CHANNEL(linkedid), read on first use
	acct     *account.Account // the events' account, chosen on first use
	// record stores the event the route built; isOpen tells whether a
	// call is open. Live sessions go through the call state machine, the
	// spool importer through its batch's transaction.
	record func(context.Context, callstate.Event) (callstate.Outcome, error)
	isOpen func(base string) (bool, error)
	// lookup reads what is remembered of a call, for the account of a
	// call already known.
	lookup func(base string) (callstate.Call, error)
	// test is the doctor's test call the channel belongs to (testcall.go).
	test string
}

func newChannel(s *agi.Session, cfg *Config, now time.Time) *channel {
	env := s.Env()
	return &channel{
		cfg:      cfg,
		args:     lastValues(s.Params()),
		now:      now,
		uniqueID: env.UniqueID(),
		callerID: env.CallerID(),
		context:  env.Context(),
		name:     env.Channel(),
		read: func(name string) (string, error) {
			v, _, err := s.GetVariable(s.Context(), name)
			return v, err
		},
		vars: map[string]string{},
	}
}

func lastValues(p map[string][]string) map[string]string {
	args := map[string]string{}
	for k, v := range p {
		if len(v) > 0 {
			args[k] = v[len(v)-1]
		}
	}
	return args
}

// get reads a channel variable or function; unset reads as "".
func (c *channel) get(name string) (string, error) {
	if v, ok := c.vars[name]; ok {
		return v, nil
	}
	v, err := c.read(name)
	if err != nil {
		return "", fmt.Errorf("read ${%s}: %w", name, err)
	}
	c.vars[name] = v
	return v, nil
}

func (c *channel) linkedID() (string, error) {
	if c.linked != "" {
		return c.linked, nil
	}
	v, err := c.get("CHANNEL(linkedid)")
	if err != nil {
		return "", err
	}
	if v == "" {
		// Only a very old Asterisk lacks linkedid; the channel's own id is
		// the best stand-in.
		v = c.uniqueID
	}
	c.linked = v
	return v, nil
}

// agentLeg reports whether this session runs on the called (agent's) channel,
// as in Dial's U() subroutine: there the channel's own uniqueid is not the
// call's linkedid.
func (c *channel) agentLeg() (bool, error) {
	linked, err := c.linkedID()
	if err != nil {
		return false, err
	}
	return c.uniqueID != linked, nil
}

// baseID is the Movidesk call id: the account's IDPrefix plus the id=
// argument or the linkedid, which is the same on every leg and in the h
// extension.
func (c *channel) baseID() (string, error) {
	a, err := c.account()
	if err != nil {
		return "", err
	}
	id := c.args["id"]
	if id == "" {
		if id, err = c.linkedID(); err != nil {
			return "", err
		}
	}
	if id == "" {
		return "", badInput("no call id: the channel has no linkedid and no id= argument was given")
	}
	return a.IDPrefix + id, nil
}

func (c *channel) clientNumber() (string, error) {
	if v, ok := c.args["client"]; ok && v != "" {
		return v, nil
	}
	agent, err := c.agentLeg()
	if err != nil {
		return "", err
	}
	var v string
	if agent {
		// On the agent's leg CALLERID is the dialled extension; the caller
		// is the connected line.
		if v, err = c.get("CONNECTEDLINE(num)"); err != nil {
			return "", err
		}
	} else {
		v = c.callerID
	}
	if v == "" {
		return "", badInput("no caller number: the channel has none (anonymous call?) and no client= argument was given")
	}
	return v, nil
}

func (c *channel) queueID() (int, error) {
	a, err := c.account()
	if err != nil {
		return 0, err
	}
	if v, ok := c.args["queue"]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n <= 0 {
			return 0, badInput("queue=%q is not a Movidesk queue id (a positive integer)", v)
		}
		return n, nil
	}
	// Each name is a round trip to Asterisk: read only when the account
	// maps queues, and the caller's context only on the agent's leg.
	var name, caller string
	if len(a.Queues) > 0 {
		if name, err = c.get("QUEUENAME"); err != nil {
			return 0, err
		}
		if id, ok := a.Queues[name]; ok && name != "" {
			return id, nil
		}
		agent, err := c.agentLeg()
		if err != nil {
			return 0, err
		}
		if agent {
			// Dial's U() runs in its subroutine's context; the call is
			// handled, and its h extension runs, in the caller's, which
			// MASTER_CHANNEL reads from the linkedid's channel.
			if caller, err = c.get("MASTER_CHANNEL(CONTEXT)"); err != nil {
				return 0, err
			}
			if id, ok := a.Queues[caller]; ok && caller != "" {
				return id, nil
			}
		}
	}
	if id, ok := a.Queues[c.context]; ok {
		return id, nil
	}
	if a.DefaultQueueID > 0 {
		return a.DefaultQueueID, nil
	}
	var tried []string
	if name != "" {
		tried = append(tried, "queue "+strconv.Quote(name))
	}
	if caller != "" {
		tried = append(tried, "caller's context "+strconv.Quote(caller))
	}
	where := "context " + strconv.Quote(c.context)
	if len(tried) > 0 {
		where = strings.Join(tried, ", ") + " or " + where
	}
	return 0, badInput("no Movidesk queue id for %s: pass queue=, map it under %s or set %s", where,
		c.cfg.fieldName(a, account.FieldQueues), c.cfg.fieldName(a, account.FieldDefaultQueueID))
}

func (c *channel) branchLine() (string, error) {
	if v, ok := c.args["branch"]; ok && v != "" {
		return v, nil
	}
	for _, name := range []string{"MEMBERINTERFACE", "DIALEDPEERNUMBER"} {
		v, err := c.get(name)
		if err != nil {
			return "", err
		}
		if ext := cdr.ExtensionOf(v); ext != "" {
			return ext, nil
		}
	}
	agent, err := c.agentLeg()
	if err != nil {
		return "", err
	}
	if agent {
		if ext := cdr.ExtensionOf(c.name); ext != "" {
			return ext, nil
		}
	}
	return "", badInput("no agent extension: MEMBERINTERFACE and DIALEDPEERNUMBER are empty and this is not the agent's channel; pass branch=")
}

// callDate is when the call arrived: the birth of the call's first
// channel, which its uniqueid, the linkedid, carries as epoch.sequence. The
// CDR cannot tell it: the agent's leg has a CDR of its own, and in the h
// extension after an unanswered Dial ${CDR(start,u)} is the start of a new
// CDR segment, when Dial ended. The CDR is read only when the linkedid
// does not hold an epoch (an id= from elsewhere).
func (c *channel) callDate() (time.Time, error) {
	linked, err := c.linkedID()
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := linkedEpoch(linked); ok {
		return t, nil
	}
	v, err := c.get("CDR(start,u)")
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := parseEpoch(v); ok {
		return t, nil
	}
	return c.now, nil
}

// linkedEpoch reads the epoch of a uniqueid: "1795524751.12", or
// "systemname-1795524751.12" when asterisk.conf sets systemname.
func linkedEpoch(id string) (time.Time, bool) {
	if i := strings.LastIndexByte(id, '-'); i >= 0 {
		id = id[i+1:]
	}
	sec, _, ok := strings.Cut(id, ".")
	if !ok {
		return time.Time{}, false
	}
	return parseEpoch(sec)
}

// parseEpoch reads "1795524751.608969" as a UTC time, to the second.
func parseEpoch(s string) (time.Time, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f > 1e11 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0).UTC(), true
}

// link is the recording link: link= argument, else the configured template,
// which sees the recording= argument as .Recording, else, when the service
// serves the recordings, a link to the call's recording and where that is
// (rec, stored with the event). Movidesk writes it into the ticket, where
// an agent clicks it: only a web address is sent.
func (c *channel) link(id string) (link string, rec *callstate.Recording, err error) {
	if v, ok := c.args["link"]; ok {
		if v != "" && !WebURL(v) {
			return "", nil, badInput("link= must be an absolute http or https URL, such as https://host/file.wav")
		}
		return v, nil, nil
	}
	a, err := c.account()
	if err != nil {
		return "", nil, err
	}
	if a.RecordingLink == nil {
		return c.servedLink(id)
	}
	linked, err := c.linkedID()
	if err != nil {
		return "", nil, err
	}
	recPath, err := recordingPath(c.args["recording"])
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	data := LinkData{ID: id, LinkedID: linked, UniqueID: c.uniqueID, Date: c.now, Recording: recPath}
	key := c.cfg.fieldName(a, account.FieldRecordingLink)
	if err := a.RecordingLink.Execute(&b, data); err != nil {
		return "", nil, badInput("%s template: %v", key, err)
	}
	if b.Len() > 0 && !WebURL(b.String()) {
		return "", nil, badInput("%s made a link that is not an absolute http or https URL", key)
	}
	return b.String(), nil, nil
}

// servedLink is the link to the call's recording served by the service,
// "" when it serves none or no recording is known for the channel: the
// recording= argument, else MixMonitor's MIXMONITOR_FILENAME (on the
// channel that ran MixMonitor), else FreePBX's CDR(recordingfile).
func (c *channel) servedLink(id string) (string, *callstate.Recording, error) {
	if c.cfg.Recordings == nil {
		return "", nil, nil
	}
	name := c.args["recording"]
	for _, v := range []string{"MIXMONITOR_FILENAME", "CDR(recordingfile)"} {
		if name != "" {
			break
		}
		var err error
		if name, err = c.get(v); err != nil {
			return "", nil, err
		}
	}
	file, err := recordings.File(c.cfg.RecordingsFolder, name)
	if err != nil {
		return "", nil, badInput("%v", err)
	}
	if file == "" {
		return "", nil, nil
	}
	link, err := c.cfg.Recordings.Link(id)
	if err != nil {
		return "", nil, badInput("recording link of call %q: %v", id, err)
	}
	return link, &callstate.Recording{Key: recordings.Ref(id), CallID: id, Path: file}, nil
}

// WebURL reports an absolute http or https URL with a host: what a
// recording link may be.
func WebURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && !strings.ContainsFunc(s, isControl)
}

// recordingPath checks a recording= argument, a file under the
// recordings' folder ("2026/12/07/external-...wav" or the name alone), and
// escapes each of its segments for a URL's path, '/' kept between them.
func recordingPath(rec string) (string, error) {
	if rec == "" {
		return "", nil
	}
	bad := func(why string) error {
		return badInput("recording=%q must be a file under the recordings' folder: %s", rec, why)
	}
	switch {
	case strings.ContainsFunc(rec, isControl):
		return "", bad("it holds a control character")
	case strings.HasPrefix(rec, "/"):
		return "", bad("it is an absolute path")
	}
	segs := strings.Split(rec, "/")
	for i, s := range segs {
		if s == ".." {
			return "", bad(`it has a ".." element`)
		}
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/"), nil
}

// LinkData is what an account's RecordingLink template sees.
type LinkData struct {
	ID       string    // the Movidesk call id (IDPrefix included)
	LinkedID string    // ${CHANNEL(linkedid)}
	UniqueID string    // this channel's ${UNIQUEID}
	Date     time.Time // when the AGI ran, UTC
	// Recording is the recording= argument: the recording's file as the PBX
	// named it (FreePBX: YYYY/MM/DD/<CDR(recordingfile)>), "" when the call
	// was not recorded, so a template can write {{with .Recording}}...{{end}}.
	// It is a relative path without "..", each segment URL-escaped.
	Recording string
}

// recordEvent has the event the route built recorded for the channel's
// account.
func (c *channel) recordEvent(ctx context.Context, ev callstate.Event) (callstate.Outcome, error) {
	a, err := c.account()
	if err != nil {
		return callstate.Outcome{}, err
	}
	ev.Account = a.Name
	out, err := c.record(ctx, ev)
	return out, fromStore(err)
}

// isInput tells bad input (ERROR, never retried) from a session failure.
func isInput(err error) bool {
	var ie *inputError
	return errors.As(err, &ie)
}
