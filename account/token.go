package account

import (
	"fmt"
	"io"

	"github.com/movidesk-agi/movidesk-agi/internal/redact"
)

// Token is a Movidesk API token. However it is printed (fmt's verbs, JSON,
// text encoding: a log field, an error, a page), it shows as Redacted, so
// that an Account can be handed on without care; Reveal gives the value to
// the one that sends it.
type Token string

// Redacted is what a Token shows instead of itself, the mask of every
// secret; also an empty one, so that the output does not tell whether a
// token is set.
const Redacted = redact.Mask

// Reveal is the token itself, for the Movidesk client.
func (t Token) Reveal() string { return string(t) }

// String is Redacted.
func (Token) String() string { return Redacted }

// GoString is Redacted, quoted.
func (Token) GoString() string { return fmt.Sprintf("%q", Redacted) }

// Format prints Redacted for every verb, %x and %q included.
func (Token) Format(f fmt.State, verb rune) {
	if verb == 'q' || (verb == 'v' && f.Flag('#')) {
		fmt.Fprintf(f, "%q", Redacted)
		return
	}
	_, _ = io.WriteString(f, Redacted)
}

// MarshalText is Redacted: encoding/json and the log's fields use it.
func (Token) MarshalText() ([]byte, error) { return []byte(Redacted), nil }
