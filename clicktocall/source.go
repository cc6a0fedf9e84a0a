package clicktocall

import (
	"fmt"
	"strings"
	"text/template"
)

// MaxSourceDigits bounds a source's length: an extension, or at most a
// DID used as one (Brazil's 11 digits).
const MaxSourceDigits = 11

// CheckSource refuses a source that is not an extension: it goes into the
// dial string and the caller id, so anything but digits could reach
// another endpoint or show another name, and an emergency number must
// never be "the agent". When the dial string goes through the dialplan
// (Local/...), where a number that is no extension reaches the outbound
// routes, the other public numbers are refused too (ServiceNumber).
func CheckSource(s string, throughDialplan bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return fmt.Errorf("an extension has digits only")
		}
	}
	if len(s) < 2 || len(s) > MaxSourceDigits {
		return fmt.Errorf("an extension has 2 to %d digits", MaxSourceDigits)
	}
	if emergency[s] {
		return fmt.Errorf("%s is an emergency number, never an agent's extension", s)
	}
	if why := ServiceNumber(s); why != "" && throughDialplan {
		return fmt.Errorf("%s is %s, which the dial string would send through the dialplan's outbound routes", s, why)
	}
	return nil
}

// ServiceNumber says what kind of public number s is, or "" when it is
// none: an emergency number (Brazil's 190 to 194 and 197 to 199, 128,
// and 112, 911 and 999, which phones dial everywhere), one of Brazil's
// public hotlines (100, 136, 153, 180, 181, 188), a carrier's service code
// (10XXX: 10315...), or anything after the national or international
// prefix (0...). Emergency numbers are never a source; the others are
// FreePBX extensions as often as not (100 to 199), and are refused only
// where the dial string could ring the public service (CheckSource).
func ServiceNumber(s string) string {
	switch {
	case emergency[s]:
		return "an emergency number"
	case strings.HasPrefix(s, "0"):
		return "a trunk prefix (0...)"
	case hotlines[s]:
		return "a public hotline"
	case len(s) == 5 && strings.HasPrefix(s, "10"):
		return "a carrier's service number (10XXX)"
	}
	return ""
}

var (
	emergency = set("112", "128", "190", "191", "192", "193", "194", "197", "198", "199", "911", "999")
	hotlines  = set("100", "136", "153", "180", "181", "188")
)

func set(list ...string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// ThroughDialplan reports whether the dial strings a template makes go
// through the dialplan (a Local channel) rather than straight to an
// endpoint, as a sample call shows.
func ThroughDialplan(dial *template.Template) (bool, error) {
	sample, err := execute(dial, Data{Source: "5252", Destination: "11987654321"})
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(sample)), "local/"), nil
}

// Open reports whether p ends in "." or "!": it then matches numbers of
// any length, which a source pattern must not.
func (p Pattern) Open() bool {
	return len(p.items) > 0 && p.items[len(p.items)-1].rest != 0
}

// Example is a number p matches, from the middle of each position's
// choices ("_52XX" gives 5255), or "" for an open pattern.
func (p Pattern) Example() string {
	if p.Open() {
		return ""
	}
	var b strings.Builder
	for _, it := range p.items {
		b.WriteByte(it.set[len(it.set)/2])
	}
	return b.String()
}

// CheckSourcePatterns refuses a source pattern that ends in "." or "!",
// or that can match anything but digits.
func CheckSourcePatterns(ps Patterns) error {
	for _, p := range ps {
		if p.Open() {
			return fmt.Errorf("pattern %q ends in %q: a source is an extension of a known length", p.src, p.src[len(p.src)-1:])
		}
		for _, it := range p.items {
			if strings.Trim(it.set, "0123456789") != "" {
				return fmt.Errorf("pattern %q matches more than digits: a source is an extension", p.src)
			}
		}
	}
	return nil
}

// tollFraudSamples are destinations of the classic toll-fraud kinds: US
// premium rate (+1 900), Caribbean numbers that look domestic to a +1
// pattern (Jamaica, Dominican Republic, Antigua, British Virgin Islands,
// Grenada, Turks and Caicos), satellite and international premium
// networks, and Brazil's premium-rate services.
var tollFraudSamples = []string{
	"+19005550100", "+18765550100", "+18095550100", "+12685550100", "+12845550100",
	"+14735550100", "+16495550100", "+881612345678", "+88234567890", "+979123456789",
	"09001234567", "03001234567", "05001234567",
}

// TollFraudAdmitted lists the premium-rate, Caribbean and satellite sample
// numbers p matches: a destination pattern admitting them is how an
// exposed click-to-call gets abused.
func (p Pattern) TollFraudAdmitted() []string {
	var out []string
	for _, s := range tollFraudSamples {
		if p.Match(s) {
			out = append(out, s)
		}
	}
	return out
}
