package account_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/movidesk-agi/movidesk-agi/account"
)

const secret = "s3cr3t-t0k3n-0123456789"

func TestTokenNeverPrints(t *testing.T) {
	a := account.Account{Name: "acme", Token: secret, RatePerMinute: 5}
	l := account.List{a}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%10.3s"} {
		for _, v := range []any{a, &a, a.Token, l} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) || strings.Contains(s, fmt.Sprintf("%X", secret)) {
				t.Errorf("Sprintf(%q, %T) = %s: the token shows", verb, v, s)
			}
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) || !strings.Contains(string(b), account.Redacted) {
		t.Errorf("JSON %s: want the token redacted", b)
	}
	if a.Token.Reveal() != secret {
		t.Errorf("Reveal = %q, want the token", a.Token.Reveal())
	}
	if got := fmt.Sprintf("%v", a); !strings.Contains(got, "acme") || !strings.Contains(got, "5") {
		t.Errorf("%%v = %s: want the account's other fields", got)
	}
}

func TestList(t *testing.T) {
	l := account.List{
		{Name: account.DefaultName, Contexts: []string{"*"}},
		{Name: "acme", Contexts: []string{"acme-*"}, Queues: map[string]int{"support": 7}},
		{Name: "globex", Contexts: []string{"globex-*", "shared"}},
	}
	if d := l.Default(); d == nil || d.Name != account.DefaultName {
		t.Errorf("Default = %v, want the first", d)
	}
	if (account.List{}).Default() != nil {
		t.Error("an empty list has a default")
	}
	if a := l.Named("globex"); a == nil || a != &l[2] {
		t.Errorf("Named(globex) = %v, want the list's own", a)
	}
	if a := l.Named("initech"); a != nil {
		t.Errorf("Named(initech) = %v, want nil", a)
	}
	for _, tc := range []struct {
		contexts []string
		want     string
	}{
		{[]string{"acme-inbound"}, "acme"},
		{[]string{"from-trunk", "shared"}, "globex"},
		{[]string{"from-trunk"}, ""}, // the default's "*" is not read
		{[]string{""}, ""},
		{nil, ""},
	} {
		got := ""
		if a := l.ForContext(tc.contexts...); a != nil {
			got = a.Name
		}
		if got != tc.want {
			t.Errorf("ForContext(%q) = %q, want %q", tc.contexts, got, tc.want)
		}
	}
	if got := l.Names(); !slices.Equal(got, []string{"default", "acme", "globex"}) {
		t.Errorf("Names = %q", got)
	}
	if got := len(l.Others()); got != 2 || l.Others()[0] != &l[1] {
		t.Errorf("Others: %d, want the two besides the default, the list's own", got)
	}
	c := l.Clone()
	c[1].Queues["support"] = 8
	c[2].Contexts[0] = "x"
	if l[1].Queues["support"] != 7 || l[2].Contexts[0] != "globex-*" {
		t.Error("changing a clone changed the list")
	}
}

func TestCheckContext(t *testing.T) {
	for p, ok := range map[string]bool{"acme-*": true, "exact": true, "": false, "[": false} {
		if err := account.CheckContext(p); (err == nil) != ok {
			t.Errorf("CheckContext(%q) = %v, want ok %v", p, err, ok)
		}
	}
}
