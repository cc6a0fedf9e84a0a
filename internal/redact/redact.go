// Package redact keeps secrets out of what is shown: error texts, URLs,
// strings. Every package that holds a secret (the Movidesk token, ARI's
// and PostgreSQL's passwords) masks it the same way, with Mask.
package redact

import (
	"net/url"
	"strings"
)

// Mask is what a secret is shown as.
const Mask = "REDACTED"

// String replaces each secret in s, raw or query-escaped (as it travels
// in a URL).
func String(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		s = strings.ReplaceAll(s, secret, Mask)
		if esc := url.QueryEscape(secret); esc != secret {
			s = strings.ReplaceAll(s, esc, Mask)
		}
	}
	return s
}

// Error is err with each secret out of its text; errors.Is and errors.As
// still see what it wraps (a timeout, a cancellation). nil stays nil, and
// an error that shows no secret is returned as it is.
func Error(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if masked := String(msg, secrets...); masked != msg {
		return &maskedError{msg: masked, err: err}
	}
	return err
}

type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// Link is a web link with what may make it a credential masked: its user
// info, query, fragment and last path segment, where signed URLs and
// capability links carry their signature ("https://pbx/r/17963.12/REDACTED").
// What is left says where it leads; a link that does not parse is masked
// whole.
func Link(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Mask
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment = nil, "", "", ""
	if i := strings.LastIndexByte(u.Path, '/'); i >= 0 && i < len(u.Path)-1 {
		u.Path, u.RawPath = u.Path[:i+1]+Mask, ""
	}
	return u.String()
}

// URL is raw with its user info and the values of the query parameters
// named masked; a URL that does not parse is masked whole.
func URL(raw string, params ...string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Mask
	}
	if u.User != nil {
		u.User = url.User(Mask)
	}
	q := u.Query()
	masked := false
	for _, p := range params {
		if _, ok := q[p]; ok {
			q.Set(p, Mask)
			masked = true
		}
	}
	if masked {
		u.RawQuery = q.Encode()
	}
	return u.String()
}
