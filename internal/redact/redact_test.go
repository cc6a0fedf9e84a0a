package redact_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/internal/redact"
)

func TestStringMasksRawAndEscaped(t *testing.T) {
	const secret = "s3cr/t+key=="
	s := "raw " + secret + " escaped s3cr%2Ft%2Bkey%3D%3D"
	got := redact.String(s, "", secret)
	if strings.Contains(got, "s3cr") || strings.Count(got, redact.Mask) != 2 {
		t.Errorf("%q", got)
	}
}

func TestErrorKeepsWhatItWraps(t *testing.T) {
	err := fmt.Errorf("dial postgres://u:pw-9f8e@db: %w", context.DeadlineExceeded)
	got := redact.Error(err, "pw-9f8e")
	if strings.Contains(got.Error(), "pw-9f8e") || !errors.Is(got, context.DeadlineExceeded) {
		t.Errorf("%v (is deadline: %v)", got, errors.Is(got, context.DeadlineExceeded))
	}
	if redact.Error(nil, "x") != nil {
		t.Error("nil became an error")
	}
	plain := errors.New("nothing secret")
	if redact.Error(plain, "pw") != plain {
		t.Error("an error without the secret was wrapped")
	}
}

func TestURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://api.example/x?token=abc&id=1": "https://api.example/x?id=1&token=REDACTED",
		"http://u:p@127.0.0.1:8088/ari":        "http://REDACTED@127.0.0.1:8088/ari",
		"https://api.example/x?id=1":           "https://api.example/x?id=1",
		"://bad":                               redact.Mask,
	} {
		if got := redact.URL(raw, "token"); got != want {
			t.Errorf("URL(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestLinkMasksWhatMayBeItsCredential(t *testing.T) {
	for raw, want := range map[string]string{
		"https://pbx.example.com:8443/r/1796342399.12/9stevfEQGMspLoffwvC4MQ":      "https://pbx.example.com:8443/r/1796342399.12/REDACTED",
		"https://pbx.example.com/r/17963.12/1796999999/9stevfEQGMspLoffwvC4MQ":     "https://pbx.example.com/r/17963.12/1796999999/REDACTED",
		"https://bucket.s3.example.com/rec/a.wav?X-Amz-Signature=abc&X-Amz-Date=1": "https://bucket.s3.example.com/rec/REDACTED",
		"https://user:pw@rec.example.com/a.wav#t=3":                                "https://rec.example.com/REDACTED",
		"https://rec.example.com/":                                                 "https://rec.example.com/",
		"not a link":                                                               "REDACTED",
		"":                                                                         "REDACTED",
	} {
		if got := redact.Link(raw); got != want {
			t.Errorf("Link(%q) = %q; want %q", raw, got, want)
		}
	}
}
