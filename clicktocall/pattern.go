package clicktocall

import (
	"fmt"
	"strings"
)

// Pattern is an extension pattern as Asterisk's dialplan writes them: a
// literal ("5252"), or after "_", X (0-9), Z (1-9), N (2-9), [1-5] or
// [13], "." (one or more characters) and "!" (zero or more), and any other
// character for itself.
type Pattern struct {
	src   string
	items []patItem
}

type patItem struct {
	set  string // the characters it takes; "" for . and !
	rest int    // 0: one character; 1: "." (one or more); 2: "!" (zero or more)
}

// ParsePattern reads an Asterisk extension pattern.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{src: s}
	if s == "" {
		return p, fmt.Errorf("empty pattern")
	}
	if !strings.HasPrefix(s, "_") {
		for _, r := range s {
			p.items = append(p.items, patItem{set: string(r)})
		}
		return p, nil
	}
	body := s[1:]
	if body == "" {
		return p, fmt.Errorf("pattern %q: nothing after _", s)
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c == 'X' || c == 'x':
			p.items = append(p.items, patItem{set: "0123456789"})
		case c == 'Z' || c == 'z':
			p.items = append(p.items, patItem{set: "123456789"})
		case c == 'N' || c == 'n':
			p.items = append(p.items, patItem{set: "23456789"})
		case c == '.' || c == '!':
			if i != len(body)-1 {
				return p, fmt.Errorf("pattern %q: %q must come last", s, c)
			}
			rest := 1
			if c == '!' {
				rest = 2
			}
			p.items = append(p.items, patItem{rest: rest})
		case c == '[':
			end := strings.IndexByte(body[i:], ']')
			if end < 0 {
				return p, fmt.Errorf("pattern %q: [ without ]", s)
			}
			set, err := charClass(body[i+1 : i+end])
			if err != nil {
				return p, fmt.Errorf("pattern %q: %v", s, err)
			}
			p.items = append(p.items, patItem{set: set})
			i += end
		default:
			p.items = append(p.items, patItem{set: string(c)})
		}
	}
	return p, nil
}

func charClass(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty []")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if i+2 < len(s) && s[i+1] == '-' {
			lo, hi := s[i], s[i+2]
			if lo > hi {
				return "", fmt.Errorf("range %c-%c is backwards", lo, hi)
			}
			for c := lo; c <= hi; c++ {
				b.WriteByte(c)
			}
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// Match reports whether s matches the whole pattern.
func (p Pattern) Match(s string) bool {
	for i, it := range p.items {
		switch it.rest {
		case 1:
			return len(s) > i
		case 2:
			return true
		}
		if i >= len(s) || !strings.ContainsRune(it.set, rune(s[i])) {
			return false
		}
	}
	return len(s) == len(p.items)
}

func (p Pattern) String() string { return p.src }

// Patterns is a list of patterns; a value matches the list when it matches
// one of them.
type Patterns []Pattern

// ParsePatterns reads each pattern of list.
func ParsePatterns(list []string) (Patterns, error) {
	out := make(Patterns, 0, len(list))
	for _, s := range list {
		p, err := ParsePattern(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (ps Patterns) Match(s string) bool {
	for _, p := range ps {
		if p.Match(s) {
			return true
		}
	}
	return false
}

// Defaults of the guards.
var (
	// DefaultSources are extensions of 3 to 5 digits.
	DefaultSources = []string{"_XXX", "_XXXX", "_XXXXX"}
	// DefaultDestinations are Brazilian national numbers, as Movidesk
	// shows them without the country code: area code and landline
	// (2-5 and 7 digits) or mobile (9 and 8 digits), a local landline or
	// mobile number, and 0800. No international number, no premium-rate
	// (0300, 0500, 0900) and no short number.
	DefaultDestinations = []string{"_ZZ[2-5]XXXXXXX", "_ZZ9XXXXXXXX", "_[2-5]XXXXXXX", "_9XXXXXXXX", "_0800XXXXXXX"}
	// DefaultCountryCode is Brazil's: "+55 11 98765-4321" is dialled as
	// 11987654321.
	DefaultCountryCode = "55"
)

// NormalizeNumber turns a number as a ticket shows it into what the
// dialplan dials: without spaces, dashes, dots, slashes and parentheses,
// and without "+" and the country code when it is countryCode (an
// international number keeps its "+"). It refuses anything else than
// digits after an optional "+".
func NormalizeNumber(s, countryCode string) (string, error) {
	var b strings.Builder
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ' || r == '-' || r == '.' || r == '(' || r == ')' || r == '/' || r == '\u00a0':
		case r == '+' && b.Len() == 0:
			b.WriteRune(r)
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			return "", fmt.Errorf("%q is not a phone number", s)
		}
	}
	n := b.String()
	if countryCode != "" {
		if rest, ok := strings.CutPrefix(n, "+"+countryCode); ok {
			n = rest
		}
	}
	if digits := strings.TrimPrefix(n, "+"); len(digits) < 2 || len(digits) > 32 {
		return "", fmt.Errorf("%q is not a phone number", s)
	}
	return n, nil
}
