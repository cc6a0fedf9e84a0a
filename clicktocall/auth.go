package clicktocall

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Authentication modes, as Movidesk offers them.
const (
	AuthBasic = "basic" // "Username and password"
	AuthToken = "token" // "Token"
	AuthNone  = "none"  // "None": only with an allow-list of networks
)

// Auth is who may place calls.
type Auth struct {
	Mode     string
	Username string
	Password string
	Token    string
	// TokenHeader or TokenQuery says where the token is carried: a header
	// (its value, or "Bearer " and the value) or a query parameter. One of
	// the two.
	TokenHeader string
	TokenQuery  string
	// Allow, when not empty, are the only networks requests may come from,
	// whatever the mode.
	Allow []netip.Prefix
}

// Check refuses an Auth that would let anyone in or that cannot work.
func (a Auth) Check() error {
	switch a.Mode {
	case AuthBasic:
		if a.Username == "" || a.Password == "" {
			return errors.New("basic authentication needs a username and a password")
		}
	case AuthToken:
		if a.Token == "" {
			return errors.New("token authentication needs a token")
		}
		if (a.TokenHeader == "") == (a.TokenQuery == "") {
			return errors.New("token authentication needs the token's place: a header or a query parameter, one of the two")
		}
	case AuthNone:
		if len(a.Allow) == 0 {
			return errors.New(`"none" needs an allow-list of networks: the endpoint places calls`)
		}
	default:
		return fmt.Errorf("unknown authentication %q (basic, token or none)", a.Mode)
	}
	return nil
}

// refusal is why a request is turned away: its HTTP status and the text
// Movidesk shows, with the result for the log and the metrics.
type refusal struct {
	status int
	result string
	msg    string
	after  time.Duration // for a limit: when to try again
}

func (r *refusal) Error() string { return r.msg }

func refuse(status int, result, format string, args ...any) *refusal {
	return &refusal{status: status, result: result, msg: fmt.Sprintf(format, args...)}
}

// clientAddr is the request's peer address.
func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// authenticate returns who asks (a username, "token" or "none"), or why
// not. Secrets are compared in constant time, through their digests so
// that their length does not show either.
func (a Auth) authenticate(r *http.Request) (string, *refusal) {
	if len(a.Allow) > 0 {
		addr := clientAddr(r)
		ok := false
		for _, p := range a.Allow {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return "", refuse(http.StatusForbidden, "refused_network", "address %s may not place calls", addr)
		}
	}
	switch a.Mode {
	case AuthNone:
		return "none", nil
	case AuthBasic:
		u, p, ok := r.BasicAuth()
		// Both compared, always: which one is wrong does not show in the
		// time taken.
		uok := same(u, a.Username)
		pok := same(p, a.Password)
		if !ok || !uok || !pok {
			return "", refuse(http.StatusUnauthorized, "refused_auth", "wrong username or password")
		}
		return u, nil
	case AuthToken:
		var got string
		if a.TokenHeader != "" {
			got = r.Header.Get(a.TokenHeader)
			if len(got) > 7 && strings.EqualFold(got[:7], "bearer ") {
				got = got[7:]
			}
		} else {
			got = r.URL.Query().Get(a.TokenQuery)
		}
		if got == "" || !same(got, a.Token) {
			return "", refuse(http.StatusUnauthorized, "refused_auth", "wrong or missing token")
		}
		return "token", nil
	}
	return "", refuse(http.StatusUnauthorized, "refused_auth", "not authorised")
}

func same(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
