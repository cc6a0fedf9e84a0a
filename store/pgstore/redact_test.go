package pgstore

import (
	"errors"
	"strings"
	"testing"
)

func TestScrubbedTakesThePasswordOut(t *testing.T) {
	const secret = "s3cr3t-pw"
	if err := scrubbed(errors.New("pw "+secret), secret); strings.Contains(err.Error(), secret) {
		t.Errorf("scrubbed kept the password: %v", err)
	}
	for dsn, want := range map[string]string{
		"postgres://agi:" + secret + "@db/agi":           secret,
		"host=db user=agi password='" + secret + "' x=1": secret,
		"host=db user=agi":                               "",
	} {
		if got := dsnPassword(dsn); got != want {
			t.Errorf("dsnPassword(%q) = %q, want %q", dsn, got, want)
		}
	}
}
