// Package cdr reads Asterisk's call detail records: the rows cdr_csv writes
// to Master.csv (csv.go), and what the rows of one call say together
// (call.go): who called, which agent answered, when it began, was answered
// and ended, and the recording.
//
// Asterisk writes several rows per call (one per pair of parties: each
// member a queue rang, each leg of a Local channel, each transfer), all
// with the call's linkedid, each posted when its own channel is gone. The
// package knows Asterisk's CDR and nothing else: where the rows come from
// and what is done with a call are its callers'.
package cdr

import (
	"strings"
	"time"
)

// Dispositions Asterisk writes (cdr.c). CANCEL only with
// canceldispositionenabled=yes, CONGESTION only with congestion=yes.
const (
	Answered   = "ANSWERED"
	NoAnswer   = "NO ANSWER"
	Busy       = "BUSY"
	Failed     = "FAILED"
	Congestion = "CONGESTION"
	Cancel     = "CANCEL"
)

// Record is one CDR row: one path of a call, from Party A (Channel)
// towards at most one Party B (DstChannel). Fields a source does not have
// are zero: Master.csv has no DID or RecordingFile, FreePBX's table no
// Answer or End, Master.csv without newcdrcolumns no LinkedID.
type Record struct {
	AccountCode string
	Src         string // the caller's number (CALLERID(num))
	Dst         string // the extension dialled in DContext
	DContext    string
	CLID        string // "Name" <number>
	Channel     string // Party A
	DstChannel  string // Party B; empty when there was none
	LastApp     string
	LastData    string
	Start       time.Time
	Answer      time.Time // zero: never answered
	End         time.Time
	Duration    time.Duration // End - Start, as Asterisk counted it
	Billed      time.Duration // billsec: End - Answer
	Disposition string
	AMAFlags    string
	UniqueID    string // Party A's channel
	UserField   string
	PeerAccount string
	LinkedID    string // the call's: the same on all its rows
	Sequence    int
	// FreePBX's and Issabel's extra columns.
	DID           string
	RecordingFile string
	// CNum and CNam are the caller's number and name as FreePBX set them
	// on the channel; OutboundCNum/CNam the caller ID an outbound route
	// sent; DstCNam the name of the party called.
	CNum, CNam                 string
	OutboundCNum, OutboundCNam string
	DstCNam                    string
}

// CallID is what ties the rows of one call: the linkedid, or, for rows
// written without one (Master.csv without newcdrcolumns, an old Issabel
// table), Party A's uniqueid, which ties only the rows of that channel.
func (r *Record) CallID() string {
	if r.LinkedID != "" {
		return r.LinkedID
	}
	return r.UniqueID
}

// Finished is when the row's path ended: End, else Start plus Duration
// (FreePBX's table keeps only the start and the durations).
func (r *Record) Finished() time.Time {
	if !r.End.IsZero() {
		return r.End
	}
	return r.Start.Add(r.Duration)
}

// AnsweredAt is when Party B answered: Answer, else End minus Billed when
// the row has a Party B and billed seconds (FreePBX's table), else zero.
func (r *Record) AnsweredAt() time.Time {
	if !r.Answer.IsZero() {
		return r.Answer
	}
	if r.Disposition == Answered && r.Billed > 0 {
		return r.Finished().Add(-r.Billed)
	}
	return time.Time{}
}

// TookTheCall reports whether Party B answered this path: ANSWERED with a
// Party B. A row without one is ANSWERED whenever Asterisk itself answered
// the channel (an IVR, Answer() before Queue()), which no agent did.
func (r *Record) TookTheCall() bool {
	return r.Disposition == Answered && r.DstChannel != ""
}

// QueueName is the queue of a row whose application was Queue: the first
// field of its data ("400,t,,..." is queue 400); "" for other rows.
func (r *Record) QueueName() string {
	if !strings.EqualFold(r.LastApp, "Queue") {
		return ""
	}
	name, _, _ := strings.Cut(r.LastData, ",")
	return strings.TrimSpace(name)
}
