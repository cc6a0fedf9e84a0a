package cdr

import (
	"regexp"
	"slices"
	"strings"
	"time"
)

// Call is what the rows of one call say together.
type Call struct {
	ID string // the rows' CallID: the linkedid
	// Channel, UniqueID, Context, Src, CLID and DID are the caller's: Party
	// A of the call's first row (earliest start, then sequence).
	Channel  string
	UniqueID string
	Context  string
	Src      string
	CLID     string
	DID      string
	Started  time.Time
	Ended    time.Time // when the last of its rows ended
	// Answered is when an agent took the call, zero when none did;
	// AgentChannel is that agent's channel (a Local channel as it is) and
	// Agent its extension.
	Answered     time.Time
	AgentChannel string
	Agent        string
	Queue        string // the first queue the caller waited in, "" for none
	Recording    string // the first recording file a row names
	Rows         int
}

// Summarize is what rows, all of one call, say together; ok is false for
// no rows.
func Summarize(rows []Record) (c Call, ok bool) {
	if len(rows) == 0 {
		return Call{}, false
	}
	sorted := slices.Clone(rows)
	slices.SortStableFunc(sorted, func(a, b Record) int {
		if c := a.Start.Compare(b.Start); c != 0 {
			return c
		}
		return a.Sequence - b.Sequence
	})
	first := sorted[0]
	c = Call{
		ID: first.CallID(), Channel: first.Channel, UniqueID: first.UniqueID, Context: first.DContext,
		Src: first.Src, CLID: first.CLID, DID: first.DID, Started: first.Start, Rows: len(rows),
	}
	var took *Record
	for i := range sorted {
		r := &sorted[i]
		if end := r.Finished(); end.After(c.Ended) {
			c.Ended = end
		}
		if c.DID == "" {
			c.DID = r.DID
		}
		if c.Recording == "" {
			c.Recording = r.RecordingFile
		}
		// Only the caller's own paths name who took the call: a Local
		// channel's second half, or a colleague's leg after a transfer,
		// is Party A of rows of its own.
		if r.Channel != c.Channel {
			continue
		}
		if c.Queue == "" {
			c.Queue = r.QueueName()
		}
		if r.TookTheCall() && (took == nil || r.AnsweredAt().Before(took.AnsweredAt())) {
			took = r
		}
	}
	if took != nil {
		c.Answered = took.AnsweredAt()
		if c.Answered.IsZero() {
			c.Answered = took.Start
		}
		c.AgentChannel = took.DstChannel
		c.Agent = Extension(took.DstChannel)
	}
	return c, true
}

// channelSuffix is the unique part Asterisk appends to a channel's name:
// "-0000001a" (PJSIP/201-0000001a), or ";1"/";2" after a Local channel's
// own "-…" (Local/201@from-queue-00000003;1).
var channelSuffix = regexp.MustCompile(`-[0-9a-f]{8}(;[12])?$`)

// Unsuffixed is a channel's name without the unique part Asterisk
// appends: PJSIP/trunk-00000010 is PJSIP/trunk, and
// Local/201@from-queue-00000003;1 is Local/201@from-queue. The channels of
// one path (a trunk, an extension) share it.
func Unsuffixed(channel string) string { return channelSuffix.ReplaceAllString(channel, "") }

// Extension is the endpoint or extension a channel name is of:
// PJSIP/201-0000001a is 201, Local/201@from-queue-00000003;1 is 201,
// SIP/trunk-0000000b is trunk; "" for what is no channel name (no
// technology before a '/').
func Extension(channel string) string {
	if !strings.Contains(channel, "/") {
		return ""
	}
	return ExtensionOf(channel)
}

// ExtensionOf takes the extension out of an interface, a dialled peer or a
// channel name: "PJSIP/5252", "5252@agents", "PJSIP/5252-0000002a",
// "Local/5252@agents-00000001;1", "SIP/5252/n" and "5252@from-queue/n" (the
// dialled peer of a Local queue member, as FreePBX makes them) all give
// "5252".
func ExtensionOf(s string) string {
	s = strings.TrimSpace(s)
	// A technology comes before the first '/'; a '/' after an '@' only
	// starts the Local channel's options.
	if i := strings.IndexAny(s, "/@"); i >= 0 && s[i] == '/' {
		s = s[i+1:]
	}
	if i := strings.IndexAny(s, "@/;&"); i >= 0 {
		s = s[:i]
	}
	// A channel name ends in -XXXXXXXX (eight hex digits).
	if i := strings.LastIndexByte(s, '-'); i >= 0 && len(s)-i-1 == 8 && isHex(s[i+1:]) {
		s = s[:i]
	}
	return s
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
