package admin

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/movidesk-agi/movidesk-agi/outbox"
)

//go:embed status.html
var pageSource string

// maxListed bounds the queued events the page lists.
const maxListed = 50

// maxFailedListed bounds the failed events the page lists, each with its
// buttons: a token gone wrong fails every event, and a page of thousands of
// rows helps nobody ("Retry all failed" takes them all).
const maxFailedListed = 200

var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"when": when,
	"age":  age,
	"span": func(seconds float64) string { return formatSpan(time.Duration(seconds * float64(time.Second))) },
	"num":  formatNumber,
	"rate": formatRate,
}).Parse(pageSource))

// pageData is what the status page shows.
type pageData struct {
	Status
	Failed     []Event       // failed and unreadable, with their buttons
	Queued     []queuedEvent // the first maxListed waiting
	QueuedMore int
	FailedMore int    // failed events beyond maxFailedListed
	RateKey    string // the rate's setting, for one account
	Flash      string
	FlashError bool
}

// queuedEvent is a waiting event, with the earlier event of its call it
// waits behind (0 when none): a due event that is not sent is often
// held by a failed one.
type queuedEvent struct {
	Event
	Behind uint64
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	st, events := s.status()
	d := pageData{Status: st, RateKey: key(s.opts.Keys.RatePerMinute, "rate limit")}
	first := map[string]uint64{} // each call's first stored event (List is in sequence order)
	for _, ev := range events {
		behind := uint64(0)
		if ev.Call != "" {
			if f, ok := first[ev.Call]; ok {
				behind = f
			} else {
				first[ev.Call] = ev.Seq
			}
		}
		switch ev.State {
		case outbox.StateFailed, outbox.StateUnreadable:
			if len(d.Failed) < maxFailedListed {
				d.Failed = append(d.Failed, EventOf(ev))
			} else {
				d.FailedMore++
			}
		default:
			if len(d.Queued) < maxListed {
				d.Queued = append(d.Queued, queuedEvent{EventOf(ev), behind})
			} else {
				d.QueuedMore++
			}
		}
	}
	d.Flash, d.FlashError = s.flash(r.URL.Query())
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		s.log.Error().Err(err).Msg("admin: render the status page")
		writeText(w, http.StatusInternalServerError, "status page: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

func (s *Server) formRetry(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		s.redirect(w, r, "", err)
		return
	}
	s.formRetrySeq(w, r, seq)
}

func (s *Server) formRetryAll(w http.ResponseWriter, r *http.Request) { s.formRetrySeq(w, r, 0) }

func (s *Server) formRetrySeq(w http.ResponseWriter, r *http.Request, seq uint64) {
	res, err := s.retry(r, seq)
	if err != nil {
		s.redirect(w, r, "", err)
		return
	}
	var msg string
	if seq != 0 {
		msg = fmt.Sprintf("Event %d is queued again: the sender tries it now.", seq)
	} else {
		msg = fmt.Sprintf("%d failed events queued again.", res.Retried)
		if len(res.Skipped) > 0 {
			msg += fmt.Sprintf(" Unreadable events skipped (drop them): %v.", res.Skipped)
		}
	}
	s.redirect(w, r, msg, nil)
}

func (s *Server) formDrop(w http.ResponseWriter, r *http.Request) {
	seq, err := pathSeq(r)
	if err != nil {
		s.redirect(w, r, "", err)
		return
	}
	if err := s.drop(r, seq); err != nil {
		s.redirect(w, r, "", err)
		return
	}
	s.redirect(w, r, fmt.Sprintf("Event %d dropped: its call's later events are no longer held behind it.", seq), nil)
}

// redirect sends the browser back to the page, with the outcome as a
// flash message (303, so that a reload does not post again). The message
// is signed: a link from elsewhere cannot put its own words on the page.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, msg string, err error) {
	kind := "msg"
	if err != nil {
		kind, msg = "err", err.Error()
	}
	q := url.Values{}
	q.Set(kind, msg)
	q.Set("sig", s.sign(kind, msg))
	http.Redirect(w, r, "/?"+q.Encode(), http.StatusSeeOther)
}

// flash is the page's flash message from its query, if signed by redirect.
func (s *Server) flash(q url.Values) (msg string, isError bool) {
	kind := "msg"
	if q.Has("err") {
		kind = "err"
	}
	msg = q.Get(kind)
	sig, err := base64.RawURLEncoding.DecodeString(q.Get("sig"))
	if msg == "" || err != nil {
		return "", false
	}
	want, _ := base64.RawURLEncoding.DecodeString(s.sign(kind, msg))
	if !hmac.Equal(sig, want) {
		return "", false
	}
	return msg, kind == "err"
}

func (s *Server) sign(kind, msg string) string {
	mac := hmac.New(sha256.New, s.flashKey[:])
	mac.Write([]byte(kind + "\x00" + msg))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// when is a time as the page shows it: UTC RFC 3339 and how long ago.
func when(now, t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(time.RFC3339) + " (" + age(now, t) + ")"
}

// age is how long ago t was, or how long until it.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + formatSpan(-d)
	case d < time.Second:
		return "just now"
	}
	return formatSpan(d) + " ago"
}

// formatNumber shows a rate with the precision it deserves.
func formatNumber(v float64) string {
	switch {
	case math.Abs(v) >= 10 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.1f", v), "0"), ".")
	}
}
