package recordings

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PathPrefix is where links live under the public URL.
const PathPrefix = "/r/"

// MaxLinkLen is the longest link Movidesk keeps (setMadeCallLink's Link).
const MaxLinkLen = 256

const (
	// macSize is 128 bits of HMAC-SHA256: a forger must guess it online,
	// one request each, so 2^128 is far beyond reach (RFC 4868 truncates
	// to the same), and it keeps the link short (22 characters).
	macSize = 16
	macLen  = 22 // base64url, no padding, of macSize bytes

	// maxPlainRef is the longest call id put in a link as it is; longer
	// ones (or ones with other characters) go as a digest. Asterisk's
	// ids are about 20 characters, so links stay readable, and 64 leaves
	// room for a public URL of MaxPublicURLLen.
	maxPlainRef = 64
	digestRef   = "~" // starts a digest ref; not a character a plain ref may start with
	digestSize  = 16  // of SHA-256: 128 bits, no collision in practice

	// expiryLen is the most a lifetime adds: "/" and the Unix seconds.
	expiryLen = 1 + 11
)

// MaxPublicURLLen is the longest public URL for which every link, whatever
// the call id and with a lifetime, stays within MaxLinkLen.
const MaxPublicURLLen = MaxLinkLen - len(PathPrefix) - maxPlainRef - 1 - macLen - expiryLen

// Ref is how a link names a call: the call id itself when it is short and
// made of characters that need no escaping in a URL, else "~" and a
// base64url SHA-256 digest of it (23 characters), so that a link stays
// within MaxLinkLen for any id Movidesk accepts (up to 256 characters).
// A Locator finds a recording by its Ref.
func Ref(callID string) string {
	if plainRef(callID) {
		return callID
	}
	d := sha256.Sum256([]byte(callID))
	return digestRef + base64.RawURLEncoding.EncodeToString(d[:digestSize])
}

func plainRef(s string) bool {
	if s == "" || len(s) > maxPlainRef || s[0] == '.' {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validRef reports whether s could have been made by Ref.
func validRef(s string) bool {
	if rest, ok := strings.CutPrefix(s, digestRef); ok {
		_, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		return err == nil && len(rest) == 22
	}
	return plainRef(s)
}

// message is what a MAC covers: a version, the ref and the expiry (0 for
// none), length-prefixed so that no two (ref, expiry) pairs give the same
// bytes.
func message(ref string, expiry int64) []byte {
	b := make([]byte, 0, 32+len(ref))
	b = append(b, "movidesk-agi recording link v1\x00"...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ref)))
	b = append(b, ref...)
	return binary.BigEndian.AppendUint64(b, uint64(expiry))
}

// Signer makes links.
type Signer struct {
	// PublicURL is where the server is reached from agents' browsers,
	// without a trailing slash: https://pbx.example.com:8443.
	PublicURL string
	Keys      *Ring
	// Lifetime, when positive, makes links stop working that long after
	// they are made. Zero (the default) is for ever: tickets live for
	// years.
	Lifetime time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// ErrLinkTooLong is returned when a link would not fit in MaxLinkLen
// (which only a public URL longer than MaxPublicURLLen can cause).
var ErrLinkTooLong = errors.New("recordings: link longer than 256 characters")

// Link makes the link to callID's recording.
func (s *Signer) Link(callID string) (string, error) {
	ref := Ref(callID)
	var exp int64
	if s.Lifetime > 0 {
		now := time.Now
		if s.Now != nil {
			now = s.Now
		}
		exp = now().Add(s.Lifetime).Unix()
	}
	l := strings.TrimSuffix(s.PublicURL, "/") + PathPrefix + ref + "/"
	if exp != 0 {
		l += strconv.FormatInt(exp, 10) + "/"
	}
	l += base64.RawURLEncoding.EncodeToString(s.Keys.sign(message(ref, exp)))
	if len(l) > MaxLinkLen {
		return "", fmt.Errorf("%w: public URL %q is longer than %d", ErrLinkTooLong, s.PublicURL, MaxPublicURLLen)
	}
	return l, nil
}

// link is a parsed link path.
type link struct {
	ref    string
	expiry int64 // Unix seconds; 0 for none
	mac    []byte
}

// parseLink parses a link's path (from PathPrefix on). It checks the shape
// only; the MAC is checked by the caller.
func parseLink(p string) (link, bool) {
	rest, ok := strings.CutPrefix(p, PathPrefix)
	if !ok {
		return link{}, false
	}
	parts := strings.Split(rest, "/")
	var l link
	switch len(parts) {
	case 2:
	case 3:
		e := parts[1]
		if e == "" || e[0] == '0' || len(e) > expiryLen-1 {
			return link{}, false
		}
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil || n <= 0 {
			return link{}, false
		}
		l.expiry = n
	default:
		return link{}, false
	}
	l.ref = parts[0]
	if !validRef(l.ref) {
		return link{}, false
	}
	m := parts[len(parts)-1]
	if len(m) != macLen {
		return link{}, false
	}
	mac, err := base64.RawURLEncoding.Strict().DecodeString(m)
	if err != nil || len(mac) != macSize {
		return link{}, false
	}
	l.mac = mac
	return l, true
}
